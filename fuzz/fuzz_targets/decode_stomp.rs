//! The STOMP decoder on arbitrary bytes, split at an arbitrary point into two WebSocket
//! messages: never panics, and whatever decodes re-encodes and decodes to the same frames.
#![no_main]
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchboard::dialect::stomp::codec::{Decoder, Item, Limits, Version, encode};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| *b as usize) % (data.len() + 1);
    let (a, b) = data.split_at(split);
    let mut dec = Decoder::new(Limits { max_frame_size: 64 * 1024, ..Limits::default() });
    let mut items = Vec::new();
    if dec.decode(Bytes::copy_from_slice(a), &mut items).is_err() {
        return;
    }
    if dec.decode(Bytes::copy_from_slice(b), &mut items).is_err() {
        return;
    }
    for item in items {
        if let Item::Frame(f) = item {
            let mut out = BytesMut::new();
            encode(&f, Version::V1_2, &mut out);
            let mut again = Vec::new();
            let mut d2 = Decoder::new(Limits { max_frame_size: 1 << 20, ..Limits::default() });
            let wire = out.freeze();
            d2.decode(wire.clone(), &mut again)
                .unwrap_or_else(|e| panic!("{f:?} re-encoded as {wire:?} does not decode: {e}"));
            match again.as_slice() {
                [Item::Frame(g)] => assert_eq!(g, &f, "re-encoded as {wire:?}"),
                other => panic!("{f:?} re-encoded as {wire:?} decodes to {other:?}"),
            }
        }
    }
});
