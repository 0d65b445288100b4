//! The control protocol's decoder takes any bytes: it never panics, and what it
//! accepts survives a round trip through the encoder unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use umacvlan::ctl::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode(data) {
        let line = encode(&req);
        assert_eq!(line.last(), Some(&b'\n'), "one line");
        let again = decode(&line).expect("an encoded request decodes");
        assert_eq!(again, req, "round trip");
    }
});
