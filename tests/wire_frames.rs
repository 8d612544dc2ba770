//! The multi-host wire format: round trips, arbitrary chunking, and hostile input (proptest):
//! malformed or oversized frames are errors, never panics, and never large allocations.

use mproc_core::wire::{encode, FrameDecoder, Message, Role, WireError, DEFAULT_MAX_FRAME, WIRE_VERSION};
use proptest::prelude::*;

fn message() -> impl Strategy<Value = Message> {
    let bytes = prop::collection::vec(any::<u8>(), 0..64);
    let units = prop::collection::vec(prop::collection::vec(any::<u32>(), 1..8), 0..8);
    let entries = prop::collection::vec(units.clone(), 0..4);
    let names = prop::collection::vec(".{0,12}", 0..6);
    prop_oneof![
        (".{0,20}", any::<u32>(), names, any::<bool>()).prop_map(|(node, workers, collection, main)| {
            Message::Hello { role: if main { Role::Main } else { Role::Node }, node, workers, collection }
        }),
        bytes.clone().prop_map(|nonce| Message::Challenge { nonce }),
        (bytes.clone(), bytes.clone()).prop_map(|(mac, nonce)| Message::Proof { mac, nonce }),
        bytes.clone().prop_map(|mac| Message::Accepted { mac }),
        any::<u32>().prop_map(|node_id| Message::Welcome { node_id }),
        ".{0,40}".prop_map(|reason| Message::Refused { reason }),
        any::<u32>().prop_map(|units| Message::Credit { units }),
        units.clone().prop_map(|units| Message::Units { units }),
        (".{0,20}", bytes.clone()).prop_map(|(key, value)| Message::Fixture { key, value }),
        (prop::collection::vec(bytes, 0..6), prop::collection::vec(any::<u32>(), 0..4))
            .prop_map(|(batch, running)| Message::Results { batch, running }),
        (entries, any::<bool>()).prop_map(|(entries, front)| Message::Submit { entries, front }),
        ".{0,40}".prop_map(|json| Message::Event { json }),
        Just(Message::Finish),
        Just(Message::Bye),
        Just(Message::Heartbeat),
        Just(Message::Stop),
        Just(Message::Report),
    ]
}

proptest! {
    #[test]
    fn roundtrip_in_arbitrary_chunks(msgs in prop::collection::vec(message(), 1..10), cut in 1usize..17) {
        let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
        let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for chunk in stream.chunks(cut) {
            dec.feed(chunk);
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
        }
        prop_assert_eq!(got, msgs);
        prop_assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn hostile_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = FrameDecoder::new(1 << 16);
        dec.feed(&data);
        for _ in 0..64 {
            match dec.next_message() {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let mut dec = FrameDecoder::new(1024);
    dec.feed(&u32::MAX.to_le_bytes());
    assert_eq!(dec.next_message(), Err(WireError::Oversized { len: u32::MAX as usize, max: 1024 }));
}

#[test]
fn other_version_is_refused() {
    let mut frame = encode(&Message::Heartbeat);
    frame[4..6].copy_from_slice(&(WIRE_VERSION + 1).to_le_bytes());
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    dec.feed(&frame);
    let err = dec.next_message().unwrap_err();
    assert_eq!(err, WireError::Version { got: WIRE_VERSION + 1 });
    assert!(err.to_string().contains("wire version"));
}

#[test]
fn garbage_payload_is_malformed() {
    let mut frame = 3u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    frame.push(0xFF); // no such enum variant
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    dec.feed(&frame);
    assert!(matches!(dec.next_message(), Err(WireError::Malformed(_))));
}
