//! Fuzz the WebSocket codec (RFC 6455 with RFC 7118): the input is read as
//! an opening handshake, and, from a copy, as a stream of client frames
//! taken through the message checks. Oracles: nothing panics; an accepted
//! handshake is answered with a whole 101; a decoded frame lies inside the
//! bytes it consumed; and the frame written again as a client would (our
//! header, the mask bit, a zero key) decodes to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipshard::transport::websocket::{
    check_text, decode, encode_header, parse_close, parse_upgrade, write_accept, Opcode, Part,
    Reassembly, ACCEPT_LEN, MAX_HEADER_LEN,
};

/// A message limit small enough that fuzzed lengths cross it.
const MAX: usize = 1 << 12;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(up)) = parse_upgrade(data, MAX) {
        assert!(up.len <= data.len());
        let mut out = [0u8; ACCEPT_LEN];
        assert_eq!(write_accept(up.key, &mut out), ACCEPT_LEN);
    }

    let mut buf = data.to_vec();
    let mut at = 0;
    let mut msg = Reassembly::new(MAX);
    while let Ok(Some((frame, used))) = decode(&mut buf[at..], MAX) {
        assert!(used > 0 && frame.payload.end == used && frame.payload.len() <= MAX);
        let payload = frame.bytes(&buf[at..]).to_vec();

        let mut again = vec![0u8; MAX_HEADER_LEN];
        let n = encode_header(frame.opcode, frame.fin, payload.len(), &mut again);
        assert!(n > 0, "a frame we decoded can be written");
        again.truncate(n);
        again[1] |= 0x80;
        again.extend_from_slice(&[0; 4]);
        again.extend_from_slice(&payload);
        let (back, back_used) = decode(&mut again, MAX)
            .expect("written frame decodes")
            .expect("written frame is whole");
        assert_eq!(
            (back.opcode, back.fin, back_used),
            (frame.opcode, frame.fin, again.len())
        );
        assert_eq!(back.bytes(&again), &payload[..]);

        match msg.push(&frame) {
            Ok(Part::Control(Opcode::Close)) => {
                let _ = parse_close(&payload);
            }
            Ok(Part::Whole(Opcode::Text)) => {
                let _ = check_text(&payload);
            }
            Ok(_) => {}
            Err(_) => break,
        }
        at += used;
    }
});
