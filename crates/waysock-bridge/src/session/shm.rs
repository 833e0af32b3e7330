//! shm mirroring: what changed between a pool's current bytes and its shadow (what the far
//! side holds), as patches. [`diff_area`], [`Patch`] and [`spans`] are pure; [`sync`] reads
//! the pool and splits a large area over two threads.
//!
//! A commit's changes go as few large frames: the damaged area is compared with the shadow in
//! [`BLOCK`]-byte blocks, changed blocks less than [`MERGE_GAP`] apart join one span (the
//! unchanged bytes between them cost less to send than a span of their own), and the spans
//! go together in patches of up to [`PATCH`] bytes of pixels (`SHM_PATCH`, see
//! [`crate::transport`]), so one commit is one record or a few. Each patch crosses raw, as one
//! LZ4 block or as one zstd frame, whichever [`Packer`] expects to arrive soonest (see
//! [`pack`]).

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::core::Area;
use super::error::SessionError;
use super::view::View;
use crate::transport::{Frame, Packing, MAX_PATCH};

mod moves;
mod pack;
#[cfg(test)]
pub(super) use moves::find_scroll;
pub(super) use moves::{apply_move, find_shift, Move};
pub(super) use pack::{LinkMeter, Packer};

/// Diff granularity.
pub(super) const BLOCK: usize = 64;

/// Unchanged bytes between two changed blocks that still join them in one span.
pub(super) const MERGE_GAP: usize = 4 * BLOCK;

/// Areas where at least this many bytes are compared are synced on two threads, half each.
pub const PARALLEL_SYNC: usize = 4 * PATCH;

/// Most pixel bytes in one patch: small enough that the far side applies one patch while
/// this side compresses the next.
pub(super) const PATCH: usize = 512 * 1024;

/// Where [`sync`] reads a client's pool.
#[derive(Clone, Copy)]
pub(super) enum Pool<'a> {
    /// Through the kernel, into a buffer.
    Fd(BorrowedFd<'a>),
    /// Where it lies, mapped (as large as the shadow).
    Mapped(&'a View),
}

/// Brings `area` of the far side's copy up to date: reads the pool, compares with the shadow
/// in blocks, and sends the changed spans in patches (at most [`PATCH`] bytes of pixels each)
/// as soon as each is full. A large area is split in two halves done on two threads, each
/// sending as it goes, so reading, comparing, compressing, the wire and the far side's
/// decompression all overlap.
pub(super) fn sync(
    pool: Pool<'_>,
    copy: &mut Shadow,
    area: Area,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    packer: &Packer,
) -> io::Result<()> {
    let Shadow {
        bytes: shadow,
        scratch,
        prints,
        shift,
    } = copy;
    let (first, end) = area.cover();
    let end = end.min(shadow.len());
    if first >= end {
        return Ok(());
    }
    let len = end - first;
    let (stride, width) = (area.stride, area.x1 - area.x0);
    let rows = if area.rows > 1 && stride >= width {
        area.rows.min((len + stride - width) / stride)
    } else {
        0
    };
    let key = (first, stride, width);
    let searchable = moves::searchable(rows, stride, width);
    // The area's bytes now: where they lie in a mapped pool, or read into `scratch`.
    let cur: &[u8] = match pool {
        Pool::Mapped(v) => v.bytes().get(first..end).ok_or_else(|| {
            io::Error::other(format!(
                "pool {id}: an area beyond its {} bytes",
                v.bytes().len()
            ))
        })?,
        Pool::Fd(fd) => {
            // Reused between commits: no fresh (zeroed) allocation per frame.
            scratch.resize(len, 0);
            let buf = &mut scratch[..len];
            if searchable && width * 2 <= stride {
                // A band much narrower than the rows: row by row (the bytes between its rows
                // are never looked at).
                for r in 0..rows {
                    let o = r * stride;
                    pread_full(fd, &mut buf[o..o + width], (first + o) as u64)?;
                }
            } else {
                pread_full(fd, buf, first as u64)?;
            }
            &scratch[..len]
        }
    };
    let shadow = &mut shadow[first..end];
    if searchable {
        // Content that keeps moving as it did (a window dragged) is checked for first, at a
        // few sampled blocks; else a scroll (cheap, from the fingerprints; the shadow's are
        // those of the last sync of this area when there was one), else a moved rectangle
        // searched for, when many rows changed.
        let moved = shift.and_then(|h| moves::shift_as_before(cur, shadow, stride, width, rows, h));
        let fc = match moved {
            Some(_) => Vec::new(),
            None => moves::row_prints(cur, stride, width, rows),
        };
        let found = moved.or_else(|| {
            let fs = prints
                .take(key)
                .filter(|f| f.len() == rows)
                .unwrap_or_else(|| moves::row_prints(shadow, stride, width, rows));
            moves::scroll_from_prints(&fc, &fs, stride, width).or_else(|| {
                (moves::changed_rows(&fc, &fs) * 4 >= rows)
                    .then(|| find_shift(cur, shadow, stride, width, rows, None))
                    .flatten()
            })
        });
        *shift = found.filter(|m| m.dx != 0).map(|m| (m.dy, m.dx));
        if let Some(m) = found {
            // Both copies move the same way; the diff then sends what still differs.
            if apply_move(shadow, &m) {
                send(m.frame(id, first as u64))?;
            }
        }
        // After the diff below the shadow holds what the pool holds.
        if fc.len() == rows {
            prints.keep(key, fc);
        }
    }
    let synced = diff_and_send(first, cur, shadow, area, send, id, packer);
    if let Pool::Mapped(v) = pool {
        if v.faulted() {
            return Err(io::Error::other(format!(
                "the client shrank pool {id} (or never gave it the size it declared) while the \
                 bridge read it: the session ends, as a compositor ends such a client"
            )));
        }
    }
    synced
}

/// The diff of [`sync`] after any move: `cur` and `shadow` hold the area from `first`; on two
/// threads when large.
fn diff_and_send(
    first: usize,
    cur: &[u8],
    shadow: &mut [u8],
    area: Area,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    packer: &Packer,
) -> io::Result<()> {
    let len = cur.len();
    let stop = AtomicBool::new(false);
    let (stride, width) = (area.stride, area.x1 - area.x0);
    let (stride, width) = if area.is_contiguous() {
        (len, len)
    } else {
        (stride, width)
    };
    // Bytes compared (only the damaged columns of each row).
    let compared = if width == len {
        len
    } else {
        len / stride * width + width
    };
    if compared < PARALLEL_SYNC {
        return sync_part(first, cur, shadow, stride, width, send, id, packer, &stop);
    }
    // Split between rows (or, for one long row, at a block boundary in its middle).
    let half = if stride < len {
        len.div_ceil(stride) / 2 * stride
    } else {
        (len / 2) / BLOCK * BLOCK
    };
    let (cur_a, cur_b) = cur.split_at(half);
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
            first + half,
            c,
            sh,
            stride,
            width,
            send,
            id,
            packer,
            &stop,
        )),
        None => Ok(()),
    };
    both(do_second, || {
        raise(sync_part(
            first, cur_a, shadow_a, stride, width, send, id, packer, &stop,
        ))
    })
    .map(|_| ())
}

/// Runs `second` on another thread while `first` runs here (or after it, when no thread can
/// be started); both results, or the first failure (`first`'s when both failed).
fn both<A, B: Send>(
    second: impl FnOnce() -> io::Result<B> + Send + Clone,
    first: impl FnOnce() -> io::Result<A>,
) -> io::Result<(A, B)> {
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("waysock-sync".into())
            .spawn_scoped(s, second.clone());
        let mine = first();
        let theirs = match other {
            Ok(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("pool sync thread panicked"))),
            Err(_) if mine.is_ok() => second(),
            Err(e) => Err(e),
        };
        Ok((mine?, theirs?))
    })
}

/// What the far side holds of one mirrored pool, and what syncing it keeps between commits.
#[derive(Debug, Default)]
pub(super) struct Shadow {
    /// The far side's copy, byte for byte.
    bytes: Vec<u8>,
    /// Where the pool is read into on each sync (kept to avoid a fresh allocation).
    scratch: Vec<u8>,
    /// Row fingerprints of recently synced areas of `bytes`.
    prints: Prints,
    /// The last moved rectangle's shift (rows, bytes), tried first next time.
    shift: Option<(isize, isize)>,
}

impl Shadow {
    /// The shadow of a new pool of `size` bytes (the far side's mirror starts zeroed).
    pub fn new(size: usize) -> Shadow {
        Shadow {
            bytes: vec![0; size],
            ..Shadow::default()
        }
    }

    /// The pool grew (or shrank) to `size` bytes.
    pub fn resize(&mut self, size: usize) {
        self.bytes.resize(size, 0);
        self.prints.clear();
    }

    /// The far side's copy changed at `offset` to `bytes` (what the compositor filled);
    /// whatever lies beyond the shadow is ignored.
    pub fn fold(&mut self, offset: usize, bytes: &[u8]) {
        self.prints.clear();
        if let Some(dst) = offset
            .checked_add(bytes.len())
            .and_then(|end| self.bytes.get_mut(offset..end))
        {
            dst.copy_from_slice(bytes);
        }
    }

    /// The far side's copy.
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Row fingerprints of areas as the far side holds them (after a sync the shadow equals the
/// pool there), kept for the next scroll search of the same area so that it reads only the
/// pool. A few areas (a client's buffers in one pool), the latest last; a stale one only
/// makes a move less likely to be found (the diff after a move is exact).
#[derive(Debug, Default)]
struct Prints {
    areas: Vec<((usize, usize, usize), Vec<u64>)>,
}

impl Prints {
    /// Areas remembered at most.
    const KEEP: usize = 4;

    /// The fingerprints of the area at `key` (first byte, stride, width), forgotten here.
    fn take(&mut self, key: (usize, usize, usize)) -> Option<Vec<u64>> {
        let i = self.areas.iter().position(|(k, _)| *k == key)?;
        Some(self.areas.remove(i).1)
    }

    fn keep(&mut self, key: (usize, usize, usize), prints: Vec<u64>) {
        if self.areas.len() >= Self::KEEP {
            self.areas.remove(0);
        }
        self.areas.push((key, prints));
    }

    /// Forgets every area (the shadow changed otherwise than by a sync).
    fn clear(&mut self) {
        self.areas.clear();
    }
}

/// One part of [`sync`]: `cur` holds the pool's bytes from `offset`, `shadow` is what the
/// far side holds there; rows of `width` bytes every `stride`. Ends early once `stop` is
/// raised (the other part failed).
#[allow(clippy::too_many_arguments)]
fn sync_part(
    offset: usize,
    cur: &[u8],
    shadow: &mut [u8],
    stride: usize,
    width: usize,
    send: &(dyn Fn(Frame) -> io::Result<()> + Sync),
    id: u32,
    packer: &Packer,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut patch = Patch::new(id, offset as u64);
    diff_area(cur, shadow, stride, width, stop, &mut |i, run| {
        patch.fill((offset + i) as u64, run, send, packer)
    })?;
    if !patch.is_empty() && !stop.load(Ordering::Relaxed) {
        send(patch.take(packer))?;
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
    // Copied into the shadow first and sent from there: `cur` may be the client's memory,
    // which can change between two reads, and what crosses must be what the shadow says.
    let mut flush = |span: (usize, usize), shadow: &mut [u8]| {
        let run = &mut shadow[span.0..span.1];
        run.copy_from_slice(&cur[span.0..span.1]);
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
        packer: &Packer,
    ) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = PATCH.saturating_sub(self.size() + 8);
            if room == 0 {
                send(self.take(packer))?;
                continue;
            }
            let (now, later) = bytes.split_at(room.min(bytes.len()));
            self.push(at, now);
            at += now.len() as u64;
            bytes = later;
        }
        if self.size() + 8 >= PATCH {
            send(self.take(packer))?;
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

    /// The patch as a frame, packed as `packer` chooses (raw, LZ4 or zstd); the patch is then
    /// empty, its next spans at or after the end of the last one.
    pub fn take(&mut self, packer: &Packer) -> Frame {
        let mut body = std::mem::take(&mut self.body);
        body.extend_from_slice(&self.table);
        body.extend_from_slice(&self.spans.to_le_bytes());
        let raw_len = body.len() as u32;
        let (packing, bytes) = packer.pack(body);
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
        Packing::Zstd => {
            debug_assert!(raw_len as usize <= MAX_PATCH);
            buf.resize(raw_len as usize, 0);
            // One context per thread that unpacks (the applier), reused patch after patch;
            // the output can never outgrow `buf` (raw_len bytes).
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            let n = DCTX.with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                match d.as_mut() {
                    Some(d) => d.decompress_to_buffer(bytes, &mut buf[..]),
                    None => Err(io::Error::other("no zstd context")),
                }
            });
            match n {
                Ok(n) if n == raw_len as usize => Ok(&buf[..]),
                Ok(_) => Err(SessionError::ZstdLength),
                Err(e) => Err(SessionError::Zstd(e.to_string())),
            }
        }
    }
}

/// Reads `buf.len()` bytes at `offset`; what lies beyond the file's end reads as zeros.
pub(super) fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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
    Ok(got)
}

/// Writes all of `buf` at `offset`.
pub(super) fn pwrite_full(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        done +=
            rustix::io::pwrite(fd, &buf[done..], offset + done as u64).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
