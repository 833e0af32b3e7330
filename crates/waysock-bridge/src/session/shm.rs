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
use crate::transport::{Frame, Packing, MAX_PATCH};

mod pack;
pub(super) use pack::{LinkMeter, Packer};

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
    packer: &Packer,
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
    pread_full(fd, cur, first as u64)?;
    if area.rows > 1 && area.stride > 0 {
        let rows = len.div_ceil(area.stride);
        if let Some(m) = find_scroll(cur, shadow, area.stride, area.x1 - area.x0, rows) {
            // Both copies move the same way; the diff then sends what still differs.
            apply_move(shadow, &m);
            send(m.frame(id, first as u64))?;
        }
    }
    let (stride, width) = if area.is_contiguous() {
        (len, len)
    } else {
        (area.stride, area.x1 - area.x0)
    };
    if len < PARALLEL_SYNC {
        return sync_part(first, cur, shadow, stride, width, send, id, packer, &stop);
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
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("waysock-sync".into())
            .spawn_scoped(s, do_second);
        let mine = raise(sync_part(
            first, cur_a, shadow_a, stride, width, send, id, packer, &stop,
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

/// One part of [`sync`]: `cur` holds the pool's bytes from `offset`, `shadow` is what the
/// far side holds there; rows of `width` bytes every `stride`. Ends early once `stop` is
/// raised (the other part failed).
#[allow(clippy::too_many_arguments)]
fn sync_part(
    offset: usize,
    cur: &mut [u8],
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

/// Rows of a mirror's copy moved by `dy` rows (a scroll): row `r` of the band (`0..rows`,
/// `width` bytes every `stride` from `start`) becomes what row `r + dy` held, all rows read
/// before any is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Move {
    pub start: usize,
    pub rows: usize,
    pub stride: usize,
    pub width: usize,
    pub dy: isize,
}

impl Move {
    /// As an `SHM_MOVE` frame of mirror `id`, `start` counted from `at`.
    fn frame(&self, id: u32, at: u64) -> Frame {
        Frame::ShmMove {
            id,
            start: at + self.start as u64,
            rows: self.rows as u32,
            stride: self.stride as u32,
            width: self.width as u32,
            dy: self.dy as i32,
        }
    }

    /// The bytes the move reads or writes: `[lo, hi)` of the copy it applies to (`None` if
    /// that does not fit in a `usize` or starts before 0).
    pub fn extent(&self) -> Option<(usize, usize)> {
        if self.rows == 0 || self.width == 0 {
            return Some((self.start, self.start));
        }
        let row = |r: isize| -> Option<usize> {
            let off = r.checked_mul(self.stride as isize)?;
            self.start.checked_add_signed(off)
        };
        let last = self.rows as isize - 1;
        let lo = row(self.dy.min(0))?;
        let hi = row(last.checked_add(self.dy.max(0))?)?.checked_add(self.width)?;
        Some((lo, hi))
    }
}

/// Applies `m` to `copy` (which holds all of [`Move::extent`]).
pub(super) fn apply_move(copy: &mut [u8], m: &Move) {
    if m.rows == 0 || m.width == 0 || m.dy == 0 {
        return;
    }
    let at = |r: usize| m.start + r * m.stride;
    let src = |r: usize| {
        m.start
            .wrapping_add_signed(r as isize * m.stride as isize + m.dy * m.stride as isize)
    };
    if m.width == m.stride {
        // Whole rows: one block.
        let len = m.rows * m.stride;
        copy.copy_within(src(0)..src(0) + len, at(0));
    } else if m.dy > 0 {
        // Reading below what is written: top down.
        for r in 0..m.rows {
            copy.copy_within(src(r)..src(r) + m.width, at(r));
        }
    } else {
        for r in (0..m.rows).rev() {
            copy.copy_within(src(r)..src(r) + m.width, at(r));
        }
    }
}

/// A row's fingerprint: one 32-bit word every 16 bytes and the last one (enough to tell a
/// line of text from another), mixed. Equal rows have equal fingerprints; unequal ones
/// rarely do, and when they do a move is merely less useful (the diff after it is exact).
fn fingerprint(row: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = [
        0x9e37_79b9_7f4a_7c15u64,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x27d4_eb2f_1656_67c5,
    ];
    for (i, w) in row.chunks_exact(16).enumerate() {
        let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let lane = &mut h[i & 3];
        *lane = (*lane ^ u64::from(v)).wrapping_mul(PRIME);
    }
    if let Some(t) = row.len().checked_sub(4) {
        let v = u32::from_le_bytes([row[t], row[t + 1], row[t + 2], row[t + 3]]);
        h[0] = (h[0] ^ u64::from(v)).wrapping_mul(PRIME);
    }
    h[0] ^ h[1].rotate_left(17) ^ h[2].rotate_left(31) ^ h[3].rotate_left(47) ^ row.len() as u64
}

/// Looks for a vertical scroll of `rows` rows of `width` bytes every `stride` bytes (`cur`
/// and `shadow` start with the first row): a band of rows that now holds what the shadow
/// holds `dy` rows further on, long enough to be worth a move. Rows whose fingerprint is not
/// unique in the shadow (blank ones) cast no vote.
#[allow(clippy::needless_range_loop)] // rows index both fingerprint lists, with offsets
pub(super) fn find_scroll(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
) -> Option<Move> {
    if rows < 16 || width < 64 || stride < width {
        return None;
    }
    let len = cur.len().min(shadow.len());
    let rows = rows.min((len + stride - width) / stride);
    let fp = |b: &[u8], r: usize| fingerprint(&b[r * stride..r * stride + width]);
    // Cheap first: most rows unchanged, no scroll (a few sample rows tell).
    let step = (rows / 32).max(1);
    let sampled = (0..rows).step_by(step);
    let n = sampled.clone().count();
    let changed = sampled.filter(|&r| fp(cur, r) != fp(shadow, r)).count();
    if changed * 4 < n {
        return None;
    }
    let fc: Vec<u64> = (0..rows).map(|r| fp(cur, r)).collect();
    let fs: Vec<u64> = (0..rows).map(|r| fp(shadow, r)).collect();
    let mut seen: std::collections::HashMap<u64, (usize, u32)> =
        std::collections::HashMap::with_capacity(rows);
    for (r, &f) in fs.iter().enumerate() {
        seen.entry(f).and_modify(|e| e.1 += 1).or_insert((r, 1));
    }
    let mut votes: std::collections::HashMap<isize, usize> = std::collections::HashMap::new();
    for r in 0..rows {
        if fc[r] == fs[r] {
            continue;
        }
        if let Some(&(from, 1)) = seen.get(&fc[r]) {
            *votes.entry(from as isize - r as isize).or_default() += 1;
        }
    }
    let (dy, n) = votes.into_iter().max_by_key(|&(dy, n)| (n, -dy.abs()))?;
    if n < 3 {
        return None;
    }
    // The longest band of rows that match `dy` rows on.
    let (mut best, mut run) = ((0, 0), None::<usize>);
    for r in 0..=rows {
        let src = r as isize + dy;
        let hit = r < rows && src >= 0 && (src as usize) < rows && fc[r] == fs[src as usize];
        match (hit, run) {
            (true, None) => run = Some(r),
            (false, Some(a)) => {
                if r - a > best.1 - best.0 {
                    best = (a, r);
                }
                run = None;
            }
            _ => {}
        }
    }
    let (a, z) = best;
    // Worth it when it saves sending a good part of the band.
    let gain = (a..z).filter(|&r| fc[r] != fs[r]).count();
    if z - a < 8 || gain * 4 < z - a {
        return None;
    }
    Some(Move {
        start: a * stride,
        rows: z - a,
        stride,
        width,
        dy,
    })
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
