use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use super::*;
use crate::session::view::View;

/// The spans `diff_area` hands out, as (offset, length).
fn runs(cur: &[u8], shadow: &mut [u8], stride: usize, width: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    diff_area(
        cur,
        shadow,
        stride,
        width,
        &AtomicBool::new(false),
        &mut |at, run| {
            out.push((at, run.len()));
            Ok(())
        },
    )
    .unwrap();
    out
}

/// Applies patch frames to `far` (a whole mirror), as the far side does.
fn apply(frames: &[Frame], far: &mut [u8]) {
    let mut buf = Vec::new();
    for f in frames {
        let Frame::ShmPatch {
            base,
            packing,
            raw_len,
            bytes,
            ..
        } = f
        else {
            panic!("{f:?}");
        };
        assert!(*raw_len as usize <= MAX_PATCH);
        let body = unpack(*packing, *raw_len, bytes, &mut buf).unwrap();
        let (spans, extent) = spans(body).unwrap();
        assert!(*base + extent <= far.len() as u64);
        for s in spans {
            let at = (*base + s.offset) as usize;
            far[at..at + s.len].copy_from_slice(&body[s.at..s.at + s.len]);
        }
    }
}

/// A deterministic byte stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn changed_blocks_are_spans_near_ones_merge_and_the_shadow_follows() {
    let mut shadow = vec![0u8; 20 * BLOCK + 7];
    let mut cur = shadow.clone();
    assert!(runs(&cur, &mut shadow.clone(), 0, 0).is_empty(), "nothing");
    cur[3] = 1; // block 0
    cur[2 * BLOCK] = 1; // block 2: one block apart, merged with block 0
    cur[3 * BLOCK + 5] = 1; // block 3: adjacent
    cur[(4 + MERGE_GAP / BLOCK + 1) * BLOCK] = 1; // more than MERGE_GAP after: a new span
    cur[20 * BLOCK + 6] = 1; // the short last block
    let far = (4 + MERGE_GAP / BLOCK + 1) * BLOCK;
    assert_eq!(
        runs(&cur, &mut shadow, 0, 0),
        vec![(0, 4 * BLOCK), (far, BLOCK), (20 * BLOCK, 7)]
    );
    assert_eq!(shadow, cur);
    assert!(runs(&cur, &mut shadow, 0, 0).is_empty(), "caught up");
    // Exactly MERGE_GAP apart: still one span.
    let mut cur2 = cur.clone();
    cur2[0] = 9;
    cur2[BLOCK + MERGE_GAP] = 9;
    assert_eq!(
        runs(&cur2, &mut shadow, 0, 0),
        vec![(0, 2 * BLOCK + MERGE_GAP)]
    );
}

#[test]
fn only_the_damaged_columns_are_compared() {
    // Rows of 10 bytes every 1000 (an odd stride): the columns [0, 10) of each, `cur` from
    // the first row's start to the last row's end.
    let (stride, width, rows) = (1001, 10, 5);
    let len = (rows - 1) * stride + width;
    let mut shadow = vec![0u8; len];
    let mut cur = shadow.clone();
    cur[stride + 3] = 1; // row 1
    cur[stride + 500] = 1; // between the columns: not looked at
    cur[4 * stride + 9] = 1; // the last byte of the last row
    assert_eq!(
        runs(&cur, &mut shadow, stride, width),
        vec![(stride, width), (4 * stride, width)]
    );
    assert_eq!(shadow[stride + 500], 0, "outside the damage: not sent");
    // Rows closer than MERGE_GAP: one span with what lies between them.
    let (stride, width) = (100, 40);
    let mut shadow = vec![0u8; 2 * stride + width];
    let mut cur = shadow.clone();
    cur[0] = 1;
    cur[stride] = 1;
    cur[2 * stride + 39] = 1;
    assert_eq!(
        runs(&cur, &mut shadow, stride, width),
        vec![(0, 2 * stride + width)]
    );
    assert_eq!(shadow, cur);
}

#[test]
fn a_raised_stop_sends_nothing_more() {
    let mut shadow = vec![0u8; 4 * BLOCK];
    let cur = vec![1u8; 4 * BLOCK];
    let mut n = 0;
    diff_area(
        &cur,
        &mut shadow,
        0,
        0,
        &AtomicBool::new(true),
        &mut |_, _| {
            n += 1;
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(shadow, vec![0u8; 4 * BLOCK], "nothing sent, nothing taken");
}

#[test]
fn patches_carry_spans_compress_when_that_pays_and_split_at_their_size() {
    let mut p = Patch::new(3, 100);
    assert!(p.is_empty());
    p.push(100, &[7; 64]);
    p.push(164, &[7; 64]); // right after: the same span
    p.push(1000, &[8; 100]);
    let f = p.take(&Packer::default());
    let mut far = vec![0u8; 2000];
    apply(std::slice::from_ref(&f), &mut far);
    assert_eq!(far[100..228], [7; 128]);
    assert_eq!(far[228..1000], [0; 772][..]);
    assert_eq!(far[1000..1100], [8; 100]);
    assert!(matches!(
        f,
        Frame::ShmPatch {
            packing: Packing::Lz4,
            id: 3,
            base: 100,
            ..
        }
    ));
    // The next patch counts from where the last span ended.
    assert!(p.is_empty());
    p.push(1200, &[1]);
    assert!(matches!(
        p.take(&Packer::default()),
        Frame::ShmPatch { base: 1100, .. }
    ));
    // Noise does not shrink: raw.
    let mut rng = Rng(0x9e37_79b9);
    let noise: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
    let mut p = Patch::new(1, 0);
    p.push(0, &noise);
    let f = p.take(&Packer::default());
    assert!(matches!(
        f,
        Frame::ShmPatch {
            packing: Packing::Raw,
            ..
        }
    ));
    let mut far = vec![0u8; 4096];
    apply(&[f], &mut far);
    assert_eq!(far, noise);
    // More than a patch's worth: patches of at most PATCH bytes, in order.
    let big: Vec<u8> = (0..3 * PATCH + 5).map(|i| (i / 7) as u8).collect();
    let sent = Mutex::new(Vec::new());
    let send = |f: Frame| {
        sent.lock().unwrap().push(f);
        Ok(())
    };
    let mut p = Patch::new(1, 0);
    p.fill(10, &big, &send, &Packer::default()).unwrap();
    if !p.is_empty() {
        send(p.take(&Packer::default())).unwrap();
    }
    let sent = sent.into_inner().unwrap();
    assert_eq!(sent.len(), 4);
    for f in &sent {
        let Frame::ShmPatch { raw_len, .. } = f else {
            unreachable!()
        };
        assert!(*raw_len as usize <= PATCH);
    }
    let mut far = vec![0u8; big.len() + 10];
    apply(&sent, &mut far);
    assert_eq!(far[10..], big[..]);
}

#[test]
fn a_patch_body_that_does_not_add_up_is_refused() {
    let mut p = Patch::new(1, 0);
    p.push(5, &[1, 2, 3]);
    p.push(20, &[4]);
    let Frame::ShmPatch { bytes, .. } = p.take(&Packer::default()) else {
        unreachable!()
    };
    let mut buf = Vec::new();
    let body = unpack(Packing::Lz4, 4 + 16 + 4, &bytes, &mut buf)
        .map(<[u8]>::to_vec)
        .or_else(|_| Ok::<_, SessionError>(bytes.clone()))
        .unwrap();
    let (s, extent) = spans(&body).unwrap();
    assert_eq!(
        s,
        vec![
            Span {
                offset: 5,
                at: 0,
                len: 3
            },
            Span {
                offset: 20,
                at: 3,
                len: 1
            }
        ]
    );
    assert_eq!(extent, 21);
    // Too short, a count beyond the table, lengths past the data or short of it.
    assert!(spans(&[]).is_err());
    assert!(spans(&[1, 0, 0]).is_err());
    assert!(spans(&[9, 0, 0, 0]).is_err());
    let mut longer = body.clone();
    longer[4 + 4] = 4; // first span's length 3 → 4
    assert!(spans(&longer).is_err());
    let mut shorter = body.clone();
    shorter[4 + 4] = 2;
    assert!(spans(&shorter).is_err());
    assert_eq!(spans(&[0, 0, 0, 0]).unwrap(), (vec![], 0), "no span");
    // A skip that overflows.
    let mut wrap = vec![1u8];
    wrap.extend_from_slice(&u32::MAX.to_le_bytes());
    wrap.extend_from_slice(&1u32.to_le_bytes());
    wrap.extend_from_slice(&1u32.to_le_bytes());
    assert_eq!(spans(&wrap).unwrap().1, u64::from(u32::MAX) + 1);
    // Corrupt or short LZ4.
    let mut buf = Vec::new();
    assert!(unpack(Packing::Lz4, 100, &[0xff, 1, 2], &mut buf).is_err());
    assert!(unpack(
        Packing::Lz4,
        100,
        &lz4_flex::block::compress(&[0; 50]),
        &mut buf
    )
    .is_err());
}

/// A memfd holding `bytes`.
fn pool(bytes: &[u8]) -> std::fs::File {
    let fd = rustix::fs::memfd_create("shm-test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).unwrap();
    f
}

/// The frames [`sync`] sends for `area` of the pool `file` against `shadow` (mirror 1, raw,
/// LZ4 and zstd patches in turn).
fn synced(file: &std::fs::File, shadow: &mut [u8], area: Area) -> Vec<Frame> {
    // Through the kernel, and (when the pool is large enough to be mapped) where it lies:
    // both leave the same shadow, and what each sends brings a far copy to it.
    let before = shadow.to_vec();
    let mut by_fd = Shadow::new(shadow.len());
    by_fd.fold(0, shadow);
    let sent_fd = synced_as(file, &mut by_fd, area, false);
    let mut far = before.clone();
    apply_all(&sent_fd, &mut far);
    assert!(far == by_fd.bytes(), "read through the kernel");
    let mut copy = Shadow::new(shadow.len());
    copy.fold(0, shadow);
    let sent = synced_as(file, &mut copy, area, true);
    assert!(
        copy.bytes() == by_fd.bytes(),
        "both ways leave the same shadow"
    );
    shadow.copy_from_slice(copy.bytes());
    sent
}

/// [`synced`], against a kept [`Shadow`] (its fingerprints kept from earlier syncs); the pool
/// mapped when it is large enough.
fn synced_with(file: &std::fs::File, shadow: &mut Shadow, area: Area) -> Vec<Frame> {
    synced_as(file, shadow, area, true)
}

/// The frames of one sync, the pool read through the kernel or (`mapped`, if it can be)
/// mapped.
fn synced_as(file: &std::fs::File, shadow: &mut Shadow, area: Area, mapped: bool) -> Vec<Frame> {
    let len = file.metadata().unwrap().len();
    let view = if mapped {
        View::map(file.as_fd(), len)
    } else {
        None
    };
    let pool = match &view {
        Some(v) => Pool::Mapped(v),
        None => Pool::Fd(file.as_fd()),
    };
    frames_of(pool, shadow, area, &Packer::cycling())
}

/// The frames one sync of `area` of `pool` sends (mirror 1).
fn frames_of(pool: Pool<'_>, shadow: &mut Shadow, area: Area, packer: &Packer) -> Vec<Frame> {
    let sent = Mutex::new(Vec::new());
    sync(
        pool,
        shadow,
        area,
        &|f| {
            sent.lock().unwrap().push(f);
            Ok(())
        },
        1,
        packer,
    )
    .unwrap();
    sent.into_inner().unwrap()
}

/// Syncs `area` of `cur` (a pool) against `shadow`, applying what is sent to `far`; then
/// checks the far copy is the shadow, and the area's bytes are `cur`'s.
fn sync_and_check(cur: &[u8], shadow: &mut Vec<u8>, far: &mut Vec<u8>, area: Area) -> usize {
    let sent = synced(&pool(cur), shadow, area);
    apply(&sent, far);
    assert!(far == shadow, "the far copy is what the shadow says");
    for r in 0..area.rows {
        let a = area.start + r * area.stride;
        assert!(
            far[a + area.x0..a + area.x1] == cur[a + area.x0..a + area.x1],
            "row {r} of {area:?}"
        );
    }
    sent.len()
}

#[test]
fn damaged_pixels_arrive_for_any_area_odd_strides_and_edges_included() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..300 {
        // 4 bytes a pixel; strides with padding, odd ones too; areas touching each edge.
        let width_px = 1 + rng.below(70);
        let stride = width_px * 4 + [0, 1, 3, 64, 13][rng.below(5)];
        let height = 1 + rng.below(40);
        let offset = rng.below(3) * 100;
        let size = offset + stride * height + rng.below(50);
        let mut shadow: Vec<u8> = (0..size).map(|_| rng.next() as u8 & 3).collect();
        let mut far = shadow.clone();
        let mut cur = shadow.clone();
        // The client draws: a few rects of changes (some outside the damage it reports).
        for _ in 0..1 + rng.below(4) {
            let (x, y) = (rng.below(width_px), rng.below(height));
            let (w, h) = (1 + rng.below(width_px - x), 1 + rng.below(height - y));
            for yy in y..y + h {
                for b in x * 4..(x + w) * 4 {
                    cur[offset + yy * stride + b] = rng.next() as u8;
                }
            }
        }
        // Damage: a rect, or whole rows, or everything.
        let x0 = rng.below(width_px);
        let x1 = x0 + 1 + rng.below(width_px - x0);
        let y0 = rng.below(height);
        let y1 = y0 + 1 + rng.below(height - y0);
        let area = match round % 3 {
            0 => Area {
                start: offset + y0 * stride,
                rows: y1 - y0,
                stride,
                x0: x0 * 4,
                x1: x1 * 4,
            },
            1 => Area {
                start: offset + y0 * stride,
                rows: y1 - y0,
                stride,
                x0: 0,
                x1: stride,
            },
            _ => Area::range(offset, offset + stride * height),
        };
        sync_and_check(&cur, &mut shadow, &mut far, area);
        // Everything: the far copy is the pool's.
        sync_and_check(&cur, &mut shadow, &mut far, Area::range(0, size));
        assert_eq!(far, cur);
    }
}

#[test]
fn a_large_area_is_synced_in_two_halves_with_nothing_lost() {
    // 1080 rows of 1920 pixels, 4 bytes each: above PARALLEL_SYNC.
    let (w, h) = (1920 * 4, 1080);
    let mut rng = Rng(7);
    let mut shadow = vec![0u8; w * h];
    let mut far = shadow.clone();
    let mut cur: Vec<u8> = (0..w * h).map(|i| (i / 4000) as u8).collect();
    for _ in 0..2000 {
        let i = rng.below(w * h);
        cur[i] = rng.next() as u8;
    }
    let whole = Area::range(0, w * h);
    let n = sync_and_check(&cur, &mut shadow, &mut far, whole);
    assert!((2..64).contains(&n), "{n} patches");
    assert_eq!(far, cur);
    // A window's worth of columns on every row, through the row split.
    for (i, b) in cur.iter_mut().enumerate() {
        if (i % w) / 4 >= 700 && (i % w) / 4 < 1500 {
            *b ^= 0x55;
        }
    }
    let cols = Area {
        start: 0,
        rows: h,
        stride: w,
        x0: 700 * 4,
        x1: 1500 * 4,
    };
    sync_and_check(&cur, &mut shadow, &mut far, cols);
    assert_eq!(far, cur);
    assert!(sync_and_check(&cur, &mut shadow, &mut far, whole) == 0);
}

/// A 4-byte-pixel picture of `rows` rows of `w` pixels every `stride` bytes: lines of
/// "text" (distinct rows) with blank rows between.
fn text_rows(rows: usize, stride: usize, w: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut b = vec![0u8; rows * stride];
    for r in 0..rows {
        if r % 10 < 3 {
            continue; // blank rows, as between lines of text
        }
        for x in 0..w {
            if rng.below(5) == 0 {
                b[r * stride + 4 * x] = rng.next() as u8 | 1;
            }
        }
    }
    b
}

#[test]
fn a_scroll_is_found_and_moving_the_shadow_leaves_only_the_new_rows() {
    for (stride, w, x0) in [(256 * 4, 256, 0), (300 * 4 + 3, 200, 40)] {
        let rows = 120;
        let shadow0 = text_rows(rows + 20, stride, 300.min(stride / 4), 11);
        for dy in [20isize, 1, -7] {
            // The client scrolled: row r now holds what row r + dy held; new rows come in.
            let mut cur = shadow0.clone();
            for r in 0..rows {
                let src = r as isize + dy;
                if (0..rows as isize).contains(&src) {
                    let (a, s) = (r * stride, src as usize * stride);
                    cur[a..a + stride].copy_from_slice(&shadow0[s..s + stride]);
                } else {
                    cur[r * stride..(r + 1) * stride].fill(0xee);
                }
            }
            let width = w * 4 - x0;
            let cover = (rows - 1) * stride + width;
            let (c, sh) = (&cur[x0..x0 + cover], &shadow0[x0..x0 + cover]);
            let m = find_scroll(c, sh, stride, width, rows).expect("a scroll");
            assert_eq!((m.dy, m.stride, m.width), (dy, stride, width));
            let mut moved = sh.to_vec();
            apply_move(&mut moved, &m);
            // What still differs is the rows that came in, no more.
            let left = runs(c, &mut moved, stride, width);
            let bytes: usize = left.iter().map(|r| r.1).sum();
            assert!(bytes <= (dy.unsigned_abs() + 1) * stride, "{dy}: {left:?}");
            for r in 0..rows {
                let a = r * stride;
                assert!(
                    moved[a..a + width] == c[a..a + width],
                    "{dy}: row {r}: the diff after the move is exact"
                );
            }
        }
    }
}

#[test]
fn no_scroll_is_claimed_where_there_is_none() {
    let (stride, rows) = (1024, 100);
    let shadow = text_rows(rows, stride, 256, 5);
    // Unchanged, a few rows changed, or everything new: no move.
    assert_eq!(find_scroll(&shadow, &shadow, stride, stride, rows), None);
    let mut cur = shadow.clone();
    cur[50 * stride + 8] ^= 1;
    assert_eq!(find_scroll(&cur, &shadow, stride, stride, rows), None);
    let other = text_rows(rows, stride, 256, 99);
    assert_eq!(find_scroll(&other, &shadow, stride, stride, rows), None);
    // Too few rows, or too narrow.
    assert_eq!(find_scroll(&other, &shadow, stride, stride, 8), None);
    assert_eq!(find_scroll(&other, &shadow, stride, 32, rows), None);
}

#[test]
fn moves_apply_in_place_either_way_and_know_their_extent() {
    // 6 rows of 3 bytes every 4; rows are numbered.
    let rows = |n: usize| -> Vec<u8> {
        (0..n * 4)
            .map(|i| (i / 4) as u8 + 10 * (i % 4 == 3) as u8)
            .collect()
    };
    let mut b = rows(6);
    let up = Move {
        start: 0,
        rows: 4,
        stride: 4,
        width: 3,
        dy: 2,
        dx: 0,
    };
    assert_eq!(up.extent(), Some((0, 5 * 4 + 3)));
    apply_move(&mut b, &up);
    let row = |b: &[u8], r: usize| b[r * 4..r * 4 + 4].to_vec();
    assert_eq!(
        row(&b, 0),
        vec![2, 2, 2, 10],
        "row 2 moved up, the gap byte kept"
    );
    assert_eq!(row(&b, 3), vec![5, 5, 5, 13]);
    assert_eq!(row(&b, 5), vec![5, 5, 5, 15], "outside the band: untouched");
    let mut b = rows(6);
    let down = Move {
        start: 8,
        rows: 4,
        stride: 4,
        width: 4,
        dy: -2,
        dx: 0,
    };
    assert_eq!(down.extent(), Some((0, 24)));
    apply_move(&mut b, &down);
    assert_eq!(
        (row(&b, 2), row(&b, 5)),
        (vec![0, 0, 0, 10], vec![3, 3, 3, 13])
    );
    assert_eq!(row(&b, 1), vec![1, 1, 1, 11]);
    // Before the start, or beyond what fits: no extent.
    assert_eq!(
        Move {
            start: 4,
            rows: 2,
            stride: 4,
            width: 4,
            dy: -2,
            dx: 0,
        }
        .extent(),
        None
    );
    let huge = Move {
        start: 0,
        rows: 2,
        stride: usize::MAX / 2,
        width: 4,
        dy: 3,
        dx: 0,
    };
    assert_eq!(huge.extent(), None);
}

#[test]
fn a_scrolled_buffer_syncs_as_a_move_and_the_new_line() {
    // 1080 rows of 1920 pixels of text, scrolled by 20 rows: one move and about one line.
    let (w, h) = (1920 * 4, 1080);
    let before = text_rows(h + 20, w, 1920, 3);
    let mut shadow = before[..w * h].to_vec();
    let mut far = shadow.clone();
    let cur = before[20 * w..].to_vec();
    let file = pool(&cur);
    let area = Area {
        start: 0,
        rows: h,
        stride: w,
        x0: 0,
        x1: w,
    };
    let sent = synced(&file, &mut shadow, area);
    let Some((_, m)) = Move::of_frame(&sent[0]) else {
        panic!("{:?}", sent[0])
    };
    assert_eq!((m.dy, m.dx), (20, 0));
    apply_all(&sent, &mut far);
    assert!(far == cur && shadow == cur);
    let raw: u32 = sent[1..]
        .iter()
        .map(|f| match f {
            Frame::ShmPatch { raw_len, .. } => *raw_len,
            _ => unreachable!(),
        })
        .sum();
    assert!((raw as usize) < 21 * w + 4096, "{raw} bytes of patches");
}

/// The frames as a far copy applies them (moves included).
fn apply_all(sent: &[Frame], far: &mut [u8]) {
    for f in sent {
        match Move::of_frame(f) {
            Some((_, m)) => assert!(apply_move(far, &m), "{m:?}"),
            None => apply(std::slice::from_ref(f), far),
        }
    }
}

#[test]
fn kept_fingerprints_find_the_next_scroll_and_stale_ones_never_make_a_copy_wrong() {
    // A terminal scrolling a line a frame, synced frame after frame with the fingerprints
    // kept: every frame after the first is a move and about one line.
    let (w, h, line) = (960 * 4, 540, 20);
    let text = text_rows(h + 8 * line, w, 960, 7);
    let frame = |n: usize| text[n * line * w..(n * line + h) * w].to_vec();
    let area = Area {
        start: 0,
        rows: h,
        stride: w,
        x0: 0,
        x1: w,
    };
    let mut shadow = Shadow::new(w * h);
    let mut far = vec![0u8; w * h];
    for n in 0..4 {
        let cur = frame(n);
        let sent = synced_with(&pool(&cur), &mut shadow, area);
        apply_all(&sent, &mut far);
        assert!(far == cur && shadow.bytes() == cur, "frame {n}");
        if n > 0 {
            assert!(
                matches!(sent[0], Frame::ShmMove { dy: 20, .. }),
                "{n}: {:?}",
                sent[0]
            );
        }
    }
    // The shadow changes behind the fingerprints' back: they now lie, and the copies still
    // come out exact.
    shadow.bytes[..w * 100].fill(0x5a);
    far[..w * 100].fill(0x5a);
    for n in [5, 4, 7] {
        let cur = frame(n);
        let sent = synced_with(&pool(&cur), &mut shadow, area);
        apply_all(&sent, &mut far);
        assert!(
            far == cur && shadow.bytes() == cur,
            "frame {n} after the lie"
        );
    }
    // Folding in what the compositor filled forgets them.
    assert!(!shadow.prints.areas.is_empty());
    shadow.fold(w * 3, &[1, 2, 3]);
    assert!(shadow.prints.areas.is_empty());
}

/// A patch of `bytes` at 0 (none: an empty patch) through `packer`, unpacked and applied.
fn round_trip(packer: &Packer, bytes: &[u8]) -> (Packing, Vec<u8>) {
    let mut p = Patch::new(1, 0);
    p.push(0, bytes);
    let f = p.take(packer);
    let Frame::ShmPatch { packing, .. } = f else {
        unreachable!()
    };
    let mut far = vec![0xa5u8; bytes.len()];
    apply(&[f], &mut far);
    (packing, far)
}

#[test]
fn every_codec_carries_empty_compressible_and_incompressible_patches_exactly() {
    let mut rng = Rng(0x51ed_2701);
    let noise: Vec<u8> = (0..300_000).map(|_| rng.next() as u8).collect();
    let text = text_rows(200, 1024, 256, 7);
    for codec in [Packing::Raw, Packing::Lz4, Packing::Zstd] {
        let packer = Packer::forced(codec);
        for bytes in [
            &[][..],
            &[9u8][..],
            &noise[..],
            &text[..],
            &[0u8; 70_000][..],
        ] {
            let (packing, far) = round_trip(&packer, bytes);
            assert_eq!(packing, codec);
            assert!(far == bytes, "{codec:?}, {} bytes", bytes.len());
        }
    }
    // By the figures: incompressible patches go raw, whatever the link.
    for rate in [0, 2_500_000, 12_500_000_000] {
        let packer = Packer::default();
        packer.set_link_rate(rate);
        for _ in 0..3 {
            let (packing, far) = round_trip(&packer, &noise);
            assert_eq!(packing, Packing::Raw);
            assert!(far == noise);
        }
        let (_, far) = round_trip(&packer, &text);
        assert!(far == text);
    }
}

#[test]
fn corrupt_or_mislabelled_zstd_is_refused() {
    let mut buf = Vec::new();
    assert!(unpack(Packing::Zstd, 100, &[0xff, 1, 2], &mut buf).is_err());
    assert!(unpack(Packing::Zstd, 100, &[], &mut buf).is_err());
    let fifty = zstd::bulk::compress(&[7u8; 50], 1).unwrap();
    // Shorter or longer than it says.
    assert!(unpack(Packing::Zstd, 100, &fifty, &mut buf).is_err());
    assert!(unpack(Packing::Zstd, 49, &fifty, &mut buf).is_err());
    assert_eq!(
        unpack(Packing::Zstd, 50, &fifty, &mut buf).unwrap(),
        [7; 50]
    );
    // LZ4 bytes labelled zstd, and the other way round.
    let lz = lz4_flex::block::compress(&[7u8; 50]);
    assert!(unpack(Packing::Zstd, 50, &lz, &mut buf).is_err());
    assert!(unpack(Packing::Lz4, 50, &fifty, &mut buf).is_err());
}

#[test]
fn the_codec_follows_the_link_and_the_measured_figures() {
    use pack::{choose, Est};
    let now = std::time::Instant::now();
    let fresh = |ns, ratio| Est {
        ns,
        ratio,
        at: 100,
        when: Some(now),
    };
    // Pixels that compress well: LZ4 on loopback and at 1 Gbit/s, zstd on slow links.
    let (lz4, zstd) = (fresh(0.5, 0.05), fresh(1.5, 0.02));
    assert_eq!(choose(0.1, &lz4, &zstd, 101, now).0, Packing::Lz4);
    assert_eq!(choose(8.0, &lz4, &zstd, 101, now).0, Packing::Lz4);
    assert_eq!(choose(80.0, &lz4, &zstd, 101, now).0, Packing::Zstd);
    assert_eq!(choose(400.0, &lz4, &zstd, 101, now).0, Packing::Zstd);
    // Pixels that do not compress: raw on a fast link; nothing stale is tried.
    let (lz4, zstd) = (fresh(0.3, 1.0), fresh(1.5, 1.0));
    assert_eq!(choose(0.1, &lz4, &zstd, 101, now), (Packing::Raw, None));
    // Stale figures are tried again, but only a codec that could win.
    let later = now + std::time::Duration::from_secs(1);
    assert_eq!(
        choose(0.1, &lz4, &zstd, 1000, later),
        (Packing::Raw, Some(Packing::Lz4))
    );
    assert_eq!(
        choose(400.0, &lz4, &zstd, 1000, later).1,
        Some(Packing::Lz4)
    );
}

#[test]
fn the_link_meter_reports_when_the_rate_moves() {
    let mut m = LinkMeter::default();
    assert_eq!(m.report(), None);
    // 1 MB in 80 ms: 12.5 MB/s.
    m.sample(1_000_000, std::time::Duration::from_millis(80));
    let r = m.report().unwrap();
    assert!((12_000_000..13_000_000).contains(&r), "{r}");
    m.sample(1_000_000, std::time::Duration::from_millis(82));
    assert_eq!(m.report(), None, "a small move is not reported");
    for _ in 0..20 {
        m.sample(1_000_000, std::time::Duration::from_micros(200));
    }
    assert!(m.report().unwrap() > 1_000_000_000);
}

/// A UI-like 4-byte-pixel picture of `w`×`h` (stride `w·4`): a diagonal gradient, and a
/// `ww`×`wh` "window" of pseudo-random detail with its top left corner at (`x`, `y`).
fn ui(w: usize, h: usize, (x, y): (usize, usize), (ww, wh): (usize, usize)) -> Vec<u8> {
    let mut b = vec![0u8; w * h * 4];
    for r in 0..h {
        for c in 0..w {
            let v = ((r + 2 * c) as u32).to_le_bytes();
            b[(r * w + c) * 4..(r * w + c + 1) * 4].copy_from_slice(&[v[0], v[1], 0x30, 0]);
        }
    }
    let mut rng = Rng(0x5eed);
    let detail: Vec<u32> = (0..ww * wh)
        .map(|_| rng.next() as u32 | 0x0100_0000)
        .collect();
    for r in 0..wh {
        for c in 0..ww {
            let o = ((y + r) * w + x + c) * 4;
            b[o..o + 4].copy_from_slice(&detail[r * ww + c].to_le_bytes());
        }
    }
    b
}

#[test]
fn a_moved_window_syncs_as_a_move_and_the_uncovered_strips() {
    let (w, h, ww, wh) = (640, 400, 200, 120);
    for ((x, y), (nx, ny)) in [
        ((100, 80), (116, 88)),
        ((300, 200), (290, 185)),
        ((50, 60), (50, 90)),
        ((400, 100), (380, 100)),
    ] {
        let before = ui(w, h, (x, y), (ww, wh));
        let after = ui(w, h, (nx, ny), (ww, wh));
        // The damage: the bounding box of the old and the new place.
        let (x0, y0) = (x.min(nx), y.min(ny));
        let (x1, y1) = (x.max(nx) + ww, y.max(ny) + wh);
        let area = Area {
            start: y0 * w * 4,
            rows: y1 - y0,
            stride: w * 4,
            x0: x0 * 4,
            x1: x1 * 4,
        };
        let mut shadow = before.clone();
        let mut far = before.clone();
        let sent = synced(&pool(&after), &mut shadow, area);
        apply_all(&sent, &mut far);
        assert!(far == after && shadow == after, "{x},{y} → {nx},{ny}");
        let Frame::ShmMove {
            dy,
            dx,
            rows,
            width,
            ..
        } = sent[0]
        else {
            panic!("{x},{y} → {nx},{ny}: no move but {:?}", sent[0])
        };
        assert_eq!(
            (dy as isize, dx as isize / 4),
            (y as isize - ny as isize, x as isize - nx as isize),
            "{x},{y} → {nx},{ny}"
        );
        assert!(
            rows as usize >= wh * 3 / 4 && width as usize >= ww * 3,
            "{rows}×{width}"
        );
        // What crosses besides the move: the strips the window uncovered, about.
        let raw: usize = sent[1..]
            .iter()
            .map(|f| match f {
                Frame::ShmPatch { raw_len, .. } => *raw_len as usize,
                _ => 0,
            })
            .sum();
        let strips = (nx.abs_diff(x) * wh + ny.abs_diff(y) * ww) * 4;
        assert!(
            raw < strips * 2 + 8192,
            "{x},{y} → {nx},{ny}: {raw} bytes, strips {strips}"
        );
    }
}

#[test]
fn no_shift_is_claimed_in_noise_or_where_nothing_moved() {
    let (w, h) = (640, 200);
    let mut rng = Rng(77);
    let noise = |rng: &mut Rng| -> Vec<u8> { (0..w * h * 4).map(|_| rng.next() as u8).collect() };
    let (a, b) = (noise(&mut rng), noise(&mut rng));
    assert_eq!(find_shift(&a, &b, w * 4, w * 4, h, None), None);
    let still = ui(w, h, (100, 50), (200, 100));
    assert_eq!(
        find_shift(&still, &still, w * 4, w * 4, h, Some((3, 8))),
        None
    );
    // Too large an area is not searched at all.
    let big = vec![1u8; moves::SHIFT_MAX_AREA + 4096];
    assert_eq!(
        find_shift(&big, &big, 4096, 4096, big.len() / 4096, None),
        None
    );
}

#[test]
fn a_window_dragged_frame_after_frame_moves_each_time_even_when_it_turns() {
    let (w, h, ww, wh) = (640, 400, 200, 120);
    // Right and down, then back left (the shift remembered from the frames before is wrong).
    let path = [
        (100, 80),
        (116, 88),
        (132, 96),
        (148, 104),
        (132, 112),
        (116, 120),
    ];
    let mut shadow = Shadow::new(w * h * 4);
    let mut far = vec![0u8; w * h * 4];
    let first = ui(w, h, path[0], (ww, wh));
    shadow.fold(0, &first);
    far.copy_from_slice(&first);
    for pair in path.windows(2) {
        let ((x, y), (nx, ny)) = (pair[0], pair[1]);
        let after = ui(w, h, (nx, ny), (ww, wh));
        let (x0, y0) = (x.min(nx), y.min(ny));
        let area = Area {
            start: y0 * w * 4,
            rows: y.max(ny) + wh - y0,
            stride: w * 4,
            x0: x0 * 4,
            x1: (x.max(nx) + ww) * 4,
        };
        let sent = synced_with(&pool(&after), &mut shadow, area);
        apply_all(&sent, &mut far);
        assert!(
            far == after && shadow.bytes() == after,
            "{x},{y} → {nx},{ny}"
        );
        let Frame::ShmMove { dy, dx, .. } = sent[0] else {
            panic!("{x},{y} → {nx},{ny}: no move but {:?}", sent[0])
        };
        assert_eq!(
            (dy as isize, dx as isize / 4),
            (y as isize - ny as isize, x as isize - nx as isize)
        );
    }
}

#[test]
fn a_pool_the_client_shrank_under_a_sync_ends_it_with_the_pools_name() {
    let (w, h) = (1024 * 4, 200);
    let file = pool(&text_rows(h, w, 1024, 9));
    let view = View::map(file.as_fd(), (w * h) as u64).expect("mapped");
    file.set_len((w * h / 2) as u64).unwrap();
    let mut shadow = Shadow::new(w * h);
    let area = Area {
        start: 0,
        rows: h,
        stride: w,
        x0: 0,
        x1: w,
    };
    let e = sync(
        Pool::Mapped(&view),
        &mut shadow,
        area,
        &|_| Ok(()),
        7,
        &Packer::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("shrank pool 7"), "{e}");
}

#[test]
fn a_client_that_writes_its_pool_during_a_sync_never_leaves_the_far_copy_unlike_the_shadow() {
    // A mapped pool a thread keeps rewriting while it is synced: whatever each sync saw, what
    // crossed must be what the shadow now says (or a later sync of unchanged bytes would
    // leave the far copy wrong for good).
    let len = 1 << 20;
    let file = pool(&vec![0u8; len]);
    let view = View::map(file.as_fd(), len as u64).expect("mapped");
    let area = Area {
        start: 0,
        rows: 256,
        stride: 4096,
        x0: 0,
        x1: 4096,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let writes = std::sync::atomic::AtomicU64::new(0);
    let mut shadow = Shadow::new(len);
    let mut far = vec![0u8; len];
    /// Stops the writer however the test ends (a failed assertion included).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        let _stop = Stop(&stop);
        s.spawn(|| {
            let mut n = 0u8;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                let _ = file.write_at(&vec![n; 64 * 1024], u64::from(n % 16) * 64 * 1024);
                writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let count = || writes.load(std::sync::atomic::Ordering::Relaxed);
        while count() == 0 {
            std::thread::yield_now();
        }
        let before = count();
        for round in 0..200 {
            let sent = frames_of(Pool::Mapped(&view), &mut shadow, area, &Packer::default());
            apply_all(&sent, &mut far);
            assert!(
                far == shadow.bytes(),
                "round {round}: the far copy left the shadow"
            );
        }
        // The writer really wrote while the syncs ran.
        assert!(count() > before, "no write during the syncs");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
