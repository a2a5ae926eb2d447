//! Fuzzes the parsers of what a guest writes into its rings: the first
//! input byte picks the family (command, event, raw command, raw event),
//! the rest fills one slot (zero-padded, cut to the slot size). Parsing
//! must never panic, and whatever parses must emit and parse back to the
//! same value (so nothing the backend accepts is lost in a round trip).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mx_proto::msg::raw_endpoint::{RawCommand, RawEvent};
use mx_proto::msg::{CmdSlot, Command, Event, EvtSlot};

fn fill<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut b = [0u8; N];
    let n = bytes.len().min(N);
    b[..n].copy_from_slice(&bytes[..n]);
    b
}

fuzz_target!(|data: &[u8]| {
    let Some((&family, rest)) = data.split_first() else {
        return;
    };
    match family % 4 {
        0 => {
            let slot = CmdSlot(fill(rest));
            let Ok(c) = Command::parse(&slot) else { return };
            let mut out = CmdSlot::default();
            c.emit(&mut out).expect("a parsed command emits");
            assert_eq!(Command::parse(&out).expect("an emitted command parses"), c);
        }
        1 => {
            let slot = EvtSlot(fill(rest));
            let Ok(e) = Event::parse(&slot) else { return };
            let mut out = EvtSlot::default();
            e.emit(&mut out).expect("a parsed event emits");
            assert_eq!(Event::parse(&out).expect("an emitted event parses"), e);
        }
        2 => {
            let slot = CmdSlot(fill(rest));
            let Ok(c) = RawCommand::parse(&slot) else {
                return;
            };
            let mut out = CmdSlot::default();
            c.emit(&mut out).expect("a parsed raw command emits");
            assert_eq!(RawCommand::parse(&out).expect("it parses again"), c);
        }
        _ => {
            let slot = EvtSlot(fill(rest));
            let Ok(e) = RawEvent::parse(&slot) else {
                return;
            };
            let mut out = EvtSlot::default();
            e.emit(&mut out).expect("a parsed raw event emits");
            assert_eq!(RawEvent::parse(&out).expect("it parses again"), e);
        }
    }
});
