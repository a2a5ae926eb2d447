//! Fuzzes the control-message decoders (what a guest sends the backend on
//! its control socket or Xen control ring, and the replies a guest
//! library decodes): the first input byte picks request or reply, the
//! rest is the message. Decoding must never panic, and whatever decodes
//! must encode and decode back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mx_proto::msg::control::{ControlReply, ControlRequest};

fuzz_target!(|data: &[u8]| {
    let Some((&which, msg)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let Ok(req) = ControlRequest::decode(msg) else {
            return;
        };
        let again = ControlRequest::decode(&req.encode()).expect("an encoded request decodes");
        assert_eq!(again, req);
    } else {
        let Ok(rep) = ControlReply::decode(msg) else {
            return;
        };
        let again = ControlReply::decode(&rep.encode()).expect("an encoded reply decodes");
        assert_eq!(again, rep);
    }
});
