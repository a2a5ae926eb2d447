//! Fuzzes `mxoe_wire::decode`: the first input byte picks the wire profile,
//! the rest is the frame. The decoder must never panic, and whatever it
//! accepts must re-encode and decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxoe_wire::mapper::MapperAnnounce;
use mxoe_wire::{decode, emit, Packet, PeerIndex, WireProfile};

fn profile(selector: u8) -> WireProfile {
    match selector % 4 {
        0 => WireProfile::MX,
        1 => WireProfile::OPEN_MX_9000,
        2 => WireProfile::OPEN_MX_1500,
        // 1280..=65030: any MTU the profile accepts, roughly.
        _ => WireProfile::open_mx(1280 + u32::from(selector) * 250).expect("MTU in range"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, frame)) = data.split_first() else {
        return;
    };
    let profile = profile(selector);
    let _ = MapperAnnounce::decode(frame);
    let Ok(decoded) = decode(&profile, frame) else {
        return;
    };
    let mut buf = vec![0u8; decoded.packet.buffer_len(&profile)];
    let n = emit(&profile, &decoded, &mut buf).expect("a decoded packet re-encodes");
    let again = decode(&profile, &buf[..n]).expect("a re-encoded packet decodes");
    match (again.packet, decoded.packet) {
        // RAW keeps what followed the type byte, so padding may be added.
        (Packet::Raw(a), Packet::Raw(b)) => assert!(a.data.starts_with(b.data)),
        _ => {
            let mut expected = decoded;
            if !expected.packet.uses_head_peer_index() {
                expected.head.peer_index = PeerIndex(0);
            }
            assert_eq!(again, expected);
        }
    }
});
