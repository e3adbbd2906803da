//! Feeds arbitrary bytes to the wire codec: the frame splitter
//! (`FrameDecoder`, pushed in 1–3 chunks) and `decode_payload` for every
//! message type a peer can send. Nothing may panic, hang or allocate without
//! bound; every outcome must be `Ok` or a `DecodeError`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polis_protocol::{
    ClientToServer, DecodeError, FrameDecoder, Hello, HelloReply, ServerToGateway, ServerToViewer,
    decode_payload,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunking (1, 2 or 3 pushes) and the split
    // points, so the fuzzer explores frames that straddle pushes.
    let mut decoder = FrameDecoder::default();
    let chunks = split(data);
    for chunk in chunks {
        decoder.push(chunk);
        // Drain after every push, like a connection does.
        if !drain(&mut decoder) {
            break;
        }
    }
    assert!(decoder.buffered_bytes() <= data.len());

    // Whole input as one payload, for each message type.
    check(decode_payload::<Hello>(data));
    check(decode_payload::<HelloReply>(data));
    check(decode_payload::<ClientToServer>(data));
    check(decode_payload::<ServerToViewer>(data));
    check(decode_payload::<ServerToGateway>(data));
});

/// Splits `data` into up to three chunks chosen by its first byte.
fn split(data: &[u8]) -> Vec<&[u8]> {
    let Some((&selector, body)) = data.split_first() else {
        return vec![data];
    };
    let pieces = selector % 3 + 1;
    if pieces == 1 || body.is_empty() {
        return vec![body];
    }
    let first = usize::from(selector >> 2) % (body.len() + 1);
    let (a, b) = body.split_at(first);
    if pieces == 2 || b.is_empty() {
        return vec![a, b];
    }
    let second = (usize::from(selector) * 7) % (b.len() + 1);
    let (b1, b2) = b.split_at(second);
    vec![a, b1, b2]
}

/// Takes messages until more bytes are needed (`true`) or the stream is
/// broken (`false`).
fn drain(decoder: &mut FrameDecoder) -> bool {
    loop {
        match decoder.next_message::<ClientToServer>() {
            Ok(Some(_message)) => {}
            Ok(None) => return true,
            // A too-large header cannot be resynchronised and a malformed
            // payload ends the conversation: a connection closes on either.
            Err(err) => {
                let _ = err.to_string();
                return false;
            }
        }
    }
}

fn check<T>(result: Result<T, DecodeError>) {
    // Error messages must render (exercise Display on every error path).
    if let Err(err) = result {
        let _ = err.to_string();
    }
}
