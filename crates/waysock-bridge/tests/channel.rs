//! The sealed channel's edges (SPEC §8): the record size limit on both sides, a writer that
//! failed stays failed, the end of the stream told apart from a cut, interrupted reads retried,
//! records from many threads all delivered intact and in number order.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use waysock_bridge::channel::{Cipher, OpenReader, SealWriter, SessionKeys, MAX_RECORD, TAG};
use waysock_bridge::transport::MAX_FRAME;

const KEY: [u8; 32] = [7; 32];
/// The cipher of these tests (both are covered by the channel's own tests).
const CIPHER: Cipher = Cipher::ChaCha20Poly1305;

/// Everything `w` wrote, read back through a reader.
fn open_all(wire: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    OpenReader::new(wire, &KEY, CIPHER)
        .read_to_end(&mut out)
        .map(|_| out)
}

#[test]
fn the_largest_record_passes_and_one_byte_more_is_refused() {
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    let largest = vec![0x5a; MAX_RECORD - TAG];
    w.write_record(&largest).unwrap();
    let e = w
        .write_record(&vec![0x5a; MAX_RECORD - TAG + 1])
        .expect_err("a record above MAX_RECORD was sealed");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    // Refused before it was numbered: the channel goes on.
    w.write_record(b"after").unwrap();
    w.close().unwrap();
    let wire = w.into_inner().unwrap();
    assert_eq!(wire.len(), (4 + MAX_RECORD) + (4 + 5 + TAG) + (4 + TAG));
    let mut want = largest;
    want.extend_from_slice(b"after");
    assert_eq!(open_all(&wire).unwrap(), want);
}

#[test]
fn one_frame_of_the_largest_size_fits_one_record() {
    // A frame is a 5-byte head and at most MAX_FRAME bytes of payload; a record holds one
    // whole frame of the largest size, and not a byte more.
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    w.write_record(&vec![1; MAX_FRAME + 5]).unwrap();
    assert!(w.write_record(&vec![1; MAX_FRAME + 6]).is_err());
    w.close().unwrap();
    assert_eq!(
        open_all(&w.into_inner().unwrap()).unwrap().len(),
        MAX_FRAME + 5
    );
}

/// A stream whose write number `fail_at` (from 0) fails; every other write works.
struct FailOnce {
    calls: usize,
    fail_at: usize,
    wire: Vec<u8>,
}

impl Write for FailOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls - 1 == self.fail_at {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "cut"));
        }
        self.wire.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_writer_that_failed_writes_nothing_more() {
    let w = SealWriter::new(
        FailOnce {
            calls: 0,
            fail_at: 1,
            wire: Vec::new(),
        },
        &KEY,
        CIPHER,
    );
    w.write_record(b"one").unwrap();
    assert!(w.write_record(b"two").is_err());
    // The far side's count is off now: nothing more goes out, though the stream works again.
    assert!(w.write_record(b"three").is_err());
    assert!(w.close().is_err());
    let inner = w.into_inner().unwrap();
    assert_eq!(inner.calls, 2, "the writer wrote after its failure");
    assert_eq!(inner.wire.len(), 4 + 3 + TAG);
}

#[test]
fn a_clean_end_a_cut_between_records_and_a_cut_inside_one_differ() {
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    w.write_record(b"one").unwrap();
    let first_len = 4 + 3 + TAG;
    w.close().unwrap();
    let wire = w.into_inner().unwrap();
    // Closed: the data, then end of stream, for as long as it is read.
    let mut r = OpenReader::new(&wire[..], &KEY, CIPHER);
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert_eq!(out, b"one");
    assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
    assert_eq!(r.read(&mut [0u8; 8]).unwrap(), 0);
    // Cut after a whole record, before the close: an error that says so.
    let e = open_all(&wire[..first_len]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(
        e.to_string().contains("without the far side closing"),
        "{e}"
    );
    // Cut inside the next length field, or inside a record.
    for cut in [first_len + 2, first_len - 1] {
        let e = open_all(&wire[..cut]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}: {e}");
        assert!(
            !e.to_string().contains("far side closing"),
            "cut at {cut}: {e}"
        );
    }
}

/// A reader that returns `Interrupted` before every real read and hands out one byte at a time.
struct Interrupting<'a> {
    data: &'a [u8],
    interrupt: bool,
}

impl Read for Interrupting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(self.data.len()).min(1);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn interrupted_and_short_reads_are_retried() {
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    w.write_record(b"one").unwrap();
    w.write_record(b"two").unwrap();
    w.close().unwrap();
    let wire = w.into_inner().unwrap();
    let mut r = OpenReader::new(
        Interrupting {
            data: &wire,
            interrupt: false,
        },
        &KEY,
        CIPHER,
    );
    let mut out = Vec::new();
    loop {
        let mut b = [0u8; 4];
        match r.read(&mut b) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(out, b"onetwo");
}

/// A stream shared by the writer's threads.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn records_from_many_threads_all_arrive_intact() {
    // Threads seal in parallel and write in number order: the reader, which expects numbers
    // 0, 1, 2, … and fails on any other, must open every record.
    let wire = Shared::default();
    let w = SealWriter::new(wire.clone(), &KEY, CIPHER);
    const THREADS: u8 = 8;
    const EACH: usize = 200;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let w = &w;
            s.spawn(move || {
                for i in 0..EACH {
                    let mut rec = vec![t; 64 + i % 300];
                    rec[0] = b'<';
                    *rec.last_mut().unwrap() = b'>';
                    w.write_record(&rec).expect("a thread's record was refused");
                }
            });
        }
    });
    w.close().unwrap();
    let wire = wire.0.lock().unwrap().clone();
    let plain = open_all(&wire).expect("records out of number order");
    let mut counts = [0usize; THREADS as usize];
    let mut at = 0;
    while at < plain.len() {
        assert_eq!(plain[at], b'<');
        let t = plain[at + 1];
        let end = at + plain[at..].iter().position(|&b| b == b'>').unwrap();
        assert!(
            plain[at + 1..end].iter().all(|&b| b == t),
            "a record was mixed"
        );
        counts[t as usize] += 1;
        at = end + 1;
    }
    assert_eq!(counts, [EACH; THREADS as usize]);
}

#[test]
fn session_keys_never_print() {
    let keys = SessionKeys {
        send: [0x41; 32],
        receive: [0x42; 32],
        cipher: CIPHER,
    };
    assert_eq!(format!("{keys:?}"), "SessionKeys(..)");
}

/// A reader whose first call fails with `kind`; later calls read `data`.
struct FailsFirst<'a> {
    kind: Option<io::ErrorKind>,
    data: &'a [u8],
}

impl Read for FailsFirst<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(kind) = self.kind.take() {
            return Err(kind.into());
        }
        self.data.read(buf)
    }
}

#[test]
fn a_read_error_other_than_interrupted_ends_the_channel() {
    let w = SealWriter::new(Vec::new(), &KEY, CIPHER);
    w.write_record(b"one").unwrap();
    w.close().unwrap();
    let wire = w.into_inner().unwrap();
    let mut r = OpenReader::new(
        FailsFirst {
            kind: Some(io::ErrorKind::ConnectionReset),
            data: &wire,
        },
        &KEY,
        CIPHER,
    );
    let e = r.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    // Failed for good: the data that follows is not read as if nothing had happened.
    assert!(r.read(&mut [0u8; 8]).is_err());
}
