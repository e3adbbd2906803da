//! Length-prefixed framing of postcard-encoded messages.

use serde::{Serialize, de::DeserializeOwned};

use crate::MAX_FRAME_BYTES;

/// Bytes of the little-endian `u32` length that precedes every frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message exceeds [`MAX_FRAME_BYTES`].
    #[error("message of {len_bytes} bytes exceeds the maximum frame size of {max_bytes} bytes")]
    TooLarge {
        /// Encoded size.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// Serialization failed (a type the format cannot express).
    #[error("cannot encode message: {0}")]
    Serialize(#[from] postcard::Error),
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A frame header announced more than the limit; nothing was allocated.
    #[error("frame of {len_bytes} bytes exceeds the maximum frame size of {max_bytes} bytes")]
    TooLarge {
        /// Announced size.
        len_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The payload is not a valid encoding of the expected message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The payload decoded, but bytes were left over after the message.
    #[error("malformed frame: {0} trailing bytes after the message")]
    TrailingBytes(usize),
}

/// Appends `message` as one frame (length header + payload) to `out`.
///
/// On error `out` is left as it was.
pub fn encode_frame<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let result = postcard::to_io(message, &mut *out);
    if let Err(err) = result {
        out.truncate(start);
        return Err(err.into());
    }
    let len_bytes = out.len() - start - FRAME_HEADER_BYTES;
    if len_bytes > MAX_FRAME_BYTES {
        out.truncate(start);
        return Err(EncodeError::TooLarge {
            len_bytes,
            max_bytes: MAX_FRAME_BYTES,
        });
    }
    let header = u32::try_from(len_bytes).unwrap_or(u32::MAX).to_le_bytes();
    out[start..start + FRAME_HEADER_BYTES].copy_from_slice(&header);
    Ok(FRAME_HEADER_BYTES + len_bytes)
}

/// Decodes one frame payload (without its header) into a message; the whole
/// payload must be consumed.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    let (message, rest) = postcard::take_from_bytes::<T>(payload)
        .map_err(|err| DecodeError::Malformed(err.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

/// Splits a byte stream into frame payloads.
///
/// Feed it whatever arrived with [`FrameDecoder::push`], then take complete
/// payloads with [`FrameDecoder::next_payload`]. It holds at most one frame
/// plus the bytes of the last push, and refuses a frame whose header announces
/// more than its limit before buffering it.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    /// Start of the unread part of `buffer`.
    read_at: usize,
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(MAX_FRAME_BYTES)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max_frame_bytes` (at most
    /// [`MAX_FRAME_BYTES`]).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            buffer: Vec::new(),
            read_at: 0,
            max_frame_bytes: max_frame_bytes.min(MAX_FRAME_BYTES),
        }
    }

    /// Changes the largest frame accepted from now on (at most
    /// [`MAX_FRAME_BYTES`]); a server raises it once a client is
    /// authenticated.
    pub fn set_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        self.max_frame_bytes = max_frame_bytes.min(MAX_FRAME_BYTES);
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.read_at > 0 && self.read_at == self.buffer.len() {
            self.buffer.clear();
            self.read_at = 0;
        } else if self.read_at > 64 * 1024 && self.read_at * 2 > self.buffer.len() {
            self.buffer.drain(..self.read_at);
            self.read_at = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len() - self.read_at
    }

    /// The next complete frame payload, `Ok(None)` if more bytes are needed,
    /// or an error if the next frame is too large (the stream cannot be
    /// resynchronised after that: close it).
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let unread = &self.buffer[self.read_at..];
        let Some(header) = unread.first_chunk::<FRAME_HEADER_BYTES>() else {
            return Ok(None);
        };
        let len_bytes = u32::from_le_bytes(*header) as usize;
        if len_bytes > self.max_frame_bytes {
            return Err(DecodeError::TooLarge {
                len_bytes,
                max_bytes: self.max_frame_bytes,
            });
        }
        if unread.len() < FRAME_HEADER_BYTES + len_bytes {
            return Ok(None);
        }
        let start = self.read_at + FRAME_HEADER_BYTES;
        self.read_at = start + len_bytes;
        Ok(Some(&self.buffer[start..start + len_bytes]))
    }

    /// The next complete frame decoded as `T`; see [`FrameDecoder::next_payload`].
    pub fn next_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>, DecodeError> {
        match self.next_payload()? {
            Some(payload) => decode_payload(payload).map(Some),
            None => Ok(None),
        }
    }
}
