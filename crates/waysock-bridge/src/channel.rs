//! The sealed channel: after the handshake every frame crosses the stream encrypted and
//! authenticated (AES-256-GCM when both ends have AES in hardware, ChaCha20-Poly1305
//! otherwise, as the handshake agreed; both from `ring`), so the traffic — keystrokes,
//! clipboard, pixels — can be neither read nor altered on the way, and a record that was is
//! never acted on.
//!
//! ```text
//! record := len u32 (little endian) | ciphertext[len - 16] | tag[16]      (len ≤ MAX_RECORD)
//! ```
//!
//! - One key per direction, derived from the split of the connection's Noise handshake (an
//!   ephemeral exchange keyed with the token: fresh on every connection, so no key is ever used
//!   in two sessions); see `auth::handshake`.
//! - The nonce is the record's number in its direction (a counter from 0), never sent: a
//!   record dropped, replayed or reordered fails authentication, which ends the session.
//! - The length is the associated data: it cannot be changed either.
//! - Each record holds one or more whole frames; a record with no plaintext closes the
//!   direction. A stream that ends without it was cut (the tail of a session cannot be dropped
//!   unnoticed either).
//! - After any error a reader or writer refuses every later call: a failed record is never
//!   skipped over.

use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};

use crate::transport::MAX_FRAME;

/// Length of the authentication tag at the end of each record.
pub const TAG: usize = 16;
/// Bytes before the plaintext in a buffer given to [`SealWriter::write_sealable`].
pub const HEADROOM: usize = 4;
/// Largest record accepted: one whole frame of the largest size (5-byte head + payload).
pub const MAX_RECORD: usize = MAX_FRAME + 5 + TAG;

/// An authenticated connection and the keys that seal its traffic: what
/// [`crate::session::run`] relays over.
#[derive(Debug)]
pub struct Sealed {
    /// The connection, past the handshake.
    pub tcp: std::net::TcpStream,
    /// Its keys, as this end uses them.
    pub keys: SessionKeys,
}

/// The record layer's AEAD, as the handshake agreed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305: fast everywhere, the choice unless both ends have AES in hardware.
    ChaCha20Poly1305,
    /// AES-256-GCM: several times faster where the CPU has AES and carry-less multiply
    /// instructions (x86-64 AES-NI with PCLMULQDQ, ARMv8 AES with PMULL); chosen only when both
    /// ends do.
    Aes256Gcm,
}

impl Cipher {
    /// Whether AES-256-GCM runs in hardware on this CPU.
    pub fn aes_in_hardware() -> bool {
        // What ring's hardware AES-GCM needs: AES-NI, PCLMULQDQ and SSSE3 on x86-64; the AES
        // and PMULL extensions on little-endian AArch64.
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
                && std::arch::is_x86_feature_detected!("ssse3")
        }
        #[cfg(all(target_arch = "aarch64", target_endian = "little"))]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "aarch64", target_endian = "little")
        )))]
        {
            false
        }
    }

    /// A key of this cipher.
    fn key(self, key: &[u8; 32]) -> LessSafeKey {
        let alg = match self {
            Cipher::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &ring::aead::AES_256_GCM,
        };
        // Both take 32-byte keys; ring refuses only a key of the wrong length.
        let unbound = UnboundKey::new(alg, key)
            .unwrap_or_else(|_| panic!("ring refused a 32-byte key for {self:?}"));
        LessSafeKey::new(unbound)
    }

    /// Its name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "ChaCha20-Poly1305",
            Cipher::Aes256Gcm => "AES-256-GCM",
        }
    }
}

/// The two keys of one session, as this end uses them, and the cipher they key.
pub struct SessionKeys {
    /// Seals what this end sends.
    pub send: [u8; 32],
    /// Opens what this end receives.
    pub receive: [u8; 32],
    /// The AEAD both ends agreed on.
    pub cipher: Cipher,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        // Best effort: the keys do not outlive the session in this struct.
        self.send.fill(0);
        self.receive.fill(0);
        std::hint::black_box(&self.send);
        std::hint::black_box(&self.receive);
    }
}

/// The record number `n` as a 96-bit nonce.
fn nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

fn exhausted() -> io::Error {
    io::Error::other("2^64 records sealed with one key: the session must end")
}

/// The sending half: seals records and writes them to `W`. Shared by every thread of a
/// session (`&self`): each record takes a number in call order, is sealed outside any lock (so
/// threads encrypt in parallel), and is written strictly in number order.
pub struct SealWriter<W: Write> {
    cipher: LessSafeKey,
    state: Mutex<SendState<W>>,
    turn: Condvar,
}

struct SendState<W> {
    inner: W,
    /// The number the next record gets.
    next_number: u64,
    /// The number of the record to be written next.
    next_write: u64,
    /// Closed, or failed part-way (the far side's count may be off): no more records.
    done: bool,
}

fn finished() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the sealed channel is closed or failed",
    )
}

fn poisoned() -> io::Error {
    io::Error::other("the sealed channel was poisoned by a panic")
}

impl<W: Write> SealWriter<W> {
    /// Seals with `key` (the session's sending key) under `cipher`.
    pub fn new(inner: W, key: &[u8; 32], cipher: Cipher) -> SealWriter<W> {
        SealWriter {
            cipher: cipher.key(key),
            state: Mutex::new(SendState {
                inner,
                next_number: 0,
                next_write: 0,
                done: false,
            }),
            turn: Condvar::new(),
        }
    }

    /// Seals `plain` (whole frames, at most one maximal frame's worth) as one record and
    /// writes it all.
    pub fn write_record(&self, plain: &[u8]) -> io::Result<()> {
        let mut rec = Vec::with_capacity(HEADROOM + plain.len() + TAG);
        rec.resize(HEADROOM, 0);
        rec.extend_from_slice(plain);
        self.write_sealable(rec)
    }

    /// Like [`write_record`](Self::write_record) for a plaintext already placed after
    /// [`HEADROOM`] spare bytes (`Frame::encode_with(HEADROOM, TAG)`): sealed in place, with no
    /// copy.
    pub fn write_sealable(&self, rec: Vec<u8>) -> io::Result<()> {
        if rec.len() <= HEADROOM {
            return Ok(());
        }
        self.send(rec, false)
    }

    /// Closes this direction: an empty sealed record, after which nothing more is written.
    /// The far side reads end of stream after it, and an error if the stream ends without it.
    pub fn close(&self) -> io::Result<()> {
        self.send(vec![0; HEADROOM], true)
    }

    fn send(&self, mut record: Vec<u8>, last: bool) -> io::Result<()> {
        let plain_len = record.len() - HEADROOM;
        if plain_len + TAG > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a record of {plain_len} bytes (at most {MAX_RECORD})"),
            ));
        }
        let n = {
            let mut st = self.state.lock().map_err(|_| poisoned())?;
            if st.done {
                return Err(finished());
            }
            let n = st.next_number;
            st.next_number = n.checked_add(1).ok_or_else(exhausted)?;
            if last {
                st.done = true;
            }
            n
        };
        let len = ((plain_len + TAG) as u32).to_le_bytes();
        record[..HEADROOM].copy_from_slice(&len);
        let sealed =
            self.cipher
                .seal_in_place_separate_tag(nonce(n), Aad::from(len), &mut record[4..]);
        let mut st = self.state.lock().map_err(|_| poisoned())?;
        while st.next_write != n {
            // A record before ours failed to go out: ours never can.
            if st.next_write == u64::MAX {
                return Err(finished());
            }
            st = self.turn.wait(st).map_err(|_| poisoned())?;
        }
        let r = match sealed {
            Ok(tag) => {
                record.extend_from_slice(tag.as_ref());
                st.inner.write_all(&record)
            }
            Err(_) => Err(io::Error::other("sealing a record failed")),
        };
        match &r {
            Ok(()) => st.next_write = n + 1,
            // The far side's count is now off: nothing more may follow.
            Err(_) => {
                st.next_write = u64::MAX;
                st.done = true;
            }
        }
        self.turn.notify_all();
        r
    }

    /// The stream underneath (once every writer is done with the channel).
    pub fn into_inner(self) -> io::Result<W> {
        Ok(self.state.into_inner().map_err(|_| poisoned())?.inner)
    }
}

/// Records this large or larger are timed as they arrive (see [`OpenReader::take_arrival`]):
/// smaller ones usually come in one piece, which says nothing about the link.
pub const ARRIVAL_MIN: usize = 16 * 1024;

/// The receiving half: reads records from `R`, checks and opens them, and reads as the plain
/// frames they hold. End of stream between records is end of stream; inside one, an error.
pub struct OpenReader<R: Read> {
    inner: R,
    cipher: LessSafeKey,
    next: u64,
    buf: Vec<u8>,
    /// Plain bytes of the current record not yet read: `buf[at..end]`.
    at: usize,
    end: usize,
    state: ReadState,
    /// The last record's size and how long it took to arrive after its first bytes.
    arrival: Option<(usize, std::time::Duration)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The far side closed its direction (an empty record): end of stream from now on.
    Closed,
    /// A record failed: every later read fails too.
    Failed,
}

impl<R: Read> OpenReader<R> {
    /// Opens with `key` (the session's receiving key) under `cipher`.
    pub fn new(inner: R, key: &[u8; 32], cipher: Cipher) -> OpenReader<R> {
        OpenReader {
            inner,
            cipher: cipher.key(key),
            next: 0,
            buf: Vec::new(),
            at: 0,
            end: 0,
            state: ReadState::Open,
            arrival: None,
        }
    }

    /// The size of the last record read and how long it took to arrive, from its first bytes
    /// to its last (records of [`ARRIVAL_MIN`] bytes or more; taken once).
    pub fn take_arrival(&mut self) -> Option<(usize, std::time::Duration)> {
        self.arrival.take()
    }

    /// Reads and opens the next record; `false` once the far side has closed.
    fn fill(&mut self) -> io::Result<bool> {
        match self.state {
            ReadState::Open => {}
            ReadState::Closed => return Ok(false),
            ReadState::Failed => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the sealed channel already failed",
                ))
            }
        }
        let r = self.fill_open();
        match &r {
            Ok(false) => self.state = ReadState::Closed,
            Err(_) => self.state = ReadState::Failed,
            Ok(true) => {}
        }
        r
    }

    fn fill_open(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut len[got..]) {
                Ok(0) if got == 0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended without the far side closing it (cut on the way, \
                         or the far end died)",
                    ))
                }
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let n = u32::from_le_bytes(len) as usize;
        if !(TAG..=MAX_RECORD).contains(&n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a sealed record of {n} bytes (from {TAG} to {MAX_RECORD})"),
            ));
        }
        self.buf.resize(n, 0);
        let t = (n >= ARRIVAL_MIN).then(std::time::Instant::now);
        self.inner.read_exact(&mut self.buf)?;
        self.arrival = t.map(|t| (n, t.elapsed()));
        let plain = n - TAG;
        let number = self.next;
        self.next = number.checked_add(1).ok_or_else(exhausted)?;
        self.cipher
            .open_in_place(nonce(number), Aad::from(len), &mut self.buf[..n])
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "record {number} failed authentication: altered, replayed or reordered \
                         on the way (or not sealed with this session's key)"
                    ),
                )
            })?;
        self.at = 0;
        self.end = plain;
        // An empty record is the far side's close.
        Ok(plain > 0)
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.at == self.end {
            if !self.fill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.end - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        if self.at == self.end && self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
            self.at = 0;
            self.end = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CIPHER: Cipher = Cipher::ChaCha20Poly1305;

    fn keys() -> ([u8; 32], [u8; 32]) {
        ([7; 32], [9; 32])
    }

    #[test]
    fn both_ciphers_round_trip_and_neither_opens_the_others_records() {
        let key = [3u8; 32];
        for (cipher, other) in [
            (Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm),
            (Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305),
        ] {
            let w = SealWriter::new(Vec::new(), &key, cipher);
            w.write_record(b"first").unwrap();
            w.write_record(&vec![0x5a; 70_000]).unwrap();
            w.close().unwrap();
            let wire = w.into_inner().unwrap();
            // The plaintext never crosses in the clear.
            assert!(!wire.windows(5).any(|x| x == b"first"), "{cipher:?}");
            let mut got = Vec::new();
            OpenReader::new(&wire[..], &key, cipher)
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(&got[..5], b"first");
            assert_eq!(got.len(), 5 + 70_000);
            let e = OpenReader::new(&wire[..], &key, other)
                .read_to_end(&mut Vec::new())
                .unwrap_err();
            assert!(e.to_string().contains("failed authentication"), "{e}");
        }
    }

    #[test]
    fn records_round_trip_in_order() {
        let (k, _) = keys();
        let w = SealWriter::new(Vec::new(), &k, CIPHER);
        w.write_record(b"first").unwrap();
        w.write_record(b"").unwrap();
        w.write_record(&vec![0xab; 100_000]).unwrap();
        w.close().unwrap();
        assert!(w.write_record(b"late").is_err(), "nothing after close");
        let wire = w.into_inner().unwrap();
        assert!(
            !wire.windows(5).any(|x| x == b"first"),
            "plaintext on the wire"
        );
        let mut r = OpenReader::new(&wire[..], &k, CIPHER);
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        let mut want = b"first".to_vec();
        want.extend(vec![0xab; 100_000]);
        assert_eq!(all, want);
    }

    #[test]
    fn altered_replayed_reordered_or_foreign_records_are_refused() {
        let (k, other) = keys();
        let seal = |parts: &[&[u8]], key: &[u8; 32]| {
            let w = SealWriter::new(Vec::new(), key, CIPHER);
            let mut ends = Vec::new();
            for p in parts {
                if p.is_empty() {
                    w.close().unwrap();
                } else {
                    w.write_record(p).unwrap();
                }
                ends.push(w.state.lock().unwrap().inner.len());
            }
            let wire = w.into_inner().unwrap();
            let mut records = Vec::new();
            let mut at = 0;
            for end in ends {
                records.push(wire[at..end].to_vec());
                at = end;
            }
            records
        };
        let recs = seal(&[b"one", b"two", b""], &k);
        let open_all = |wire: Vec<u8>, key: &[u8; 32]| {
            let mut out = Vec::new();
            OpenReader::new(&wire[..], key, CIPHER)
                .read_to_end(&mut out)
                .map(|_| out)
        };
        assert_eq!(open_all(recs.concat(), &k).unwrap(), b"onetwo");
        // A flipped ciphertext bit.
        let mut bad = recs.concat();
        bad[5] ^= 1;
        let e = open_all(bad.clone(), &k).unwrap_err();
        assert!(e.to_string().contains("failed authentication"), "{e}");
        // Reading on after the failure does not skip the bad record to accept the next one.
        let mut r = OpenReader::new(&bad[..], &k, CIPHER);
        let mut buf = [0u8; 16];
        assert!(r.read(&mut buf).is_err());
        assert!(
            r.read(&mut buf).is_err(),
            "a failed reader must stay failed"
        );
        // Reordered, replayed, dropped — at the start, in the middle, or at the end (the close
        // record missing: the tail was cut).
        for wire in [
            [recs[1].clone(), recs[0].clone(), recs[2].clone()].concat(),
            [recs[0].clone(), recs[0].clone(), recs[2].clone()].concat(),
            [recs[1].clone(), recs[2].clone()].concat(),
            [recs[0].clone(), recs[2].clone()].concat(),
            [recs[0].clone(), recs[1].clone()].concat(),
        ] {
            assert!(open_all(wire, &k).is_err());
        }
        // Another key (another session or direction).
        assert!(open_all(recs.concat(), &other).is_err());
        // A changed length.
        let mut long = recs[0].clone();
        long[0] += 1;
        long.push(0);
        assert!(open_all(long, &k).is_err());
        // Cut inside a record.
        let cut = recs[0][..recs[0].len() - 1].to_vec();
        assert!(open_all(cut, &k).is_err());
        // An absurd length is refused before anything is allocated.
        let huge = [0xffu8, 0xff, 0xff, 0x7f, 0, 0];
        let e = open_all(huge.to_vec(), &k).unwrap_err();
        assert!(e.to_string().contains("sealed record of"), "{e}");
    }
}
