//! Content that moved between a pool and its shadow: a scroll (rows of the damaged band now
//! hold what the shadow holds some rows further on, found by row fingerprints) or a moved
//! rectangle (a window dragged across a surface, a canvas panned; found by block keys). Either
//! goes as one [`Move`] applied to both copies, and the diff after it sends what still
//! differs. A wrong guess costs bytes, never correctness: the diff is exact.

use crate::transport::Frame;

/// A rectangle of a copy moved: row `r < rows` (`width` bytes at `start + r·stride`) becomes
/// the `width` bytes at `start + (r + dy)·stride + dx`, every row read before any is
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::session) struct Move {
    pub start: usize,
    pub rows: usize,
    pub stride: usize,
    pub width: usize,
    pub dy: isize,
    pub dx: isize,
}

impl Move {
    /// As an `SHM_MOVE` frame of mirror `id`, `start` counted from `at`.
    pub(super) fn frame(&self, id: u32, at: u64) -> Frame {
        Frame::ShmMove {
            id,
            start: at + self.start as u64,
            rows: self.rows as u32,
            stride: self.stride as u32,
            width: self.width as u32,
            dy: self.dy as i32,
            dx: self.dx as i32,
        }
    }

    /// The mirror and the move an `SHM_MOVE` frame carries (`None`: another frame, or a start
    /// that does not fit this machine's addresses).
    pub fn of_frame(f: &Frame) -> Option<(u32, Move)> {
        match *f {
            Frame::ShmMove {
                id,
                start,
                rows,
                stride,
                width,
                dy,
                dx,
            } => Some((
                id,
                Move {
                    start: usize::try_from(start).ok()?,
                    rows: rows as usize,
                    stride: stride as usize,
                    width: width as usize,
                    dy: dy as isize,
                    dx: dx as isize,
                },
            )),
            _ => None,
        }
    }

    /// The bytes the move reads or writes, `[lo, hi)` of the copy it applies to; `None` if
    /// any of them would lie before 0 or past `usize::MAX`. Exact on every target: the
    /// figures are widened, never wrapped.
    pub fn extent(&self) -> Option<(usize, usize)> {
        if self.rows == 0 || self.width == 0 {
            return Some((self.start, self.start));
        }
        let (start, stride, width) = (self.start as i128, self.stride as i128, self.width as i128);
        let shift = self.dy as i128 * stride + self.dx as i128;
        let last = start + (self.rows as i128 - 1) * stride;
        let lo = start.min(start + shift);
        let hi = (last + width).max(last + width + shift);
        Some((usize::try_from(lo).ok()?, usize::try_from(hi).ok()?))
    }

    /// Where row `r` is written and where it is read from. Within [`Move::extent`] whenever
    /// that is `Some` and `r < rows`.
    pub fn row(&self, r: usize) -> (usize, usize) {
        let at = self.start as i128 + r as i128 * self.stride as i128;
        let from = at + self.dy as i128 * self.stride as i128 + self.dx as i128;
        (at as usize, from as usize)
    }

    /// The order rows are copied in so that none is read after it was written: `true` when
    /// bottom up (the rows read lie above the rows written).
    pub fn bottom_up(&self) -> bool {
        self.dy < 0
    }

    /// Whole rows back to back, read in one block as they are written (`dx` 0).
    pub fn is_block(&self) -> bool {
        self.width == self.stride && self.dx == 0
    }
}

/// Applies `m` to `copy`; `false` (and nothing moved) when [`Move::extent`] does not lie
/// within it.
pub(in crate::session) fn apply_move(copy: &mut [u8], m: &Move) -> bool {
    if m.extent().is_none_or(|(_, hi)| hi > copy.len()) {
        return false;
    }
    if m.rows == 0 || m.width == 0 || (m.dy == 0 && m.dx == 0) {
        return true;
    }
    if m.is_block() {
        let (at, from) = m.row(0);
        copy.copy_within(from..from + m.rows * m.stride, at);
    } else if m.bottom_up() {
        for r in (0..m.rows).rev() {
            let (at, from) = m.row(r);
            copy.copy_within(from..from + m.width, at);
        }
    } else {
        for r in 0..m.rows {
            let (at, from) = m.row(r);
            copy.copy_within(from..from + m.width, at);
        }
    }
    true
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

/// The fingerprints of `rows` rows of `width` bytes every `stride` (`buf` starts with a row).
pub(super) fn row_prints(buf: &[u8], stride: usize, width: usize, rows: usize) -> Vec<u64> {
    (0..rows)
        .map(|r| fingerprint(&buf[r * stride..r * stride + width]))
        .collect()
}

/// Whether an area of `rows` rows of `width` bytes every `stride` is worth a search at all.
pub(super) fn searchable(rows: usize, stride: usize, width: usize) -> bool {
    rows >= 16 && width >= 64 && stride >= width
}

/// Looks for a vertical scroll of `rows` rows of `width` bytes every `stride` bytes (`cur`
/// and `shadow` start with the first row); see [`scroll_from_prints`].
#[cfg(test)]
pub(in crate::session) fn find_scroll(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
) -> Option<Move> {
    if !searchable(rows, stride, width) {
        return None;
    }
    let len = cur.len().min(shadow.len());
    let rows = rows.min((len + stride - width) / stride);
    let fc = row_prints(cur, stride, width, rows);
    let fs = row_prints(shadow, stride, width, rows);
    scroll_from_prints(&fc, &fs, stride, width)
}

/// Rows whose fingerprint changed, out of all.
pub(super) fn changed_rows(fc: &[u64], fs: &[u64]) -> usize {
    fc.iter().zip(fs).filter(|(c, s)| c != s).count()
}

/// A vertical scroll, from the fingerprints of the area's rows now (`fc`) and in the shadow
/// (`fs`): a band of rows that now holds what the shadow holds `dy` rows further on, long
/// enough to be worth a move. Rows whose fingerprint is not unique in the shadow (blank
/// ones) cast no vote.
#[allow(clippy::needless_range_loop)] // rows index both fingerprint lists, with offsets
pub(super) fn scroll_from_prints(
    fc: &[u64],
    fs: &[u64],
    stride: usize,
    width: usize,
) -> Option<Move> {
    let rows = fc.len().min(fs.len());
    if !searchable(rows, stride, width) {
        return None;
    }
    // Most rows unchanged: no scroll.
    if changed_rows(fc, fs) * 4 < rows {
        return None;
    }
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
        dx: 0,
    })
}

/// Bytes a block key covers: 16 pixels of 4 bytes.
const KEY_SPAN: usize = 64;

/// `cur` is searched on one row in this many.
const ROW_STEP: usize = 8;

/// Areas larger than this (bytes compared) are not searched for moved rectangles: indexing
/// the shadow would cost more than most moves save (a full-screen video frame).
pub(super) const SHIFT_MAX_AREA: usize = 4 << 20;

/// The key of the [`KEY_SPAN`] bytes at `o`: four of its pixels (the 1st, 6th, 11th and
/// 16th), mixed; `None` when all four are equal (flat colour, which matches anywhere).
fn block_key(b: &[u8], o: usize) -> Option<u64> {
    let w = |i: usize| u32::from_le_bytes([b[o + i], b[o + i + 1], b[o + i + 2], b[o + i + 3]]);
    let (a, c, d, e) = (w(0), w(20), w(40), w(60));
    if a == c && c == d && d == e {
        return None;
    }
    let lo = (u64::from(a) | u64::from(c) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let hi = (u64::from(d) | u64::from(e) << 32).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    Some((lo ^ hi.rotate_left(29)) | 1)
}

/// The shadow's blocks by key: an open-addressed table of (key, block index), the index
/// `u32::MAX` for a key seen more than once (it tells nothing about where content came from).
struct Index {
    slots: Vec<(u64, u32)>,
    mask: usize,
    /// One bit per value of a key's bits 1..17 (8 KiB, stays in cache): most lookups miss,
    /// and most misses stop here.
    seen: Vec<u64>,
}

impl Index {
    const REPEATED: u32 = u32::MAX;

    fn new(blocks: usize) -> Index {
        let n = (blocks * 2).next_power_of_two().max(16);
        Index {
            slots: vec![(0, 0); n],
            mask: n - 1,
            seen: vec![0; 1024],
        }
    }

    fn bit(key: u64) -> (usize, u64) {
        let b = (key >> 1) as usize & 0xffff;
        (b >> 6, 1 << (b & 63))
    }

    fn insert(&mut self, key: u64, block: u32) {
        let (w, m) = Self::bit(key);
        self.seen[w] |= m;
        let mut i = (key >> 17) as usize & self.mask;
        loop {
            let s = &mut self.slots[i];
            if s.0 == 0 {
                *s = (key, block);
                return;
            }
            if s.0 == key {
                s.1 = Self::REPEATED;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn get(&self, key: u64) -> Option<u32> {
        let (w, m) = Self::bit(key);
        if self.seen[w] & m == 0 {
            return None;
        }
        let mut i = (key >> 17) as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s.0 == 0 {
                return None;
            }
            if s.0 == key {
                return (s.1 != Self::REPEATED).then_some(s.1);
            }
            i = (i + 1) & self.mask;
        }
    }
}

/// One candidate shift and where its evidence lies (rows and byte columns in `cur`).
#[derive(Clone, Copy, Debug)]
struct Vote {
    dy: isize,
    dx: isize,
    n: usize,
    rows: (usize, usize),
    cols: (usize, usize),
}

/// Looks for a rectangle of the area (`rows` rows of `width` bytes every `stride`; `cur` and
/// `shadow` start with the first row) that now holds what the shadow holds elsewhere in the
/// area, shifted by whole 4-byte pixels: a window dragged, a canvas panned.
///
/// Every [`KEY_SPAN`]-byte block of the shadow's rows is indexed by a key of four of its
/// pixels (keys seen twice, and flat blocks, are left out); on one row of `cur` in
/// [`ROW_STEP`], the key at every pixel is looked up, and each hit votes for the shift from
/// where the block is now to where the shadow held it. The shift with most votes, its
/// rectangle grown pixel by pixel and row by row while the content matches, is the move.
///
/// `hint`, the shift found last time (a window is dragged, a canvas panned, over many frames),
/// is tried first: when it explains at least half of what changed on the sampled rows, its
/// rectangle is the move, and the shadow is never indexed.
pub(in crate::session) fn find_shift(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
    hint: Option<(isize, isize)>,
) -> Option<Move> {
    if !searchable(rows, stride, width) || width < 4 * KEY_SPAN {
        return None;
    }
    let len = cur.len().min(shadow.len());
    let rows = rows.min((len + stride - width) / stride);
    if rows * width > SHIFT_MAX_AREA {
        return None;
    }
    if let Some(m) = hint.and_then(|h| shift_as_before(cur, shadow, stride, width, rows, h)) {
        return Some(m);
    }
    let per_row = width / KEY_SPAN;
    let mut index = Index::new(rows * per_row);
    for r in 0..rows {
        for k in 0..per_row {
            if let Some(key) = block_key(shadow, r * stride + k * KEY_SPAN) {
                index.insert(key, (r * per_row + k) as u32);
            }
        }
    }
    let mut votes: Vec<Vote> = Vec::new();
    for r in (0..rows).step_by(ROW_STEP) {
        let row = r * stride;
        for p in (0..=width - KEY_SPAN).step_by(4) {
            let Some(key) = block_key(cur, row + p) else {
                continue;
            };
            let Some(block) = index.get(key) else {
                continue;
            };
            let (sr, sk) = (block as usize / per_row, block as usize % per_row);
            let (dy, dx) = (
                sr as isize - r as isize,
                (sk * KEY_SPAN) as isize - p as isize,
            );
            if dy == 0 && dx == 0 {
                continue;
            }
            match votes.iter().position(|v| v.dy == dy && v.dx == dx) {
                Some(i) => {
                    let v = &mut votes[i];
                    v.n += 1;
                    v.rows = (v.rows.0.min(r), v.rows.1.max(r));
                    v.cols = (v.cols.0.min(p), v.cols.1.max(p + KEY_SPAN));
                }
                // A few candidates at most are real; past 64 it is noise.
                None if votes.len() < 64 => votes.push(Vote {
                    dy,
                    dx,
                    n: 1,
                    rows: (r, r),
                    cols: (p, p + KEY_SPAN),
                }),
                None => {}
            }
        }
        // A clear winner ends the search early: growing its rectangle finds the rest.
        let [a, b] = top_two(&votes);
        if a.n >= 64 && a.n >= 4 * b.n {
            break;
        }
    }
    let best = votes
        .into_iter()
        .max_by_key(|v| (v.n, -v.dy.abs() - v.dx.abs()))?;
    if best.n < 8 {
        return None;
    }
    grow(cur, shadow, stride, width, rows, best)
}

/// The moved rectangle when the content moved as it did last time (`dy` rows, `dx` bytes)
/// and that explains at least half of what changed (see [`find_shift`]).
pub(in crate::session) fn shift_as_before(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
    (dy, dx): (isize, isize),
) -> Option<Move> {
    if !searchable(rows, stride, width) || width < 4 * KEY_SPAN {
        return None;
    }
    let len = cur.len().min(shadow.len());
    let rows = rows.min((len + stride - width) / stride);
    let v = check_shift(cur, shadow, stride, width, rows, dy, dx)?;
    grow(cur, shadow, stride, width, rows, v)
}

/// The evidence for one given shift: on one row of `cur` in [`ROW_STEP`], every
/// [`KEY_SPAN`]/2 bytes, the blocks that match the shadow `dy` rows and `dx` bytes away;
/// `None` unless they are at least 8 and at least half of the blocks that changed in place.
#[allow(clippy::too_many_arguments)]
fn check_shift(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
    dy: isize,
    dx: isize,
) -> Option<Vote> {
    let mut v = Vote {
        dy,
        dx,
        n: 0,
        rows: (usize::MAX, 0),
        cols: (usize::MAX, 0),
    };
    let mut changed = 0;
    for r in (0..rows).step_by(ROW_STEP) {
        let sr = r as isize + dy;
        if sr < 0 || sr >= rows as isize {
            continue;
        }
        let (row, from) = (r * stride, sr as usize * stride);
        for p in (0..=width - KEY_SPAN).step_by(KEY_SPAN / 2) {
            let Some(key) = block_key(cur, row + p) else {
                continue;
            };
            if block_key(shadow, row + p) == Some(key) {
                continue;
            }
            changed += 1;
            let q = p as isize + dx;
            if q < 0 || q as usize + KEY_SPAN > width {
                continue;
            }
            if block_key(shadow, from + q as usize) == Some(key) {
                v.n += 1;
                v.rows = (v.rows.0.min(r), v.rows.1.max(r));
                v.cols = (v.cols.0.min(p), v.cols.1.max(p + KEY_SPAN));
            }
        }
    }
    (v.n >= 8 && v.n * 2 >= changed).then_some(v)
}

/// The two candidates with the most votes, the most first (a missing one counts none).
fn top_two(votes: &[Vote]) -> [Vote; 2] {
    let none = Vote {
        dy: 0,
        dx: 0,
        n: 0,
        rows: (0, 0),
        cols: (0, 0),
    };
    let (mut a, mut b) = (none, none);
    for &v in votes {
        if v.n > a.n {
            (a, b) = (v, a);
        } else if v.n > b.n {
            b = v;
        }
    }
    [a, b]
}

/// The rectangle of `v`'s shift: from the columns and rows its votes came from, grown while
/// the content matches (whole pixels across, whole rows down and up), kept inside the area
/// on both ends of the move.
fn grow(
    cur: &[u8],
    shadow: &[u8],
    stride: usize,
    width: usize,
    rows: usize,
    v: Vote,
) -> Option<Move> {
    // Rows and columns where both the rectangle and its source lie inside the area.
    let row_ok =
        |r: isize| r >= 0 && r < rows as isize && r + v.dy >= 0 && r + v.dy < rows as isize;
    let col_ok =
        |x: isize| x >= 0 && x < width as isize && x + v.dx >= 0 && x + v.dx < width as isize;
    // Bytes `[x, x + n)` of row `r` match their source.
    let same = |r: usize, x: usize, n: usize| {
        let at = r * stride + x;
        let from = (at as isize + v.dy * stride as isize + v.dx) as usize;
        cur[at..at + n] == shadow[from..from + n]
    };
    let (mut x0, mut x1) = (v.cols.0, v.cols.1);
    let (r0, r1) = (v.rows.0, v.rows.1);
    if !(row_ok(r0 as isize)
        && row_ok(r1 as isize)
        && col_ok(x0 as isize)
        && col_ok(x1 as isize - 1))
    {
        return None;
    }
    let probe = [r0, (r0 + r1) / 2, r1];
    while x0 >= 4 && col_ok(x0 as isize - 4) && probe.iter().all(|&r| same(r, x0 - 4, 4)) {
        x0 -= 4;
    }
    while x1 + 4 <= width && col_ok(x1 as isize + 3) && probe.iter().all(|&r| same(r, x1, 4)) {
        x1 += 4;
    }
    let n = x1 - x0;
    let (mut top, mut bottom) = (r0, r1 + 1);
    while top > 0 && row_ok(top as isize - 1) && same(top - 1, x0, n) {
        top -= 1;
    }
    while bottom < rows && row_ok(bottom as isize) && same(bottom, x0, n) {
        bottom += 1;
    }
    // Worth a frame when it spares a good block of pixels.
    if bottom - top < 8 || n < 4 * KEY_SPAN {
        return None;
    }
    Some(Move {
        start: top * stride + x0,
        rows: bottom - top,
        stride,
        width: n,
        dy: v.dy,
        dx: v.dx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-byte-pixel picture, `w` pixels a row: noise inside a `ww`×`wh` window at (x, y),
    /// a diagonal gradient elsewhere.
    fn picture(w: usize, h: usize, (x, y): (usize, usize), (ww, wh): (usize, usize)) -> Vec<u8> {
        let mut b = Vec::with_capacity(w * h * 4);
        for r in 0..h {
            for c in 0..w {
                let inside = (x..x + ww).contains(&c) && (y..y + wh).contains(&r);
                let v = if inside {
                    let (i, j) = ((c - x) as u32, (r - y) as u32);
                    (i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503)).rotate_left(i % 13)
                } else {
                    (r + 2 * c) as u32 | 0x3000_0000
                };
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn a_remembered_shift_is_taken_only_when_it_explains_the_change() {
        let (w, h) = (512, 300);
        let before = picture(w, h, (100, 50), (200, 150));
        let after = picture(w, h, (110, 56), (200, 150));
        let (stride, rows) = (w * 4, h);
        // The window came from 6 rows up and 10 pixels left.
        let v = check_shift(&after, &before, stride, stride, rows, -6, -40).expect("evidence");
        assert!(v.n >= 8 && v.rows.0 >= 56 && v.cols.0 >= 110 * 4, "{v:?}");
        // Another shift explains nothing; none is needed where nothing changed.
        assert!(check_shift(&after, &before, stride, stride, rows, 6, 40).is_none());
        assert!(check_shift(&before, &before, stride, stride, rows, -6, -40).is_none());
        // A wrong hint falls back to the full search.
        let m = find_shift(&after, &before, stride, stride, rows, Some((3, 4))).expect("move");
        assert_eq!((m.dy, m.dx), (-6, -40));
    }
}
