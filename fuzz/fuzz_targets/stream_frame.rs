//! Fuzz the stream framer (RFC 3261 §18.3, RFC 5626 keep-alives): the
//! input is framed as a connection's bytes, frame after frame, whole and
//! again fed in two pieces cut where its first byte says. Oracles: nothing
//! panics; every frame fits the buffer and the limit; both feeds give the
//! same frames; and a framed message that the parser accepts ends where
//! its Content-Length says, as the framer found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipshard::sip::Message;
use sipshard::transport::stream::{next_frame, Frame, FrameError};

/// Small enough that the fuzzer reaches the limit often.
const MAX: usize = 1024;

/// Frames `data` fed in two pieces cut at `cut`, consuming each frame.
fn feed(data: &[u8], cut: usize) -> Vec<Result<Frame, FrameError>> {
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        loop {
            match next_frame(&buf, MAX) {
                Ok(Frame::Incomplete) => break,
                Ok(f) => {
                    let n = f.consumed();
                    assert!(n > 0 && n <= buf.len(), "{f:?} in {} bytes", buf.len());
                    if let Frame::Message { len } = f {
                        assert!(len <= MAX);
                        if let Ok(msg) = Message::parse(&buf[..len]) {
                            assert_eq!(msg.framed().len(), len);
                            assert_eq!(
                                msg.content_length().map(|n| n as usize),
                                Some(msg.body().len())
                            );
                        }
                    }
                    buf.drain(..n);
                    frames.push(Ok(f));
                }
                Err(e) => {
                    frames.push(Err(e));
                    return frames;
                }
            }
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let whole = feed(data, data.len());
    let cut = usize::from(seed) * data.len() / 255;
    assert_eq!(feed(data, cut), whole);
});
