//! Arbitrary bytes, fed in arbitrary chunks, into the frame decoder (before and after
//! authentication limits): it must return messages or errors, never panic or over-allocate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mproc_core::wire::{encode, FrameDecoder, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    for max in [HANDSHAKE_MAX_FRAME, DEFAULT_MAX_FRAME] {
        let mut dec = FrameDecoder::new(max);
        for chunk in rest.chunks(split as usize + 1) {
            dec.feed(chunk);
            loop {
                match dec.next_message() {
                    // Whatever decodes must encode again to a frame that decodes to itself.
                    Ok(Some(m)) => {
                        let mut again = FrameDecoder::new(DEFAULT_MAX_FRAME);
                        again.feed(&encode(&m));
                        assert!(again.next_message().unwrap().is_some());
                    }
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
        }
    }
});
