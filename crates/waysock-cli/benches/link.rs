//! Wayland across links people use, measured in one run: every peer (a direct Unix socket,
//! waypipe 0.11.x with LZ4 and with zstd, `waysock bridge`) on every link profile (unlimited
//! loopback, 1 Gbit/s with 1 ms RTT, 100 Mbit/s with 10 ms, 20 Mbit/s with 40 ms) with every
//! content (a terminal scrolling a line per frame, a UI with a moving window, video that does
//! not compress).
//!
//! **The link.** This kernel has no `netem`, so the links are shaped in user space by a relay
//! in this process: a TCP proxy that, per direction, lets bytes onto the link through a token
//! bucket (the profile's rate; at most 1 ms of link time per chunk, and it stops reading while
//! more than max(RTT, 2 ms) of link time is queued, so the sender feels the bottleneck) and
//! delivers them after half the RTT (a delay line; a lone chunk, such as a roundtrip's
//! request or reply, leaves on time: the last 250 µs, as long as sleeps have lately woken
//! late and 1 % of the wait are spun, not slept; a backlog
//! is paced by sleeps). Every peer's TCP hop goes through the same
//! relay: `waysock bridge`'s connection directly, waypipe's through a socat pair (`nodelay` on
//! both TCP ends, as waypipe over ssh runs with `TCP_NODELAY`): waypipe client and server each
//! on a Unix socket, socat between each socket and TCP, the relay between the socats. The
//! relay counts the bytes it carries (both directions): that is "bytes on the link". Its
//! threads' CPU time is not counted as a peer's; its own ceiling (bulk throughput and a
//! one-byte ping-pong, unshaped relay against direct loopback TCP, and what each shaped
//! profile delivers) is measured first and printed with the tables.
//!
//! **The content.** One 1920×1080 XRGB8888 buffer, one frame in flight (the client waits for
//! the frame callback before it draws the next, as a real client does):
//! - text: a terminal of 10×20 cells, bitmap glyphs in a few colours on a dark background;
//!   every frame scrolls one line (the client moves its rows up and draws the new line) and
//!   damages the whole surface, as a terminal does;
//! - UI: gradients, panels, cards and labels under a 560×352 window that moves 16 px right and
//!   8 px down every frame (bouncing at the edges); the damage is the bounding box of its old
//!   and new place, 10 % of the surface;
//! - video: every pixel of every frame pseudo-random (does not compress), 100 % damage.
//!
//! **The compositor** is a thread of this process (the kit's, `wayland-server`). On every
//! commit it compares every damaged pixel with what the client drew for that commit (told
//! through memory shared in this process, not through the transport) and counts the pixels
//! checked and the stale or wrong ones; any stale or wrong pixel fails the run. It then
//! releases the buffer and fires the frame callbacks at once.
//!
//! **Figures per cell** (content × link × peer): frames/s; commit-to-pixels latency (from the
//! client's `commit` to the compositor having checked that frame's pixels), p50 and p99;
//! bytes on the link per frame (the relay's count); CPU ms per frame, `utime + stime` of this
//! process (client and compositor) and every descendant (bridge ends, waypipe, socat), less
//! the relay's threads; the `wl_display.sync` roundtrip (median, measured idle before the
//! frames); and the **limit**: with one frame in flight, a frame takes at least the link's
//! round trip plus the link time of its bytes at the best compression any peer achieved on
//! that content (the fewest bytes per frame in the run), as ms and as frames/s. Where 1.5×
//! the better waypipe is above that limit, the targets table says so: no transport reaches it.
//!
//! Rounds are interleaved (each round visits every link and peer, the peers in a rotating
//! order) so that noise from a shared machine falls on every peer alike.
//!
//! With `--bench` (`cargo bench -p waysock-cli --bench link`) the full run, whose figures
//! replace the part of `docs/PERFORMANCE.md` between this bench's marker lines. Otherwise
//! (`cargo test --benches`) a short smoke run that still checks every pixel.
//! `LINK_BENCH_ONLY=word,word` limits a run (which then never writes the doc) to the links,
//! peers and contents whose names contain a word (`loopback`, `1gbit`, `100mbit`, `20mbit`;
//! `direct`, `waypipe-lz4`, `waypipe-zstd`, `waysock`; `text`, `ui`, `video`; `ceiling`);
//! a dimension none of the words names is not limited. `WAYPIPE_011` names a waypipe 0.11.x
//! binary built from its own source; without it its rows read "not measured".

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use waysock_testkit::stats::{median, percentile};

use common::wayland::{self, Buffer, Rect, H, W};
use common::{cpu_seconds, human_bytes, in_path, version_of, Procs};

// ---- content -----------------------------------------------------------------------------

mod content {
    use super::{Rect, H, W};

    /// Text cell size: 192 columns, 54 lines.
    const CELL_W: usize = 10;
    const LINE_H: usize = 20;
    const COLS: usize = W / CELL_W;
    /// The UI's moving window and its step per frame (the bounding box of two places is
    /// 576×360: 10.0 % of the surface).
    const WIN_W: usize = 560;
    const WIN_H: usize = 352;
    const STEP_X: usize = 16;
    const STEP_Y: usize = 8;
    const TEXT_BG: u32 = 0x001e_1e2e;
    const PALETTE: [u32; 6] = [
        0x00cd_d6f4,
        0x00a6_e3a1,
        0x0089_b4fa,
        0x00f9_e2af,
        0x00f3_8ba8,
        0x0094_e2d5,
    ];

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum Scene {
        Text,
        Ui,
        Video,
    }

    pub const SCENES: [Scene; 3] = [Scene::Text, Scene::Ui, Scene::Video];

    impl Scene {
        pub fn key(self) -> &'static str {
            match self {
                Scene::Text => "text",
                Scene::Ui => "ui",
                Scene::Video => "video",
            }
        }

        pub fn title(self) -> &'static str {
            match self {
                Scene::Text => "text: a terminal scrolling one line per frame (100 % damage)",
                Scene::Ui => "UI: gradients and a moving window (10 % damage)",
                Scene::Video => "video: content that does not compress (100 % damage)",
            }
        }
    }

    const FULL: Rect = Rect {
        x: 0,
        y: 0,
        w: W,
        h: H,
    };

    /// The smallest rectangle holding `a` and `b`.
    fn bbox(a: Rect, b: Rect) -> Rect {
        let (x, y) = (a.x.min(b.x), a.y.min(b.y));
        let (x1, y1) = ((a.x + a.w).max(b.x + b.w), (a.y + a.h).max(b.y + b.h));
        Rect {
            x,
            y,
            w: x1 - x,
            h: y1 - y,
        }
    }

    fn splitmix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn hash(a: u64, b: u64) -> u64 {
        splitmix(a.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ splitmix(b))
    }

    fn rgb(r: usize, g: usize, b: usize) -> u32 {
        ((r.min(255) << 16) | (g.min(255) << 8) | b.min(255)) as u32
    }

    /// Where the UI's window is in frame `s`: bouncing between the edges.
    fn win_rect(s: u32) -> Rect {
        fn tri(v: usize, m: usize) -> usize {
            let p = v % (2 * m);
            if p <= m {
                p
            } else {
                2 * m - p
            }
        }
        Rect {
            x: tri(s as usize * STEP_X, W - WIN_W),
            y: tri(s as usize * STEP_Y, H - WIN_H),
            w: WIN_W,
            h: WIN_H,
        }
    }

    /// What frame `s` of `scene` damages (the first frame of a scene damages everything).
    pub fn damage(scene: Scene, s: u32) -> Rect {
        match scene {
            Scene::Ui if s > 0 => bbox(win_rect(s - 1), win_rect(s)),
            _ => FULL,
        }
    }

    /// Every pixel of row `y` of frame `s` of video: 32 pseudo-random bits each.
    fn video_row(s: u32, y: usize, out: &mut [u32]) {
        let mut z = hash(u64::from(s) ^ 0x7669_6465_6f00_0000, y as u64);
        for pair in out.chunks_exact_mut(2) {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut m = z;
            m = (m ^ (m >> 32)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            m ^= m >> 29;
            pair[0] = m as u32;
            pair[1] = (m >> 32) as u32;
        }
    }

    /// The pictures every frame is made of: a bitmap font, the UI's background and window.
    pub struct Content {
        glyphs: Vec<[u16; LINE_H]>,
        bg: Vec<u32>,
        win: Vec<u32>,
    }

    impl Content {
        pub fn new() -> Content {
            // 95 glyphs of 3 to 5 strokes in an 8×12 box of a 10×20 cell; glyph 0 is a space.
            let mut glyphs = vec![[0u16; LINE_H]; 96];
            for (g, glyph) in glyphs.iter_mut().enumerate().skip(1) {
                let h = hash(g as u64, 0x0067_6c79_7068);
                for k in 0..(3 + h % 3) {
                    let v = hash(g as u64, k);
                    if v & 1 == 0 {
                        // vertical stroke at column 1..=8 over rows 4..16
                        let col = 1 + (v >> 8) as usize % 8;
                        let (a, b) = (4 + (v >> 16) as usize % 6, 10 + (v >> 24) as usize % 7);
                        for row in glyph.iter_mut().take(b).skip(a) {
                            *row |= 1 << col;
                        }
                    } else {
                        // horizontal stroke at row 4..16 over columns
                        let row = 4 + (v >> 8) as usize % 12;
                        let (a, b) = (1 + (v >> 16) as usize % 4, 5 + (v >> 24) as usize % 4);
                        for col in a..b {
                            glyph[row] |= 1 << col;
                        }
                    }
                }
            }
            let mut c = Content {
                glyphs,
                bg: vec![0; W * H],
                win: vec![0; WIN_W * WIN_H],
            };
            c.draw_background();
            c.draw_window();
            c
        }

        #[allow(clippy::too_many_arguments)]
        /// Draws `n` glyphs chosen by `seed` at (`x`, `y`) in `fg` into an image `width` wide.
        fn label(
            &self,
            img: &mut [u32],
            width: usize,
            x: usize,
            y: usize,
            seed: u64,
            n: usize,
            fg: u32,
        ) {
            for i in 0..n {
                let c = hash(seed, i as u64);
                let g = if c % 6 == 0 {
                    0
                } else {
                    1 + (c >> 8) as usize % 95
                };
                for (r, bits) in self.glyphs[g].iter().enumerate() {
                    for b in 0..CELL_W {
                        if bits >> b & 1 == 1 {
                            let (px, py) = (x + i * CELL_W + b, y + r);
                            if px < width && py * width + px < img.len() {
                                img[py * width + px] = fg;
                            }
                        }
                    }
                }
            }
        }

        fn fill(
            img: &mut [u32],
            width: usize,
            r: (usize, usize, usize, usize),
            f: impl Fn(usize, usize) -> u32,
        ) {
            let (x0, y0, w, h) = r;
            for y in y0..y0 + h {
                for x in x0..x0 + w {
                    img[y * width + x] = f(x - x0, y - y0);
                }
            }
        }

        /// A desktop application: a header bar, a sidebar with items, cards on a gradient.
        fn draw_background(&mut self) {
            let mut bg = std::mem::take(&mut self.bg);
            Self::fill(&mut bg, W, (0, 0, W, H), |x, y| {
                if y < 48 {
                    rgb(58 - y * 16 / 48, 63 - y * 16 / 48, 88 - y * 19 / 48)
                } else if x < 280 {
                    if (200..236).contains(&y) {
                        rgb(54, 58, 90)
                    } else {
                        rgb(36, 39, 58 + (y - 48) * 12 / H)
                    }
                } else {
                    rgb(
                        30 + x * 40 / W,
                        32 + y * 48 / H,
                        60 + (x + y) * 50 / (W + H),
                    )
                }
            });
            self.label(&mut bg, W, 16, 14, 1, 24, 0x00e0_e0f0);
            for i in 0..8 {
                self.label(
                    &mut bg,
                    W,
                    W - 600 + i * 72,
                    14,
                    100 + i as u64,
                    6,
                    0x00c0_c4d8,
                );
            }
            for i in 0..24 {
                self.label(
                    &mut bg,
                    W,
                    24,
                    64 + i * 36 + 8,
                    200 + i as u64,
                    20,
                    0x00b0_b4c8,
                );
            }
            for cy in 0..4 {
                for cx in 0..3 {
                    let (x0, y0) = (320 + cx * 530, 80 + cy * 245);
                    Self::fill(&mut bg, W, (x0, y0, 480, 210), |x, y| {
                        if x == 0 || y == 0 || x == 479 || y == 209 {
                            rgb(80, 84, 110)
                        } else {
                            rgb(46, 48, 70 + y / 12)
                        }
                    });
                    for l in 0..6 {
                        let seed = 1000 + (cy * 3 + cx) as u64 * 10 + l;
                        let fg = if l == 0 { 0x00f0_f0ff } else { 0x00a8_acc0 };
                        let n = if l == 0 {
                            18
                        } else {
                            30 + (l as usize * 7) % 14
                        };
                        self.label(&mut bg, W, x0 + 16, y0 + 14 + l as usize * 30, seed, n, fg);
                    }
                }
            }
            self.bg = bg;
        }

        /// A dialog: border, title bar gradient, text on a light body, a progress bar.
        fn draw_window(&mut self) {
            let mut win = std::mem::take(&mut self.win);
            Self::fill(&mut win, WIN_W, (0, 0, WIN_W, WIN_H), |x, y| {
                if x == 0 || y == 0 || x == WIN_W - 1 || y == WIN_H - 1 {
                    rgb(90, 96, 130)
                } else if y < 32 {
                    rgb(70 - y * 20 / 32, 75 - y * 20 / 32, 110 - y * 25 / 32)
                } else if (300..316).contains(&y) && (20..WIN_W - 20).contains(&x) {
                    rgb(
                        40 + x * 60 / WIN_W,
                        90 + x * 80 / WIN_W,
                        200 + x * 40 / WIN_W,
                    )
                } else {
                    rgb(240, 240, 244)
                }
            });
            self.label(&mut win, WIN_W, 12, 6, 5000, 22, 0x00f0_f0ff);
            for l in 0..11 {
                self.label(
                    &mut win,
                    WIN_W,
                    16,
                    44 + l * 22,
                    5001 + l as u64,
                    50,
                    0x0028_2832,
                );
            }
            self.win = win;
        }

        /// Text line `line`'s cell `col`: glyph and colour.
        fn cell(line: u64, col: usize) -> (usize, u32) {
            let h = hash(line, 0xffff);
            let len = if h % 7 == 0 {
                0
            } else {
                12 + (h >> 8) as usize % 170
            };
            if col >= len {
                return (0, TEXT_BG);
            }
            let c = hash(line, col as u64);
            if c % 6 == 0 {
                return (0, TEXT_BG);
            }
            let fg = PALETTE[(hash(line, 1000 + col as u64 / 8) % 6) as usize];
            (1 + (c >> 8) as usize % 95, fg)
        }

        /// Row `y` of frame `s` of `scene`, all `W` pixels.
        pub fn row(&self, scene: Scene, s: u32, y: usize, out: &mut [u32]) {
            match scene {
                Scene::Text => {
                    let (line, gr) = (u64::from(s) + (y / LINE_H) as u64, y % LINE_H);
                    for col in 0..COLS {
                        let (g, fg) = Self::cell(line, col);
                        let bits = self.glyphs[g][gr];
                        for (i, p) in out[col * CELL_W..(col + 1) * CELL_W].iter_mut().enumerate() {
                            *p = if bits >> i & 1 == 1 { fg } else { TEXT_BG };
                        }
                    }
                }
                Scene::Ui => {
                    out.copy_from_slice(&self.bg[y * W..(y + 1) * W]);
                    let r = win_rect(s);
                    if (r.y..r.y + r.h).contains(&y) {
                        out[r.x..r.x + r.w]
                            .copy_from_slice(&self.win[(y - r.y) * WIN_W..][..WIN_W]);
                    }
                }
                Scene::Video => video_row(s, y, out),
            }
        }

        /// Draws frame `s` of `scene` into `buf` (`W`×`H`, holding frame `s - 1` of the same
        /// scene when `s > 0`) the way such a client would, and returns the damage.
        pub fn draw(&self, scene: Scene, s: u32, buf: &mut [u32]) -> Rect {
            match scene {
                Scene::Text if s > 0 => {
                    // Scroll: move the rows up one line, draw the new last line.
                    buf.copy_within(LINE_H * W.., 0);
                    for y in H - LINE_H..H {
                        self.row(scene, s, y, &mut buf[y * W..(y + 1) * W]);
                    }
                }
                Scene::Ui if s > 0 => {
                    let old = win_rect(s - 1);
                    for y in old.y..old.y + old.h {
                        let i = y * W + old.x;
                        buf[i..i + old.w].copy_from_slice(&self.bg[i..i + old.w]);
                    }
                    let new = win_rect(s);
                    for y in 0..WIN_H {
                        let i = (new.y + y) * W + new.x;
                        buf[i..i + WIN_W].copy_from_slice(&self.win[y * WIN_W..][..WIN_W]);
                    }
                }
                _ => {
                    for (y, row) in buf.chunks_exact_mut(W).enumerate().take(H) {
                        self.row(scene, s, y, row);
                    }
                }
            }
            damage(scene, s)
        }
    }
}

use content::{Content, Scene, SCENES};

// ---- the compositor ----------------------------------------------------------------------

/// What the client drew for one commit, and when the compositor had checked it.
struct FrameInfo {
    scene: Scene,
    s: u32,
    commit_at: Instant,
    done_at: Option<Instant>,
}

/// Shared by the client and the compositor (both in this process).
struct Shared {
    content: Content,
    /// Bumped by each new client; surfaces of older clients are not checked.
    generation: AtomicU64,
    /// By the surface's commit number.
    frames: Mutex<HashMap<u32, FrameInfo>>,
    pixels_checked: AtomicU64,
    bad_pixels: AtomicU64,
    /// Commits with a buffer the client had not announced (counted as wrong).
    unknown_commits: AtomicU64,
    first_bad: Mutex<Option<String>>,
}

/// The compositor's check: every damaged pixel of a current client's commit against what the
/// client drew for it.
struct PixelCheck {
    shared: Arc<Shared>,
    scratch: Vec<u32>,
}

impl wayland::Check for PixelCheck {
    /// The generation the surface was made in.
    type Surface = u64;

    fn new_surface(&mut self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    fn commit(&mut self, generation: &u64, commit: u32, b: &Buffer, damage: &[Rect]) {
        if *generation != self.shared.generation.load(Ordering::SeqCst) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let mut frames = shared.frames.lock().unwrap();
        match frames.get_mut(&commit) {
            Some(info) => {
                for r in damage {
                    self.check(b, info.scene, info.s, *r);
                }
                info.done_at = Some(Instant::now());
            }
            None => {
                shared.unknown_commits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl PixelCheck {
    /// Compares the pixels of `r` in the buffer with frame `s` of `scene`.
    fn check(&mut self, b: &Buffer, scene: Scene, s: u32, r: Rect) {
        let shared = &self.shared;
        let scratch = &mut self.scratch;
        let r = Rect {
            w: r.w.min(b.width.saturating_sub(r.x)),
            h: r.h.min(b.height.saturating_sub(r.y)),
            ..r
        };
        let bad = b.with_words(|mem| {
            scratch.resize(W, 0);
            let mut bad = 0u64;
            for y in r.y..r.y + r.h {
                shared.content.row(scene, s, y, scratch);
                let want = &scratch[r.x..r.x + r.w];
                let Some(got) = b.row(mem, y, r.x, r.w) else {
                    bad += r.w as u64;
                    continue;
                };
                if got != want {
                    let n = got.iter().zip(want).filter(|(a, b)| a != b).count();
                    bad += n as u64;
                    let mut first = shared.first_bad.lock().unwrap();
                    if first.is_none() {
                        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                        *first = Some(format!(
                            "{scene:?} frame {s}, row {y}, x {}: got {:08x}, want {:08x} \
                             ({n} pixels of the row)",
                            r.x + at,
                            got[at],
                            want[at]
                        ));
                    }
                }
            }
            bad
        });
        let Some(bad) = bad else { return };
        shared
            .pixels_checked
            .fetch_add((r.w * r.h) as u64, Ordering::Relaxed);
        shared.bad_pixels.fetch_add(bad, Ordering::Relaxed);
    }
}

// ---- the client --------------------------------------------------------------------------

/// The client, drawing frames of the scenes and telling the compositor what it drew.
struct Client {
    wl: wayland::Client,
    shared: Arc<Shared>,
    /// Commits so far (the compositor numbers them alike).
    commits: u32,
}

impl Client {
    /// Connects as a new client: the surfaces of earlier ones are no longer checked.
    fn connect(path: &Path, shared: Arc<Shared>) -> io::Result<Client> {
        shared.generation.fetch_add(1, Ordering::SeqCst);
        shared
            .frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        Ok(Client {
            wl: wayland::Client::connect(path)?,
            shared,
            commits: 0,
        })
    }

    /// Draws frame `s` of `scene`, damages what changed, commits, and waits for the frame
    /// callback.
    fn draw(&mut self, scene: Scene, s: u32) -> io::Result<()> {
        let r = self.shared.content.draw(scene, s, self.wl.pixels());
        let (shared, commit) = (&self.shared, self.commits);
        self.wl.present(r, || {
            shared
                .frames
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(
                    commit,
                    FrameInfo {
                        scene,
                        s,
                        commit_at: Instant::now(),
                        done_at: None,
                    },
                );
        })?;
        self.commits += 1;
        Ok(())
    }
}

// ---- the shaping relay -------------------------------------------------------------------

/// A link: its rate (bytes/s; `None`: as fast as loopback) and round-trip time.
struct Profile {
    key: &'static str,
    title: &'static str,
    rate: Option<f64>,
    rtt: Duration,
}

const PROFILES: [Profile; 4] = [
    Profile {
        key: "loopback",
        title: "loopback, unlimited",
        rate: None,
        rtt: Duration::ZERO,
    },
    Profile {
        key: "1gbit",
        title: "1 Gbit/s, 1 ms RTT",
        rate: Some(125e6),
        rtt: Duration::from_millis(1),
    },
    Profile {
        key: "100mbit",
        title: "100 Mbit/s, 10 ms RTT",
        rate: Some(12.5e6),
        rtt: Duration::from_millis(10),
    },
    Profile {
        key: "20mbit",
        title: "20 Mbit/s, 40 ms RTT",
        rate: Some(2.5e6),
        rtt: Duration::from_millis(40),
    },
];

/// CPU seconds (user + system) a thread of this process has used, from
/// `/proc/self/task/TID/stat`.
fn thread_cpu_seconds(tid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .ok()
        .and_then(|s| waysock_testkit::proc::stat_fields(&s))
        .map_or(0.0, |(_, ticks)| {
            ticks as f64 / rustix::param::clock_ticks_per_second() as f64
        })
}

/// Registers the calling relay thread (for its CPU time) and gives it a timer slack of 1 ns, so
/// the delay line's sleeps end when they should rather than up to 50 µs later.
fn relay_thread(tids: &Mutex<Vec<u32>>) {
    let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
    tids.lock().unwrap().push(tid);
    let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
}

/// How long before a lone chunk is due the delay line stops sleeping and spins, beyond how
/// late its sleeps have woken lately (this VM wakes a sleeping thread tens to hundreds of µs
/// late).
const LONE_SPIN: Duration = Duration::from_micros(250);

/// A relay between a loopback port and `upstream`, shaping both directions to a profile.
struct Relay {
    port: u16,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Every socket the relay holds, to shut down when it stops.
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    tids: Arc<Mutex<Vec<u32>>>,
}

struct Link {
    rate: Option<f64>,
    delay: Duration,
}

impl Relay {
    fn start(profile: &Profile, upstream: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let relay = Relay {
            port: listener.local_addr()?.port(),
            bytes: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            sockets: Arc::new(Mutex::new(Vec::new())),
            threads: Arc::new(Mutex::new(Vec::new())),
            tids: Arc::new(Mutex::new(Vec::new())),
        };
        let link = Arc::new(Link {
            rate: profile.rate,
            delay: profile.rtt / 2,
        });
        let (stop, sockets, threads, tids, bytes) = (
            Arc::clone(&relay.stop),
            Arc::clone(&relay.sockets),
            Arc::clone(&relay.threads),
            Arc::clone(&relay.tids),
            Arc::clone(&relay.bytes),
        );
        let accept = std::thread::spawn(move || {
            relay_thread(&tids);
            while !stop.load(Ordering::Relaxed) {
                let (a, _) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    Err(_) => break,
                };
                let Ok(b) = TcpStream::connect(upstream) else {
                    continue;
                };
                let _ = a.set_nonblocking(false);
                for s in [&a, &b] {
                    let _ = s.set_nodelay(true);
                }
                let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
                    continue;
                };
                {
                    let mut socks = sockets.lock().unwrap();
                    for s in [&a, &b] {
                        if let Ok(c) = s.try_clone() {
                            socks.push(c);
                        }
                    }
                }
                let mut th = threads.lock().unwrap();
                for (src, dst) in [(a, b2), (b, a2)] {
                    let (link, bytes, tids, threads2) = (
                        Arc::clone(&link),
                        Arc::clone(&bytes),
                        Arc::clone(&tids),
                        Arc::clone(&threads),
                    );
                    th.push(std::thread::spawn(move || {
                        pump(src, dst, &link, &bytes, &tids, &threads2)
                    }));
                }
            }
        });
        relay
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(accept);
        Ok(relay)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// CPU seconds the relay's threads have used (those still running).
    fn cpu_seconds(&self) -> f64 {
        self.tids
            .lock()
            .unwrap()
            .iter()
            .map(|&t| thread_cpu_seconds(t))
            .sum()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.sockets.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Threads push their writers into `threads` while running: take until empty.
        loop {
            let batch: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
            if batch.is_empty() {
                break;
            }
            for t in batch {
                let _ = t.join();
            }
        }
    }
}

/// One direction of the relay: `src` to `dst` through the link.
fn pump(
    mut src: TcpStream,
    mut dst: TcpStream,
    link: &Link,
    bytes: &AtomicU64,
    tids: &Arc<Mutex<Vec<u32>>>,
    threads: &Mutex<Vec<JoinHandle<()>>>,
) {
    relay_thread(tids);
    let Some(rate) = link.rate else {
        // Unshaped: read, count, write.
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = src.read(&mut buf) {
            if n == 0 || dst.write_all(&buf[..n]).is_err() {
                break;
            }
            bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = dst.shutdown(Shutdown::Write);
        return;
    };
    // Chunks of at most 1 ms of link time (at least one Ethernet frame).
    let chunk = ((rate * 1e-3) as usize).clamp(1500, 64 * 1024);
    let queue = (link.delay * 2).max(Duration::from_millis(2));
    let (tx, rx) = mpsc::sync_channel::<(Instant, Vec<u8>)>(4096);
    let writer = {
        let tids = Arc::clone(tids);
        std::thread::spawn(move || {
            relay_thread(&tids);
            // How late a sleep of this thread wakes, on average: behind a backlog, the delay
            // line wakes that much early, so that bytes leave on time on average (a loaded
            // VM wakes a sleeping thread tens to hundreds of µs late). A lone chunk (a
            // request, a reply: what a roundtrip waits for) leaves on time to the µs: the
            // thread sleeps until shortly before and spins the rest.
            let mut late = Duration::ZERO;
            let mut lone_late = Duration::ZERO;
            let mut pending = std::collections::VecDeque::new();
            loop {
                if pending.is_empty() {
                    match rx.recv() {
                        Ok(item) => pending.push_back(item),
                        Err(_) => break,
                    }
                }
                pending.extend(rx.try_iter());
                let Some((arrive, data)) = pending.pop_front() else {
                    break;
                };
                let now = Instant::now();
                if pending.is_empty() {
                    // Woken early by the spin margin, plus how late sleeps have woken lately,
                    // plus 1 % of the sleep (a long sleep wakes later).
                    let margin =
                        LONE_SPIN + lone_late + arrive.saturating_duration_since(now) / 100;
                    if arrive > now + margin {
                        let want = arrive - margin;
                        std::thread::sleep(want - now);
                        let woke = Instant::now().saturating_duration_since(want);
                        lone_late = (lone_late * 7 + woke.min(Duration::from_millis(2))) / 8;
                    }
                    while Instant::now() < arrive {
                        std::hint::spin_loop();
                    }
                } else if arrive > now + late {
                    let want = arrive - late;
                    std::thread::sleep(want - now);
                    let woke = Instant::now().saturating_duration_since(want);
                    late = (late * 7 + woke.min(Duration::from_millis(1))) / 8;
                }
                if data.is_empty() || dst.write_all(&data).is_err() {
                    break;
                }
            }
            let _ = dst.shutdown(Shutdown::Write);
        })
    };
    threads.lock().unwrap().push(writer);
    let mut buf = vec![0u8; chunk];
    let mut link_free = Instant::now();
    loop {
        let now = Instant::now();
        if link_free > now + queue {
            std::thread::sleep(link_free - queue - now);
        }
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let start = link_free.max(now);
        link_free = start + Duration::from_secs_f64(n as f64 / rate);
        if tx
            .send((link_free + link.delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    let _ = tx.send((link_free + link.delay, Vec::new()));
}

// ---- peers -------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Direct,
    WaypipeLz4,
    WaypipeZstd,
    Waysock,
}

const PEERS: [Peer; 4] = [
    Peer::Direct,
    Peer::WaypipeLz4,
    Peer::WaypipeZstd,
    Peer::Waysock,
];

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Peer::Direct => "direct",
            Peer::WaypipeLz4 => "waypipe-lz4",
            Peer::WaypipeZstd => "waypipe-zstd",
            Peer::Waysock => "waysock",
        }
    }

    fn is_waypipe(self) -> bool {
        matches!(self, Peer::WaypipeLz4 | Peer::WaypipeZstd)
    }
}

/// The peers on link `pi`: a direct socket only on the unshaped one.
fn peers_on(pi: usize) -> Vec<usize> {
    (0..PEERS.len())
        .filter(|&i| PEERS[i] != Peer::Direct || PROFILES[pi].rate.is_none())
        .collect()
}

/// A running peer: where the client connects, and the relay carrying its TCP hop.
struct Running {
    display: PathBuf,
    relay: Option<Relay>,
    procs: Procs,
}

fn start(
    peer: Peer,
    profile: &Profile,
    waypipe: Option<&Path>,
    dir: &Path,
    compositor: &Path,
    token: &Path,
) -> io::Result<Running> {
    let mut procs = Procs::new();
    let mut relay = None;
    // The link, in front of the port the compositor side listens on.
    let hop = |port: u16| {
        let r = Relay::start(profile, SocketAddr::from(([127, 0, 0, 1], port)))?;
        let port = r.port;
        relay = Some(r);
        Ok(port)
    };
    let display = match peer {
        Peer::Direct => compositor.to_path_buf(),
        Peer::Waysock => procs.bridge(dir, compositor, token, &[], hop)?,
        Peer::WaypipeLz4 | Peer::WaypipeZstd => {
            let wp = waypipe.ok_or_else(|| io::Error::other("no waypipe"))?;
            let (tag, compress) = if peer == Peer::WaypipeLz4 {
                ("wplz4", "lz4")
            } else {
                ("wpzstd", "zstd")
            };
            // nodelay: waypipe over ssh runs with `TCP_NODELAY`.
            procs.waypipe(
                dir,
                compositor,
                wp,
                tag,
                &["--compress", compress],
                true,
                hop,
            )?
        }
    };
    Ok(Running {
        display,
        relay,
        procs,
    })
}

// ---- measurement -------------------------------------------------------------------------

/// Everything measured in one cell (content × link × peer), summed over rounds.
#[derive(Default)]
struct Cell {
    frames: u64,
    secs: f64,
    link_bytes: u64,
    has_link: bool,
    cpu: f64,
    latencies_ms: Vec<f64>,
    pixels_checked: u64,
    bad_pixels: u64,
    error: Option<String>,
}

impl Cell {
    fn measured(&self) -> bool {
        self.error.is_none() && self.frames > 0
    }
    fn fps(&self) -> f64 {
        self.frames as f64 / self.secs
    }
    fn bytes_per_frame(&self) -> Option<f64> {
        (self.has_link && self.frames > 0).then(|| self.link_bytes as f64 / self.frames as f64)
    }
    fn cpu_ms(&self) -> f64 {
        self.cpu * 1e3 / self.frames as f64
    }
}

struct Plan {
    rounds: usize,
    roundtrips: usize,
    roundtrip_cap: Duration,
    warmup: Duration,
    phase: Duration,
    min_frames: u64,
    cap: Duration,
}

struct Results {
    cells: HashMap<(usize, usize, usize), Cell>,
    /// `wl_display.sync` roundtrips (µs) per link × peer, over all rounds.
    syncs: HashMap<(usize, usize), Vec<f64>>,
}

#[allow(clippy::too_many_arguments)]
fn session(
    plan: &Plan,
    pi: usize,
    peer: Peer,
    scenes: &[usize],
    waypipe: Option<&Path>,
    dir: &Path,
    compositor_path: &Path,
    token: &Path,
    shared: &Arc<Shared>,
    results: &mut Results,
) -> io::Result<()> {
    let profile = &PROFILES[pi];
    let peer_i = PEERS.iter().position(|p| *p == peer).unwrap_or(0);
    let mut running = start(peer, profile, waypipe, dir, compositor_path, token)?;
    let mut client = Client::connect(&running.display, Arc::clone(shared))?;
    // Idle roundtrips first.
    let samples = client.wl.roundtrips(plan.roundtrips, plan.roundtrip_cap)?;
    results
        .syncs
        .entry((pi, peer_i))
        .or_default()
        .extend(samples);
    for &si in scenes {
        let scene = SCENES[si];
        let checked0 = shared.pixels_checked.load(Ordering::Relaxed);
        let bad0 = shared.bad_pixels.load(Ordering::Relaxed)
            + shared.unknown_commits.load(Ordering::Relaxed);
        // Warm-up: the scene's first (full) frame, then until the warm-up time is over.
        let mut s = 0u32;
        let w = Instant::now();
        loop {
            client.draw(scene, s)?;
            s += 1;
            if w.elapsed() >= plan.warmup {
                break;
            }
        }
        let commit0 = client.commits;
        let bytes0 = running.relay.as_ref().map(Relay::bytes);
        let relay_cpu0 = running.relay.as_ref().map_or(0.0, Relay::cpu_seconds);
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut frames = 0u64;
        while (start.elapsed() < plan.phase || frames < plan.min_frames)
            && start.elapsed() < plan.cap
        {
            client.draw(scene, s)?;
            s += 1;
            frames += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds()
            - cpu0
            - (running.relay.as_ref().map_or(0.0, Relay::cpu_seconds) - relay_cpu0);
        let bytes1 = running.relay.as_ref().map(Relay::bytes);
        let cell = results.cells.entry((si, pi, peer_i)).or_default();
        {
            let mut map = shared.frames.lock().unwrap_or_else(|e| e.into_inner());
            for c in commit0..client.commits {
                if let Some(FrameInfo {
                    commit_at,
                    done_at: Some(done),
                    ..
                }) = map.get(&c)
                {
                    cell.latencies_ms
                        .push(done.duration_since(*commit_at).as_secs_f64() * 1e3);
                }
            }
            map.clear();
        }
        cell.frames += frames;
        cell.secs += secs;
        cell.cpu += cpu;
        if let (Some(a), Some(b)) = (bytes0, bytes1) {
            cell.link_bytes += b - a;
            cell.has_link = true;
        }
        cell.pixels_checked += shared.pixels_checked.load(Ordering::Relaxed) - checked0;
        cell.bad_pixels += shared.bad_pixels.load(Ordering::Relaxed)
            + shared.unknown_commits.load(Ordering::Relaxed)
            - bad0;
    }
    running.procs.check_alive()?;
    drop(client);
    Ok(())
}

// ---- the relay's ceiling -----------------------------------------------------------------

struct Ceiling {
    title: String,
    nominal: String,
    mb_per_s: Option<f64>,
    pingpong_us: Option<f64>,
    pings: usize,
}

/// Bulk throughput (MB/s, at the receiver) and a one-byte ping-pong (median µs) to a sink and
/// an echo server on loopback, through `profile`'s relay or (`None`) directly.
fn ceiling(profile: Option<&Profile>, secs: f64) -> io::Result<(f64, f64, usize)> {
    let sink = TcpListener::bind("127.0.0.1:0")?;
    let echo = TcpListener::bind("127.0.0.1:0")?;
    let (sink_addr, echo_addr) = (sink.local_addr()?, echo.local_addr()?);
    let sink_thread = std::thread::spawn(move || -> io::Result<(u64, f64)> {
        let (mut s, _) = sink.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut first, mut last) = (0u64, None, Instant::now());
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let now = Instant::now();
            if first.is_none() {
                first = Some(now);
            } else {
                total += n as u64;
            }
            last = now;
        }
        let span = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
        Ok((total, span))
    });
    let echo_thread = std::thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = echo.accept()?;
        s.set_nodelay(true)?;
        let mut b = [0u8; 64];
        loop {
            let n = s.read(&mut b)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&b[..n])?;
        }
    });
    let relays = match profile {
        Some(p) => Some((Relay::start(p, sink_addr)?, Relay::start(p, echo_addr)?)),
        None => None,
    };
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (to_sink, to_echo) = match &relays {
        Some((a, b)) => (local(a.port), local(b.port)),
        None => (sink_addr, echo_addr),
    };
    // Bulk: for `secs`, or a second's worth of the link's rate.
    let cap = profile
        .and_then(|p| p.rate)
        .map_or(u64::MAX, |r| (r * secs) as u64);
    let mut s = TcpStream::connect(to_sink)?;
    let buf = vec![0x5au8; 64 * 1024];
    let (t, mut sent) = (Instant::now(), 0u64);
    while t.elapsed().as_secs_f64() < secs && sent < cap {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    s.shutdown(Shutdown::Write)?;
    let (total, span) = sink_thread
        .join()
        .map_err(|_| io::Error::other("sink panicked"))??;
    drop(s);
    // Ping-pong.
    let mut e = TcpStream::connect(to_echo)?;
    e.set_nodelay(true)?;
    let mut samples = Vec::new();
    let t = Instant::now();
    let mut b = [0u8; 1];
    while samples.len() < 2000 && t.elapsed().as_secs_f64() < secs {
        let s0 = Instant::now();
        e.write_all(&[1])?;
        e.read_exact(&mut b)?;
        samples.push(s0.elapsed().as_secs_f64() * 1e6);
    }
    drop(e);
    echo_thread
        .join()
        .map_err(|_| io::Error::other("echo panicked"))??;
    drop(relays);
    Ok((
        total as f64 / span.max(1e-9) / 1e6,
        median(&samples).unwrap_or(0.0),
        samples.len(),
    ))
}

fn measure_ceiling(secs: f64) -> Vec<Ceiling> {
    let mut out = Vec::new();
    let mut row = |title: String, nominal: String, p: Option<&Profile>| {
        eprintln!("ceiling: {title}…");
        let r = ceiling(p, secs);
        if let Err(e) = &r {
            eprintln!("ceiling: {title}: {e}");
        }
        let r = r.ok();
        out.push(Ceiling {
            title,
            nominal,
            mb_per_s: r.map(|r| r.0),
            pingpong_us: r.map(|r| r.1),
            pings: r.map_or(0, |r| r.2),
        });
    };
    row("direct loopback TCP (no relay)".into(), "—".into(), None);
    for p in &PROFILES {
        let nominal = match p.rate {
            None => "—".into(),
            Some(r) => format!("{:.1} MB/s, RTT {} µs", r / 1e6, p.rtt.as_micros()),
        };
        row(format!("relay: {}", p.title), nominal, Some(p));
    }
    out
}

// ---- report ------------------------------------------------------------------------------

struct Report<'a> {
    results: &'a Results,
    /// Why a peer was not measured at all.
    skip: [Option<String>; 4],
    profiles: Vec<usize>,
    scenes: Vec<usize>,
    /// The relay's own one-byte ping-pong per link (µs), from the ceiling.
    relay_rtt_us: Vec<Option<f64>>,
}

impl Report<'_> {
    fn cell(&self, si: usize, pi: usize, peer: usize) -> Option<&Cell> {
        self.results.cells.get(&(si, pi, peer))
    }

    fn title(&self, peer: usize, waypipe_version: &str) -> String {
        match PEERS[peer] {
            Peer::Direct => "direct Unix socket".into(),
            Peer::WaypipeLz4 => format!("waypipe {waypipe_version} `--compress lz4`"),
            Peer::WaypipeZstd => format!("waypipe {waypipe_version} `--compress zstd`"),
            Peer::Waysock => "waysock bridge".into(),
        }
    }

    /// The fewest bytes on the link per frame any peer needed for scene `si`, over all links.
    fn best_bytes(&self, si: usize) -> Option<f64> {
        self.results
            .cells
            .iter()
            .filter(|((s, _, _), c)| *s == si && c.measured())
            .filter_map(|(_, c)| c.bytes_per_frame())
            .min_by(|a, b| a.total_cmp(b))
    }

    /// The shortest a frame of scene `si` can take on link `pi` with one frame in flight: the
    /// round trip plus the link time of its bytes at the best compression; ms.
    fn limit_ms(&self, si: usize, pi: usize) -> Option<f64> {
        let p = &PROFILES[pi];
        let rate = p.rate?;
        Some(p.rtt.as_secs_f64() * 1e3 + self.best_bytes(si)? / rate * 1e3)
    }

    fn sync_us(&self, pi: usize, peer: usize) -> Option<(f64, usize)> {
        let s = self.results.syncs.get(&(pi, peer))?;
        Some((median(s)?, s.len()))
    }

    fn tables(&self, wv: &str) -> String {
        let mut s = String::new();
        for &si in &self.scenes {
            let scene = SCENES[si];
            let _ = writeln!(s, "### {}\n", scene.title());
            let best = self.best_bytes(si).map_or("n/a".into(), human_bytes);
            let _ = writeln!(
                s,
                "Fewest bytes on the link per frame (any peer, any link): {best}.\n"
            );
            s.push_str(
                "| link | peer | frames/s | commit→pixels p50 / p99 ms | bytes/frame on the link \
                 | CPU ms/frame | `wl_display.sync` µs (median) | limit: RTT + link ms/frame (frames/s) \
                 | frames | pixels checked / stale or wrong |\n\
                 |---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for &pi in &self.profiles {
                let limit = self
                    .limit_ms(si, pi)
                    .map_or("—".into(), |l| format!("{l:.1} ({:.1})", 1e3 / l));
                for peer in peers_on(pi) {
                    let title = self.title(peer, wv);
                    let _ = write!(s, "| {} | {title} |", PROFILES[pi].title);
                    if let Some(why) = &self.skip[peer] {
                        let _ = writeln!(s, " {why} | | | | | {limit} | | |");
                        continue;
                    }
                    let Some(c) = self.cell(si, pi, peer) else {
                        let _ = writeln!(s, " not measured | | | | | {limit} | | |");
                        continue;
                    };
                    if let Some(e) = &c.error {
                        let e = e.lines().next().unwrap_or("").replace('|', "/");
                        let _ = writeln!(s, " failed: {e} | | | | | {limit} | | |");
                        continue;
                    }
                    let lat = match (
                        percentile(&c.latencies_ms, 0.5),
                        percentile(&c.latencies_ms, 0.99),
                    ) {
                        (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
                        _ => "n/a".into(),
                    };
                    let sync = self
                        .sync_us(pi, peer)
                        .map_or("n/a".into(), |(m, n)| format!("{m:.0} (n={n})"));
                    let _ = writeln!(
                        s,
                        " {:.1} | {lat} | {} | {:.2} | {sync} | {limit} | {} | {} / {} |",
                        c.fps(),
                        c.bytes_per_frame().map_or("n/a".into(), human_bytes),
                        c.cpu_ms(),
                        c.frames,
                        c.pixels_checked,
                        c.bad_pixels
                    );
                }
            }
            s.push('\n');
        }
        s
    }

    /// The targets: waysock against the better waypipe setting in each cell.
    fn targets(&self) -> String {
        let ws = PEERS.iter().position(|p| *p == Peer::Waysock).unwrap_or(3);
        let wps: Vec<usize> = (0..PEERS.len())
            .filter(|&i| PEERS[i].is_waypipe() && self.skip[i].is_none())
            .collect();
        let mut s = String::from(
            "| target | content | link | waysock | better waypipe | ratio | met? |\n\
             |---|---|---|---:|---:|---:|---|\n",
        );
        let mut rows = 0;
        let mut line = |s: &mut String,
                        t: &str,
                        sc: &str,
                        l: &str,
                        a: String,
                        b: String,
                        r: String,
                        ok: bool| {
            rows += 1;
            let _ = writeln!(
                s,
                "| {t} | {sc} | {l} | {a} | {b} | {r} | {} |",
                if ok { "met" } else { "**not met**" }
            );
        };
        for &si in &self.scenes {
            let scene = SCENES[si];
            let video = scene == Scene::Video;
            for &pi in &self.profiles {
                let p = &PROFILES[pi];
                let Some(w) = self.cell(si, pi, ws).filter(|c| c.measured()) else {
                    continue;
                };
                let theirs: Vec<&Cell> = wps
                    .iter()
                    .filter_map(|&i| self.cell(si, pi, i))
                    .filter(|c| c.measured())
                    .collect();
                let best =
                    |f: &dyn Fn(&Cell) -> Option<f64>, max: bool| {
                        theirs.iter().filter_map(|c| f(c)).reduce(|a, b| {
                            if (a > b) == max {
                                a
                            } else {
                                b
                            }
                        })
                    };
                if let Some(b) = best(&|c| Some(c.fps()), true) {
                    let need = if video { 1.0 } else { 1.5 };
                    let r = w.fps() / b;
                    // Beyond the limit, the target is out of any transport's reach: say so.
                    let bound = match self.limit_ms(si, pi).map(|l| 1e3 / l) {
                        Some(limit) if need * b > limit => format!(
                            " ({need}× is {:.1} frames/s, above the limit of {limit:.1}: one \
                             frame per round trip)",
                            need * b
                        ),
                        _ => String::new(),
                    };
                    line(
                        &mut s,
                        &format!("frames/s ≥ {need}×"),
                        scene.key(),
                        p.title,
                        format!("{:.1}", w.fps()),
                        format!("{b:.1}"),
                        format!("{}{bound}", ratio(r, need)),
                        r >= need,
                    );
                }
                if video {
                    if let Some(l) = self.limit_ms(si, pi) {
                        let limit_fps = 1e3 / l;
                        let r = w.fps() / limit_fps;
                        line(
                            &mut s,
                            "frames/s within 10 % of the limit",
                            scene.key(),
                            p.title,
                            format!("{:.2}", w.fps()),
                            format!("limit {limit_fps:.2}"),
                            ratio(r, 0.9),
                            r >= 0.9,
                        );
                    }
                } else if let (Some(a), Some(b)) =
                    (w.bytes_per_frame(), best(&|c| c.bytes_per_frame(), false))
                {
                    let r = a / b;
                    line(
                        &mut s,
                        "bytes/frame ≤ 0.7×",
                        scene.key(),
                        p.title,
                        human_bytes(a),
                        human_bytes(b),
                        ratio(r, 0.7),
                        r <= 0.7,
                    );
                }
                if p.rate.is_none() {
                    if let Some(b) = best(&|c| Some(c.cpu_ms()), false) {
                        let r = w.cpu_ms() / b;
                        line(
                            &mut s,
                            "CPU ms/frame ≤ 0.7×",
                            scene.key(),
                            p.title,
                            format!("{:.2}", w.cpu_ms()),
                            format!("{b:.2}"),
                            ratio(r, 0.7),
                            r <= 0.7,
                        );
                    }
                }
                let bad_theirs: u64 = theirs.iter().map(|c| c.bad_pixels).sum();
                line(
                    &mut s,
                    "0 stale or wrong pixels",
                    scene.key(),
                    p.title,
                    format!("{}", w.bad_pixels),
                    format!("{bad_theirs}"),
                    "—".into(),
                    w.bad_pixels == 0,
                );
            }
        }
        // The roundtrip, once per link.
        for &pi in &self.profiles {
            let p = &PROFILES[pi];
            let Some((a, _)) = self.sync_us(pi, ws) else {
                continue;
            };
            let theirs = wps
                .iter()
                .filter_map(|&i| self.sync_us(pi, i).map(|x| x.0))
                .reduce(f64::min);
            if p.rate.is_none() {
                if let Some(b) = theirs {
                    let r = a / b;
                    line(
                        &mut s,
                        "sync roundtrip ≤ 0.5× waypipe",
                        "—",
                        p.title,
                        format!("{a:.0} µs"),
                        format!("{b:.0} µs"),
                        ratio(r, 0.5),
                        r <= 0.5,
                    );
                }
            } else {
                let rtt = p.rtt.as_secs_f64() * 1e6;
                let relay = match self.relay_rtt_us.get(pi).copied().flatten() {
                    Some(r) => format!(" (the relay alone: {:+.0} µs)", r - rtt),
                    None => String::new(),
                };
                line(
                    &mut s,
                    "sync roundtrip ≤ RTT + 100 µs",
                    "—",
                    p.title,
                    format!("{a:.0} µs"),
                    theirs.map_or("n/a".into(), |b| format!("{b:.0} µs")),
                    format!("RTT {:+.0} µs{relay}", a - rtt),
                    a <= rtt + 100.0,
                );
            }
        }
        if rows == 0 || wps.is_empty() {
            return "Targets not evaluated: waysock and waypipe were not both measured in this \
                    run.\n"
                .into();
        }
        s
    }
}

/// A ratio with two decimals, or three where two would round it onto its target.
fn ratio(r: f64, target: f64) -> String {
    if (r - target).abs() < 0.01 {
        format!("{r:.3}×")
    } else {
        format!("{r:.2}×")
    }
}

fn ceiling_table(rows: &[Ceiling]) -> String {
    let mut s = String::from(
        "| path | bulk throughput, MB/s (receiver) | 1-byte ping-pong, median µs | nominal |\n\
         |---|---:|---:|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            r.title,
            r.mb_per_s.map_or("failed".into(), |v| format!("{v:.1}")),
            r.pingpong_us
                .map_or("failed".into(), |v| format!("{v:.0} (n={})", r.pings)),
            r.nominal
        );
    }
    s
}

// ---- main --------------------------------------------------------------------------------

/// Keeps the indices whose key contains one of `words`, unless no key does.
fn filter(keys: &[&str], words: &[String]) -> Vec<usize> {
    let hit: Vec<usize> = (0..keys.len())
        .filter(|&i| words.iter().any(|w| keys[i].contains(w.as_str())))
        .collect();
    if hit.is_empty() {
        (0..keys.len()).collect()
    } else {
        hit
    }
}

fn bench(full: bool) -> io::Result<bool> {
    let load_start = common::load();
    let plan = if full {
        Plan {
            rounds: 2,
            roundtrips: 300,
            roundtrip_cap: Duration::from_millis(1500),
            warmup: Duration::from_millis(200),
            phase: Duration::from_millis(2000),
            min_frames: 3,
            cap: Duration::from_secs(15),
        }
    } else {
        Plan {
            rounds: 1,
            roundtrips: 20,
            roundtrip_cap: Duration::from_millis(300),
            warmup: Duration::ZERO,
            phase: Duration::from_millis(100),
            min_frames: 2,
            cap: Duration::from_secs(10),
        }
    };
    let words: Vec<String> = std::env::var("LINK_BENCH_ONLY")
        .ok()
        .map(|w| {
            w.split(',')
                .map(|x| x.trim().to_lowercase())
                .filter(|x| !x.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let filtered = !words.is_empty();
    let profiles = if full {
        filter(&PROFILES.map(|p| p.key), &words)
    } else {
        vec![0, 2]
    };
    let scenes = filter(&SCENES.map(Scene::key), &words);
    let peers = filter(&PEERS.map(Peer::key), &words);

    let waypipe = std::env::var_os("WAYPIPE_011").map(PathBuf::from);
    let wv = waypipe
        .as_deref()
        .and_then(version_of)
        .unwrap_or_else(|| "0.11".into());
    let mut skip: [Option<String>; 4] = Default::default();
    for (i, p) in PEERS.iter().enumerate() {
        if p.is_waypipe() {
            skip[i] = match &waypipe {
                None => Some("not measured (set `WAYPIPE_011`)".into()),
                Some(w) if !w.is_file() => Some(format!("not measured ({} missing)", w.display())),
                Some(_) if in_path("socat").is_none() => {
                    Some("not measured (no `socat` in PATH)".into())
                }
                _ => None,
            };
        }
        if skip[i].is_none() && !peers.contains(&i) {
            skip[i] = Some("not measured (`LINK_BENCH_ONLY`)".into());
        }
    }

    let started = Instant::now();
    let ceiling_rows = if !filtered || words.iter().any(|w| w == "ceiling") {
        measure_ceiling(if full { 1.0 } else { 0.2 })
    } else {
        Vec::new()
    };

    let (dir, token) = common::scratch_dir("link")?;
    let compositor_path = dir.join("wayland-compositor");
    let shared = Arc::new(Shared {
        content: Content::new(),
        generation: AtomicU64::new(0),
        frames: Mutex::new(HashMap::new()),
        pixels_checked: AtomicU64::new(0),
        bad_pixels: AtomicU64::new(0),
        unknown_commits: AtomicU64::new(0),
        first_bad: Mutex::new(None),
    });
    let compositor = wayland::start(
        UnixListener::bind(&compositor_path)?,
        PixelCheck {
            shared: Arc::clone(&shared),
            scratch: Vec::new(),
        },
    )?;

    let mut results = Results {
        cells: HashMap::new(),
        syncs: HashMap::new(),
    };
    let only_ceiling = filtered && words.iter().all(|w| w == "ceiling");
    for round in 0..if only_ceiling { 0 } else { plan.rounds } {
        // Odd rounds walk the links the other way; peers rotate every round.
        let mut order = profiles.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for &pi in &order {
            let mut here = peers_on(pi);
            here.retain(|&i| skip[i].is_none());
            let k = round % here.len().max(1);
            here.rotate_left(k);
            for peer_i in here {
                let peer = PEERS[peer_i];
                eprintln!(
                    "round {}: {} / {}…",
                    round + 1,
                    PROFILES[pi].title,
                    peer.key()
                );
                if let Err(e) = session(
                    &plan,
                    pi,
                    peer,
                    &scenes,
                    waypipe.as_deref(),
                    &dir,
                    &compositor_path,
                    &token,
                    &shared,
                    &mut results,
                ) {
                    eprintln!("{} / {}: FAILED: {e}", PROFILES[pi].title, peer.key());
                    for &si in &scenes {
                        let c = results.cells.entry((si, pi, peer_i)).or_default();
                        c.error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed();
    let first_bad = shared.first_bad.lock().ok().and_then(|f| f.clone());
    drop(compositor);

    // The ceiling's rows after the first (direct TCP) are the links in order.
    let relay_rtt_us = (0..PROFILES.len())
        .map(|pi| ceiling_rows.get(pi + 1).and_then(|c| c.pingpong_us))
        .collect();
    let report = Report {
        results: &results,
        skip,
        profiles,
        scenes,
        relay_rtt_us,
    };
    let ceiling = if ceiling_rows.is_empty() {
        String::new()
    } else {
        ceiling_table(&ceiling_rows)
    };
    let tables = if only_ceiling {
        String::new()
    } else {
        report.tables(&wv)
    };
    let targets = if only_ceiling {
        String::new()
    } else {
        report.targets()
    };
    let machine = common::machine(&format!(
        "{load_start} at the start and {} at the end",
        common::load()
    ));
    println!("\n{ceiling}\n{tables}\n{targets}");
    println!(
        "machine: {machine}; measured in {:.0} s",
        elapsed.as_secs_f64()
    );

    let mut ok = true;
    let bad: u64 = results.cells.values().map(|c| c.bad_pixels).sum();
    if bad > 0 {
        eprintln!(
            "STALE OR WRONG PIXELS: {bad}; first: {}",
            first_bad.unwrap_or_default()
        );
        ok = false;
    }
    for ((_, _, peer), c) in &results.cells {
        if c.error.is_some() && !PEERS[*peer].is_waypipe() {
            ok = false;
        }
    }
    if full && ok && !filtered {
        write_doc(&machine, elapsed, &ceiling, &tables, &targets)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

/// The line that opens the part of `docs/PERFORMANCE.md` this bench writes.
const BEGIN: &str =
    "<!-- generated by crates/waysock-cli/benches/link.rs: edits below are overwritten -->";
/// The line that closes it.
const END: &str = "<!-- end of the part generated by crates/waysock-cli/benches/link.rs -->";

/// Replaces the part of `docs/PERFORMANCE.md` between [`BEGIN`] and [`END`] with what this
/// run measured.
fn write_doc(
    machine: &str,
    elapsed: Duration,
    ceiling: &str,
    tables: &str,
    targets: &str,
) -> io::Result<()> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {machine}. Whole run {:.0} s. Command: `WAYPIPE_011=… cargo bench -p \
         waysock-cli --bench link`.\n",
        elapsed.as_secs_f64()
    );
    md.push_str("### The relay's own ceiling\n\n");
    md.push_str(ceiling);
    md.push('\n');
    md.push_str(tables);
    md.push_str("### Targets\n\n");
    md.push_str(targets);
    md.push('\n');
    common::write_generated(BEGIN, END, &md)
}

fn main() -> ExitCode {
    common::run("link", bench)
}
