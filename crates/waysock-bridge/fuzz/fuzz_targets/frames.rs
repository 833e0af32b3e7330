//! The bridge's channel decoder on arbitrary bytes: never panics, and whatever decodes
//! re-encodes to a frame that decodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waysock_bridge::transport::Frame;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(f)) = Frame::read(&mut r) {
        let enc = f.encode();
        let back = Frame::read(&mut &enc[..])
            .expect("a frame we encoded must decode")
            .expect("one frame");
        assert_eq!(back, f);
    }
});
