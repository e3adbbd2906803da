//! Reading and writing protocol frames on quinn streams.

use polis_protocol::{DecodeError, EncodeError, FrameDecoder, encode_frame};
use serde::{Serialize, de::DeserializeOwned};

/// Largest chunk read from a stream at once, bytes.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The bytes received are not a valid frame.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The stream failed while reading.
    #[error("stream read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream failed while writing.
    #[error("stream write failed: {0}")]
    Write(#[from] quinn::WriteError),
    /// The peer finished the stream between frames.
    #[error("stream closed by peer")]
    Finished,
    /// The peer finished the stream in the middle of a frame.
    #[error("stream closed by peer in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
}

/// Reads frames of type `T` from a receive stream.
#[derive(Debug)]
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::default(),
        }
    }

    /// A reader refusing frames longer than `max_frame_bytes` (a
    /// [`FrameError::Decode`] as soon as a header announces more).
    pub(crate) fn with_max_frame_bytes(recv: quinn::RecvStream, max_frame_bytes: usize) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(max_frame_bytes),
        }
    }

    /// Changes the largest frame accepted from now on.
    pub(crate) fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.decoder.set_max_frame_bytes(max_frame_bytes);
    }

    /// The next message; [`FrameError::Finished`] at a clean end of stream.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> Result<T, FrameError> {
        loop {
            if let Some(message) = self.decoder.next_message::<T>()? {
                return Ok(message);
            }
            match self.recv.read_chunk(READ_CHUNK_BYTES, true).await? {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None if self.decoder.buffered_bytes() == 0 => return Err(FrameError::Finished),
                None => return Err(FrameError::Truncated(self.decoder.buffered_bytes())),
            }
        }
    }

    /// Tells the peer we will read no more.
    pub(crate) fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }
}

/// Writes frames to a send stream, reusing one buffer.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    send: quinn::SendStream,
    buffer: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new(send: quinn::SendStream) -> Self {
        Self {
            send,
            buffer: Vec::new(),
        }
    }

    /// Encodes and sends one message; waits while flow control is exhausted.
    pub(crate) async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), FrameError> {
        self.buffer.clear();
        encode_frame(message, &mut self.buffer)?;
        self.send.write_all(&self.buffer).await?;
        Ok(())
    }

    /// Encodes several messages and sends them in one write; returns the
    /// bytes written.
    pub(crate) async fn send_all<T: Serialize>(
        &mut self,
        messages: &[T],
    ) -> Result<usize, FrameError> {
        self.buffer.clear();
        for message in messages {
            encode_frame(message, &mut self.buffer)?;
        }
        self.send.write_all(&self.buffer).await?;
        Ok(self.buffer.len())
    }

    /// Sends raw bytes (tests of malformed input use this).
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.send.write_all(bytes).await?;
        Ok(())
    }

    /// Finishes the stream and waits (bounded) until the peer has read it,
    /// so a last error or rejection frame is not lost to the close.
    pub(crate) async fn finish(&mut self) {
        if self.send.finish().is_ok() {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), self.send.stopped()).await;
        }
    }
}
