//! shm mirroring: what changed between a pool's current bytes and its shadow (what the far
//! side holds), as patches. [`diff_area`], [`Patch`] and [`spans`] are pure; [`sync`] reads
//! the pool and splits a large area over two threads.
//!
//! A commit's changes go as few large frames: the damaged area is compared with the shadow in
//! [`BLOCK`]-byte blocks, changed blocks less than [`MERGE_GAP`] apart join one span (the
//! unchanged bytes between them cost less to send than a span of their own), and the spans
//! go together in patches of up to [`PATCH`] bytes of pixels, each compressed as one LZ4 block
//! (`SHM_PATCH`, see [`crate::transport`]), so one commit is one record or a few.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::core::Area;
use super::error::SessionError;
use crate::transport::{Frame, Packing, MAX_PATCH};

/// Diff granularity.
pub(super) const BLOCK: usize = 64;

/// Unchanged bytes between two changed blocks that still join them in one span.
pub(super) const MERGE_GAP: usize = 4 * BLOCK;

/// Areas at least this large are synced on two threads, half each.
pub const PARALLEL_SYNC: usize = 4 * PATCH;

/// Most pixel bytes in one patch: small enough that the far side applies one patch while
/// this side compresses the next.
pub(super) const PATCH: usize = 512 * 1024;

/// Brings `area` of the far side's copy up to date: reads the pool, compares with the shadow
/// in blocks, and sends the changed spans in patches (at most [`PATCH`] bytes of pixels each)
/// as soon as each is full. A large area is split in two halves done on two threads, each
/// sending as it goes, so reading, comparing, compressing, the wire and the far side's
/// decompression all overlap.
pub(super) fn sync(
    fd: BorrowedFd<'_>,
    shadow: &mut [u8],
    scratch: &mut Vec<u8>,
    area: Area,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
) -> io::Result<()> {
    let (first, end) = area.cover();
    let end = end.min(shadow.len());
    if first >= end {
        return Ok(());
    }
    let len = end - first;
    // Reused between commits: no fresh (zeroed) allocation per frame.
    scratch.resize(len, 0);
    let cur = &mut scratch[..len];
    let shadow = &mut shadow[first..end];
    let stop = AtomicBool::new(false);
    let (stride, width) = if area.is_contiguous() {
        (len, len)
    } else {
        (area.stride, area.x1 - area.x0)
    };
    if len < PARALLEL_SYNC {
        return sync_part(fd, first, cur, shadow, stride, width, send, id, &stop);
    }
    // Split between rows (or, for one long row, at a block boundary in its middle).
    let half = if stride < len {
        len.div_ceil(stride) / 2 * stride
    } else {
        (len / 2) / BLOCK * BLOCK
    };
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
        Some((c, sh)) => raise(sync_part(
            fd,
            first + half,
            c,
            sh,
            stride,
            width,
            send,
            id,
            &stop,
        )),
        None => Ok(()),
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("waysock-sync".into())
            .spawn_scoped(s, do_second);
        let mine = raise(sync_part(
            fd, first, cur_a, shadow_a, stride, width, send, id, &stop,
        ));
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

/// One part of [`sync`]: `cur` receives the pool's bytes from `offset`, `shadow` is what the
/// far side holds there; rows of `width` bytes every `stride`. Ends early once `stop` is
/// raised (the other part failed).
#[allow(clippy::too_many_arguments)]
fn sync_part(
    fd: BorrowedFd<'_>,
    offset: usize,
    cur: &mut [u8],
    shadow: &mut [u8],
    stride: usize,
    width: usize,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    stop: &AtomicBool,
) -> io::Result<()> {
    pread_full(fd, cur, offset as u64)?;
    let mut patch = Patch::new(id, offset as u64);
    diff_area(cur, shadow, stride, width, stop, &mut |i, run| {
        patch.fill((offset + i) as u64, run, send)
    })?;
    if !patch.is_empty() && !stop.load(Ordering::Relaxed) {
        send(patch.take())?;
    }
    Ok(())
}

/// Compares `cur` with `shadow` (what the far side holds) over rows of `width` bytes that
/// start every `stride` bytes (`cur` starts with a row and ends with one), in [`BLOCK`]-byte
/// blocks from each row's start, and hands each changed span (its offset in `cur`) to `emit`
/// after copying it into `shadow`. Changed blocks less than [`MERGE_GAP`] apart (within a row
/// or across the end of one) make one span, unchanged bytes between them included. Stops
/// early once `stop` is raised.
pub(super) fn diff_area(
    cur: &[u8],
    shadow: &mut [u8],
    stride: usize,
    width: usize,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(usize, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let len = cur.len().min(shadow.len());
    let (stride, width) = if stride == 0 || width >= stride {
        (len.max(1), len)
    } else {
        (stride, width)
    };
    // The span being grown: [a, z).
    let mut open: Option<(usize, usize)> = None;
    let mut flush = |span: (usize, usize), shadow: &mut [u8]| {
        let run = &cur[span.0..span.1];
        shadow[span.0..span.1].copy_from_slice(run);
        emit(span.0, run)
    };
    let mut row = 0;
    while row < len {
        if stop.load(Ordering::Relaxed) {
            // The other half failed: the session ends, nothing more is worth sending.
            return Ok(());
        }
        let row_end = (row + width).min(len);
        let mut i = row;
        while i < row_end {
            let b_end = (i + BLOCK).min(row_end);
            if cur[i..b_end] != shadow[i..b_end] {
                open = match open {
                    Some((a, z)) if i - z <= MERGE_GAP => Some((a, b_end)),
                    Some(span) => {
                        flush(span, shadow)?;
                        Some((i, b_end))
                    }
                    None => Some((i, b_end)),
                };
                // A patch's worth goes at once: compressing and sending it overlap with
                // comparing the rest.
                if let Some(span) = open.filter(|&(a, z)| z - a >= PATCH) {
                    flush(span, shadow)?;
                    open = None;
                }
            }
            i = b_end;
        }
        row += stride;
    }
    match open {
        Some(span) => flush(span, shadow),
        None => Ok(()),
    }
}

/// Changed spans of one mirror on their way into an `SHM_PATCH` frame. The body, before
/// compression: the spans' bytes back to back, then `(skip u32, len u32)` per span (`skip`:
/// unchanged bytes since the end of the previous span, or since `base` for the first), then
/// the number of spans (u32).
#[derive(Debug)]
pub(super) struct Patch {
    id: u32,
    base: u64,
    /// Where the last span ends (`base` before the first).
    end: u64,
    body: Vec<u8>,
    table: Vec<u8>,
    spans: u32,
}

impl Patch {
    /// An empty patch of mirror `id` whose spans lie at `base` or after.
    pub fn new(id: u32, base: u64) -> Patch {
        Patch {
            id,
            base,
            end: base,
            body: Vec::new(),
            table: Vec::new(),
            spans: 0,
        }
    }

    /// Adds `bytes` at offset `at` of the mirror, at or after the end of the last span (one
    /// right after it extends it).
    pub fn push(&mut self, at: u64, bytes: &[u8]) {
        debug_assert!(at >= self.end);
        if bytes.is_empty() {
            return;
        }
        let len = bytes.len() as u32;
        if at == self.end && self.spans > 0 {
            let last = self.table.len() - 4;
            let prev = u32::from_le_bytes(self.table[last..].try_into().unwrap_or([0; 4]));
            self.table[last..].copy_from_slice(&(prev + len).to_le_bytes());
        } else {
            self.table
                .extend_from_slice(&((at - self.end) as u32).to_le_bytes());
            self.table.extend_from_slice(&len.to_le_bytes());
            self.spans += 1;
        }
        self.body.extend_from_slice(bytes);
        self.end = at + bytes.len() as u64;
    }

    /// Adds `bytes` at `at` (as [`push`](Self::push)), sending each patch that reaches
    /// [`PATCH`] bytes (pixels and table) as it goes.
    pub fn fill(
        &mut self,
        mut at: u64,
        mut bytes: &[u8],
        send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = PATCH.saturating_sub(self.size() + 8);
            if room == 0 {
                send(self.take())?;
                continue;
            }
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.push(at, now);
            at += now.len() as u64;
            bytes = later;
        }
        if self.size() + 8 >= PATCH {
            send(self.take())?;
        }
        Ok(())
    }

    /// The patch body's size so far.
    pub fn size(&self) -> usize {
        self.body.len() + self.table.len() + 4
    }

    pub fn is_empty(&self) -> bool {
        self.spans == 0
    }

    /// The patch as a frame, LZ4-compressed when that saves a tenth or more (pixels usually
    /// compress well; waypipe also uses LZ4 by default), raw otherwise; the patch is then
    /// empty, its next spans at or after the end of the last one.
    pub fn take(&mut self) -> Frame {
        let mut body = std::mem::take(&mut self.body);
        body.extend_from_slice(&self.table);
        body.extend_from_slice(&self.spans.to_le_bytes());
        let raw_len = body.len() as u32;
        let packed = lz4_flex::block::compress(&body);
        let (packing, bytes) = if packed.len() < body.len() - body.len() / 10 {
            (Packing::Lz4, packed)
        } else {
            (Packing::Raw, body)
        };
        let frame = Frame::ShmPatch {
            id: self.id,
            base: self.base,
            packing,
            raw_len,
            bytes,
        };
        self.base = self.end;
        self.table.clear();
        self.spans = 0;
        frame
    }
}

/// One span of a patch body: at `offset` past the patch's base, `body[at..at + len]`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub offset: u64,
    pub at: usize,
    pub len: usize,
}

/// The spans of a patch body (see [`Patch`]), every length checked: they fill the data part
/// exactly, in order; the last one ends `extent` bytes past the base (returned too).
pub(super) fn spans(body: &[u8]) -> Result<(Vec<Span>, u64), SessionError> {
    let bad = || SessionError::BadPatch;
    let n_at = body.len().checked_sub(4).ok_or_else(bad)?;
    let n = u32::from_le_bytes(body[n_at..].try_into().map_err(|_| bad())?) as usize;
    let table_at = n
        .checked_mul(8)
        .and_then(|t| n_at.checked_sub(t))
        .ok_or_else(bad)?;
    let mut out = Vec::with_capacity(n);
    let (mut offset, mut at) = (0u64, 0usize);
    for e in body[table_at..n_at].chunks_exact(8) {
        let skip = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]) as usize;
        offset = offset.checked_add(u64::from(skip)).ok_or_else(bad)?;
        if len > table_at - at {
            return Err(bad());
        }
        out.push(Span { offset, at, len });
        at += len;
        offset = offset.checked_add(len as u64).ok_or_else(bad)?;
    }
    if at != table_at {
        return Err(bad());
    }
    Ok((out, offset))
}

/// A patch body of `raw_len` bytes from its frame's bytes, decompressed into `buf` when it
/// was packed.
pub(super) fn unpack<'a>(
    packing: Packing,
    raw_len: u32,
    bytes: &'a [u8],
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], SessionError> {
    match packing {
        Packing::Raw => Ok(bytes),
        Packing::Lz4 => {
            debug_assert!(raw_len as usize <= MAX_PATCH);
            buf.resize(raw_len as usize, 0);
            match lz4_flex::block::decompress_into(bytes, buf) {
                Ok(n) if n == raw_len as usize => Ok(&buf[..]),
                Ok(_) => Err(SessionError::Lz4Length),
                Err(e) => Err(SessionError::Lz4(e.to_string())),
            }
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
mod tests;
