//! Fuzzes the receive path: bytes in arbitrary chunks through the frame decoder, and
//! every complete object through the message parser. Neither may panic, and the
//! decoder may never hold more than its cap plus one chunk.
#![no_main]

use crawler_agent::protocol::frame::{Frame, FrameDecoder};
use crawler_agent::protocol::message;
use libfuzzer_sys::fuzz_target;

const CAP: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new(CAP);
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        while let Some(frame) = decoder.next_frame() {
            if let Frame::Object(object) = frame {
                assert!(object.len() <= CAP);
                let _ = message::parse(object);
            }
        }
        assert!(decoder.buffered() <= CAP + chunk);
    }
});
