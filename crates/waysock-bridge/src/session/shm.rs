//! shm mirroring: what changed between a pool's current bytes and its shadow (what the far
//! side holds), as runs of frames. [`diff_runs`] and [`run_frame`] are pure; [`sync`] reads
//! the pool and splits a large range over two threads.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::transport::Frame;

/// Diff granularity.
pub(super) const BLOCK: usize = 64;

/// Ranges at least this large are synced on two threads, half each.
pub const PARALLEL_SYNC: usize = 4 * RUN;

/// Largest changed run sent as one frame: small enough that the far side decompresses one
/// run while this side compresses the next.
const RUN: usize = 512 * 1024;

/// Brings `[start, end)` of the far side's copy up to date: reads the pool, compares with the
/// shadow in blocks, and sends each changed run (at most [`RUN`] bytes) as soon as it is found,
/// LZ4-compressed when that saves a tenth or more. A large range is split in two halves done
/// on two threads, each sending as it goes, so reading, comparing, compressing, the wire and
/// the far side's decompression all overlap.
pub(super) fn sync(
    fd: BorrowedFd<'_>,
    shadow: &mut [u8],
    scratch: &mut Vec<u8>,
    start: usize,
    end: usize,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
) -> io::Result<()> {
    let end = end.min(shadow.len());
    if start >= end {
        return Ok(());
    }
    let len = end - start;
    // Reused between commits: no fresh (zeroed) allocation per frame.
    scratch.resize(len, 0);
    let cur = &mut scratch[..len];
    let shadow = &mut shadow[start..end];
    let stop = AtomicBool::new(false);
    if len < PARALLEL_SYNC {
        return sync_part(fd, start, cur, shadow, send, id, &stop);
    }
    let half = (len / 2) / BLOCK * BLOCK;
    let (cur_a, cur_b) = cur.split_at_mut(half);
    let (shadow_a, shadow_b) = shadow.split_at_mut(half);
    // The second half goes to another thread, or is done here after the first when no thread
    // can be started (a thread limit).
    let second = Mutex::new(Some((cur_b, shadow_b)));
    // A failed part raises `stop`, which ends the other one early.
    let raise = |r: io::Result<()>| {
        if r.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        r
    };
    let do_second = || match second.lock().ok().and_then(|mut p| p.take()) {
        Some((c, sh)) => raise(sync_part(fd, start + half, c, sh, send, id, &stop)),
        None => Ok(()),
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("waysock-sync".into())
            .spawn_scoped(s, do_second);
        let mine = raise(sync_part(fd, start, cur_a, shadow_a, send, id, &stop));
        let theirs = match other {
            Ok(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("pool sync thread panicked"))),
            Err(_) if mine.is_ok() => do_second(),
            Err(_) => Ok(()),
        };
        mine.and(theirs)
    })
}

/// One contiguous part of [`sync`]: `cur` receives the pool's bytes from `offset`, `shadow`
/// is what the far side holds there. Ends early once `stop` is raised (the other part failed).
fn sync_part(
    fd: BorrowedFd<'_>,
    offset: usize,
    cur: &mut [u8],
    shadow: &mut [u8],
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    stop: &AtomicBool,
) -> io::Result<()> {
    pread_full(fd, cur, offset as u64)?;
    diff_runs(cur, shadow, stop, &mut |i, run| {
        send(run_frame(id, (offset + i) as u64, run))
    })
}

/// Compares `cur` with `shadow` (what the far side holds) in [`BLOCK`]-byte blocks and hands
/// each changed run (at most [`RUN`] bytes, its offset in `cur`) to `emit` as soon as it is
/// found, after copying it into `shadow`. Stops early once `stop` is raised.
pub(super) fn diff_runs(
    cur: &[u8],
    shadow: &mut [u8],
    stop: &AtomicBool,
    emit: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let len = cur.len().min(shadow.len());
    let mut i = 0;
    while i < len {
        if stop.load(Ordering::Relaxed) {
            // The other half failed: the session ends, nothing more is worth sending.
            return Ok(());
        }
        let b_end = (i + BLOCK).min(len);
        if cur[i..b_end] == shadow[i..b_end] {
            i = b_end;
            continue;
        }
        let run_start = i;
        let mut run_end = b_end;
        while run_end < len && run_end - run_start < RUN {
            let n_end = (run_end + BLOCK).min(len);
            if cur[run_end..n_end] == shadow[run_end..n_end] {
                break;
            }
            run_end = n_end;
        }
        let run = &cur[run_start..run_end];
        shadow[run_start..run_end].copy_from_slice(run);
        emit(run_start, run)?;
        i = run_end;
    }
    Ok(())
}

/// One changed run of mirror `id` at `at` as a frame: LZ4-compressed when that saves a tenth
/// or more (pixels usually compress well; waypipe also uses LZ4 by default), raw otherwise.
pub(super) fn run_frame(id: u32, at: u64, run: &[u8]) -> Frame {
    let packed = lz4_flex::block::compress(run);
    if packed.len() < run.len() - run.len() / 10 {
        Frame::ShmLz4 {
            id,
            offset: at,
            raw_len: run.len() as u32,
            bytes: packed,
        }
    } else {
        Frame::ShmData {
            id,
            offset: at,
            bytes: run.to_vec(),
        }
    }
}

/// Reads `buf.len()` bytes at `offset`; what lies beyond the file's end reads as zeros.
pub(super) fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n =
            rustix::io::pread(fd, &mut buf[got..], offset + got as u64).map_err(io::Error::from)?;
        if n == 0 {
            buf[got..].fill(0);
            break;
        }
        got += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(cur: &[u8], shadow: &mut [u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        diff_runs(cur, shadow, &AtomicBool::new(false), &mut |at, run| {
            out.push((at, run.len()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn only_changed_blocks_are_runs_and_the_shadow_follows() {
        let mut shadow = vec![0u8; 10 * BLOCK + 7];
        let mut cur = shadow.clone();
        assert!(
            runs(&cur, &mut shadow.clone()).is_empty(),
            "nothing changed"
        );
        cur[3] = 1; // block 0
        cur[2 * BLOCK] = 1; // block 2 ...
        cur[3 * BLOCK + 5] = 1; // ... and 3, adjacent: one run
        cur[10 * BLOCK + 6] = 1; // the short last block
        assert_eq!(
            runs(&cur, &mut shadow),
            vec![(0, BLOCK), (2 * BLOCK, 2 * BLOCK), (10 * BLOCK, 7)]
        );
        assert_eq!(shadow, cur);
        assert!(runs(&cur, &mut shadow).is_empty(), "the shadow caught up");
    }

    #[test]
    fn a_long_change_is_cut_into_runs_of_at_most_run_bytes() {
        let mut shadow = vec![0u8; RUN * 2 + BLOCK];
        let cur = vec![9u8; shadow.len()];
        assert_eq!(
            runs(&cur, &mut shadow),
            vec![(0, RUN), (RUN, RUN), (2 * RUN, BLOCK)]
        );
    }

    #[test]
    fn a_raised_stop_sends_nothing_more() {
        let mut shadow = vec![0u8; 4 * BLOCK];
        let cur = vec![1u8; 4 * BLOCK];
        let mut n = 0;
        diff_runs(&cur, &mut shadow, &AtomicBool::new(true), &mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn runs_compress_when_that_pays_and_go_raw_otherwise() {
        let flat = vec![7u8; 4096];
        match run_frame(3, 64, &flat) {
            Frame::ShmLz4 {
                id,
                offset,
                raw_len,
                bytes,
            } => {
                assert_eq!((id, offset, raw_len), (3, 64, 4096));
                assert_eq!(lz4_flex::block::decompress(&bytes, 4096).unwrap(), flat);
            }
            f => panic!("{f:?}"),
        }
        // Noise does not shrink: raw.
        let mut x = 0x9e37_79b9_u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert_eq!(
            run_frame(3, 0, &noise),
            Frame::ShmData {
                id: 3,
                offset: 0,
                bytes: noise.clone()
            }
        );
    }
}
