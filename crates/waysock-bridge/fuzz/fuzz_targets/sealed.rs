//! The sealed channel's record reader on arbitrary bytes, two ways:
//! - the bytes as they arrive from the network: never a panic, never plaintext out of a record
//!   that was not sealed with the key (nothing forged is accepted);
//! - the bytes cut into records and sealed with the key, then read back as frames: the record
//!   layer gives back exactly what was sealed, and the frame decoder above it never panics.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use waysock_bridge::channel::{Cipher, OpenReader, SealWriter};
use waysock_bridge::transport::Frame;

const KEY: [u8; 32] = [0x42; 32];
const CIPHER: Cipher = Cipher::Aes256Gcm;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let mut out = Vec::new();
        let r = OpenReader::new(rest, &KEY, CIPHER).read_to_end(&mut out);
        assert!(r.is_err(), "unsealed bytes were accepted: {} plain bytes", out.len());
        assert!(out.is_empty(), "plaintext released from an unauthenticated record");
        return;
    }
    // Cut into records of sizes taken from the input itself.
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    let mut at = 0;
    let mut i = 0;
    while at < rest.len() {
        let n = (usize::from(mode >> 1) * 37 + i * 13) % 301 + 1;
        let end = (at + n).min(rest.len());
        w.write_record(&rest[at..end]).unwrap();
        at = end;
        i += 1;
    }
    w.close().unwrap();
    let wire = w.into_inner().unwrap();
    let mut plain = Vec::new();
    OpenReader::new(&wire[..], &KEY, CIPHER)
        .read_to_end(&mut plain)
        .expect("what was sealed opens");
    assert_eq!(plain, rest);
    let mut r = OpenReader::new(&wire[..], &KEY, CIPHER);
    while let Ok(Some(_)) = Frame::read(&mut r) {}
});
