//! Wayland across a transport, measured in one run: a direct Unix socket, `waysock bridge`
//! over loopback TCP, and waypipe over socat TCP (Debian's 0.8.x from `PATH`; the Rust 0.11.x
//! if `WAYPIPE_011` names its binary).
//!
//! The compositor is a thread of this process (`wayland-server`, pure-Rust backend) offering
//! `wl_compositor` v4 and `wl_shm`. On every `wl_surface.commit` it reads the damaged rows of
//! the attached buffer from its own mapping of the pool and checks that each pixel is the
//! current frame's (frame n = the surface's n-th commit); then it releases the buffer and fires
//! the frame callbacks at once, so the transport is the bottleneck. Stale or wrong pixels are
//! counted, and any makes the run fail.
//!
//! The client is the main thread (`wayland-client`): one 1920×1080 XRGB8888 buffer in a memfd
//! pool, one frame in flight (it waits for the frame callback before drawing the next). Per
//! transport it measures
//! - `wl_display.sync` roundtrips (median of up to 1000, at most a few seconds);
//! - frames/s with 10 % of the rows (a band that moves every frame) and with 100 % rewritten
//!   and damaged with `damage_buffer`, each for ~3 s after a short warm-up;
//! - bytes on the TCP wire per frame: the kernel's `bytes_sent + bytes_received` of the one
//!   TCP connection (`ss -ti`), so nothing is interposed and both TCP transports are counted
//!   alike;
//! - CPU seconds per frame: `utime + stime` of this process (compositor and client) and of all
//!   its descendants (bridge ends, waypipe, socat and their forks), from `/proc`.
//!
//! With `--bench` (`cargo bench --bench bridge`) the full run, whose figures (the machine
//! line, the table, the targets) replace the generated part of `docs/PERFORMANCE.md`, between
//! its marker lines; the prose around it is hand-written and states no figures, so no run can
//! contradict it. Otherwise (`cargo test --benches`) a short smoke run that still checks every
//! pixel.

// Shared-memory pools must be mapped, as every compositor and shm client does.
#![allow(unsafe_code)]

mod common;

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::mm::{MapFlags, ProtFlags};
use waysock_testkit::median;

use common::{cpu_seconds, human_bytes, in_path, version_of, Procs};

const WIDTH: usize = 1920;
const HEIGHT: usize = 1080;
const STRIDE: usize = WIDTH * 4;

// ---- shared memory -----------------------------------------------------------------------

/// A shared mapping of a pool.
struct Map {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; it is only touched through
// `&self`/`&mut self`.
unsafe impl Send for Map {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Map {}

impl Map {
    fn new(fd: BorrowedFd<'_>, len: usize, write: bool) -> io::Result<Map> {
        if len == 0 {
            return Ok(Map {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        let prot = if write {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        // SAFETY: a fresh mapping at an address the kernel picks; unmapped in `drop`.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }
                .map_err(io::Error::from)?;
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of `self`. Another process
        // may write them meanwhile (that is what shared memory is for); we only compare bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`, and the mapping was made writable by the only caller that
        // writes (the client's own pool).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: exactly the mapping made in `new`, no longer borrowed.
            let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// Frame `frame`'s pixel at (`x`, `y`): 24 pseudo-random bits shared by 4 neighbouring pixels,
/// so the content compresses about as well as real window content (lz4 ≈ 2.5×) and no two
/// frames agree.
fn pixel(frame: u32, y: u32, x4: u32) -> u32 {
    let mut h = frame.wrapping_mul(0x9E37_79B1)
        ^ y.wrapping_mul(0x85EB_CA77)
        ^ x4.wrapping_mul(0xC2B2_AE3D).rotate_left(7);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    h & 0x00FF_FFFF
}

fn fill_row(row: &mut [u8], frame: u32, y: u32) {
    for (x4, group) in row.chunks_exact_mut(16).enumerate() {
        let p = pixel(frame, y, x4 as u32).to_le_bytes();
        for px in group.chunks_exact_mut(4) {
            px.copy_from_slice(&p);
        }
    }
}

// ---- the compositor ----------------------------------------------------------------------

mod compositor {
    use super::*;
    use wayland_server::protocol::{
        wl_buffer::{self, WlBuffer},
        wl_callback::WlCallback,
        wl_compositor::{self, WlCompositor},
        wl_region::{self, WlRegion},
        wl_shm::{self, WlShm},
        wl_shm_pool::{self, WlShmPool},
        wl_surface::{self, WlSurface},
    };
    use wayland_server::{
        Client, DataInit, Dispatch, DisplayHandle, GlobalDispatch, New, Resource,
    };
    use waysock_testkit::compositor::wayland_server;

    /// What the compositor saw, over all clients.
    #[derive(Default)]
    pub struct Checks {
        pub commits: AtomicU64,
        pub rows_checked: AtomicU64,
        pub bad_rows: AtomicU64,
        pub first_bad: Mutex<Option<String>>,
    }

    pub struct State {
        checks: Arc<Checks>,
        scratch: Vec<u8>,
    }

    pub struct Pool(Mutex<Option<Map>>);

    pub struct Buffer {
        pool: Arc<Pool>,
        offset: usize,
        width: usize,
        height: usize,
        stride: usize,
    }

    #[derive(Default)]
    pub struct Surface(Mutex<SurfaceState>);

    #[derive(Default)]
    struct SurfaceState {
        pending: Option<Option<WlBuffer>>,
        current: Option<WlBuffer>,
        full: bool,
        rows: Option<(usize, usize)>,
        callbacks: Vec<WlCallback>,
        commits: u32,
    }

    impl GlobalDispatch<WlCompositor, ()> for State {
        fn bind(
            _: &mut Self,
            _: &DisplayHandle,
            _: &Client,
            resource: New<WlCompositor>,
            _: &(),
            data_init: &mut DataInit<'_, Self>,
        ) {
            data_init.init(resource, ());
        }
    }

    impl Dispatch<WlCompositor, ()> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlCompositor,
            request: wl_compositor::Request,
            _: &(),
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            match request {
                wl_compositor::Request::CreateSurface { id } => {
                    data_init.init(id, Surface::default());
                }
                wl_compositor::Request::CreateRegion { id } => {
                    data_init.init(id, ());
                }
                _ => {}
            }
        }
    }

    impl Dispatch<WlRegion, ()> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlRegion,
            _: wl_region::Request,
            _: &(),
            _: &DisplayHandle,
            _: &mut DataInit<'_, Self>,
        ) {
        }
    }

    impl Dispatch<WlCallback, ()> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlCallback,
            _: wayland_server::protocol::wl_callback::Request,
            _: &(),
            _: &DisplayHandle,
            _: &mut DataInit<'_, Self>,
        ) {
        }
    }

    impl Dispatch<WlSurface, Surface> for State {
        fn request(
            state: &mut Self,
            _: &Client,
            _: &WlSurface,
            request: wl_surface::Request,
            data: &Surface,
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            let mut s = data.0.lock().unwrap();
            match request {
                wl_surface::Request::Attach { buffer, .. } => s.pending = Some(buffer),
                wl_surface::Request::Damage { .. } => s.full = true,
                wl_surface::Request::DamageBuffer { y, height, .. } => {
                    if y < 0 || height <= 0 {
                        s.full = true;
                    } else {
                        let (a, b) = (y as usize, y as usize + height as usize);
                        s.rows = Some(match s.rows {
                            Some((x0, x1)) => (x0.min(a), x1.max(b)),
                            None => (a, b),
                        });
                    }
                }
                wl_surface::Request::Frame { callback } => {
                    let cb = data_init.init(callback, ());
                    s.callbacks.push(cb);
                }
                wl_surface::Request::Commit => state.commit(&mut s),
                _ => {}
            }
        }
    }

    impl State {
        fn commit(&mut self, s: &mut SurfaceState) {
            let frame = s.commits;
            s.commits += 1;
            self.checks.commits.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = s.pending.take() {
                s.current = p;
            }
            let (full, rows) = (std::mem::take(&mut s.full), s.rows.take());
            if let Some(buffer) = &s.current {
                if let Some(b) = buffer.data::<Buffer>() {
                    let (r0, r1) = if full {
                        (0, b.height)
                    } else {
                        rows.map(|(a, z)| (a.min(b.height), z.min(b.height)))
                            .unwrap_or((0, 0))
                    };
                    self.check(b, frame, r0, r1);
                }
                buffer.release();
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u32)
                .unwrap_or(0);
            for cb in s.callbacks.drain(..) {
                cb.done(now);
            }
        }

        /// Compares rows `r0..r1` of the buffer with frame `frame`'s pattern.
        fn check(&mut self, b: &Buffer, frame: u32, r0: usize, r1: usize) {
            let pool = b.pool.0.lock().unwrap();
            let Some(map) = pool.as_ref() else { return };
            let mem = map.bytes();
            let row_len = b.width * 4;
            self.scratch.resize(row_len, 0);
            let mut bad = 0u64;
            for y in r0..r1 {
                let start = b.offset + y * b.stride;
                let Some(row) = mem.get(start..start + row_len) else {
                    bad += 1;
                    continue;
                };
                fill_row(&mut self.scratch, frame, y as u32);
                if row != &self.scratch[..] {
                    bad += 1;
                    let mut first = self.checks.first_bad.lock().unwrap();
                    if first.is_none() {
                        let at = row
                            .iter()
                            .zip(&self.scratch)
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                        *first = Some(format!(
                            "frame {frame}, row {y}, byte {at}: got {:02x?}, want {:02x?}",
                            &row[at..(at + 8).min(row_len)],
                            &self.scratch[at..(at + 8).min(row_len)]
                        ));
                    }
                }
            }
            self.checks
                .rows_checked
                .fetch_add((r1.saturating_sub(r0)) as u64, Ordering::Relaxed);
            self.checks.bad_rows.fetch_add(bad, Ordering::Relaxed);
        }
    }

    impl GlobalDispatch<WlShm, ()> for State {
        fn bind(
            _: &mut Self,
            _: &DisplayHandle,
            _: &Client,
            resource: New<WlShm>,
            _: &(),
            data_init: &mut DataInit<'_, Self>,
        ) {
            let shm = data_init.init(resource, ());
            shm.format(wl_shm::Format::Argb8888);
            shm.format(wl_shm::Format::Xrgb8888);
        }
    }

    impl Dispatch<WlShm, ()> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlShm,
            request: wl_shm::Request,
            _: &(),
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            if let wl_shm::Request::CreatePool { id, fd, size } = request {
                let map = Map::new(fd.as_fd(), size.max(0) as usize, false).ok();
                data_init.init(id, Arc::new(Pool(Mutex::new(map))));
                // The mapping keeps the memory; like a compositor we keep the fd for resizes.
                POOL_FDS.lock().unwrap().push(fd);
            }
        }
    }

    /// Pool descriptors, kept for `resize` (a bench compositor never frees them).
    static POOL_FDS: Mutex<Vec<std::os::fd::OwnedFd>> = Mutex::new(Vec::new());

    impl Dispatch<WlShmPool, Arc<Pool>> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlShmPool,
            request: wl_shm_pool::Request,
            data: &Arc<Pool>,
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            match request {
                wl_shm_pool::Request::CreateBuffer {
                    id,
                    offset,
                    width,
                    height,
                    stride,
                    ..
                } => {
                    data_init.init(
                        id,
                        Buffer {
                            pool: Arc::clone(data),
                            offset: offset.max(0) as usize,
                            width: width.max(0) as usize,
                            height: height.max(0) as usize,
                            stride: stride.max(0) as usize,
                        },
                    );
                }
                wl_shm_pool::Request::Resize { size } => {
                    // Not used by the bench client; a resize would need the fd again.
                    let _ = size;
                }
                _ => {}
            }
        }
    }

    impl Dispatch<WlBuffer, Buffer> for State {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlBuffer,
            _: wl_buffer::Request,
            _: &Buffer,
            _: &DisplayHandle,
            _: &mut DataInit<'_, Self>,
        ) {
        }
    }

    /// The kit's in-process compositor offering `wl_compositor` v4 and `wl_shm`, serving
    /// `listener` until dropped; what it saw goes to `checks`.
    pub fn start(
        listener: UnixListener,
        checks: Arc<Checks>,
    ) -> io::Result<waysock_testkit::compositor::Compositor<State>> {
        waysock_testkit::compositor::Compositor::start(listener, move |dh| {
            dh.create_global::<State, WlCompositor, ()>(4, ());
            dh.create_global::<State, WlShm, ()>(1, ());
            State {
                checks,
                scratch: Vec::new(),
            }
        })
    }
}

// ---- the client --------------------------------------------------------------------------

mod client {
    use super::*;
    use wayland_client::protocol::{
        wl_buffer::{self, WlBuffer},
        wl_callback::{self, WlCallback},
        wl_compositor::WlCompositor,
        wl_shm::{self, WlShm},
        wl_shm_pool::WlShmPool,
        wl_surface::WlSurface,
    };
    use wayland_client::{Connection, Dispatch, EventQueue, QueueHandle};

    #[derive(Default)]
    struct State {
        compositor: Option<WlCompositor>,
        shm: Option<WlShm>,
        frame_done: bool,
        releases: u64,
    }

    macro_rules! ignore {
        ($($i:ty),*) => {$(
            impl Dispatch<$i, ()> for State {
                fn event(
                    _: &mut Self,
                    _: &$i,
                    _: <$i as wayland_client::Proxy>::Event,
                    _: &(),
                    _: &Connection,
                    _: &QueueHandle<Self>,
                ) {
                }
            }
        )*};
    }
    ignore!(WlCompositor, WlSurface, WlShmPool);

    impl Dispatch<WlShm, ()> for State {
        fn event(
            _: &mut Self,
            _: &WlShm,
            _: wl_shm::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    impl Dispatch<WlBuffer, ()> for State {
        fn event(
            state: &mut Self,
            _: &WlBuffer,
            event: wl_buffer::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            if let wl_buffer::Event::Release = event {
                state.releases += 1;
            }
        }
    }

    impl Dispatch<WlCallback, ()> for State {
        fn event(
            state: &mut Self,
            _: &WlCallback,
            event: wl_callback::Event,
            _: &(),
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
            if let wl_callback::Event::Done { .. } = event {
                state.frame_done = true;
            }
        }
    }

    /// A connected client with one 1920×1080 XRGB8888 buffer on one surface.
    pub struct Client {
        _conn: Connection,
        queue: EventQueue<State>,
        state: State,
        surface: WlSurface,
        buffer: WlBuffer,
        map: Map,
        pub frame: u32,
    }

    fn fail(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(e.to_string())
    }

    impl Client {
        pub fn connect(path: &Path) -> io::Result<Client> {
            let deadline = Instant::now() + Duration::from_secs(10);
            let stream = loop {
                match UnixStream::connect(path) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            let conn = Connection::from_socket(stream).map_err(fail)?;
            let queue = conn.new_event_queue();
            let qh = queue.handle();
            let mut state = State::default();
            let (registry, globals) =
                waysock_testkit::compositor::client::globals(&conn).map_err(fail)?;
            for g in &globals {
                match g.interface.as_str() {
                    "wl_compositor" if g.version >= 4 => {
                        state.compositor = Some(registry.bind(g.name, 4, &qh, ()));
                    }
                    "wl_shm" => state.shm = Some(registry.bind(g.name, 1, &qh, ())),
                    _ => {}
                }
            }
            let (Some(compositor), Some(shm)) = (state.compositor.clone(), state.shm.clone())
            else {
                return Err(fail("wl_compositor v4 or wl_shm missing"));
            };
            let size = STRIDE * HEIGHT;
            let fd = rustix::fs::memfd_create("bench-pool", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(io::Error::from)?;
            rustix::fs::ftruncate(&fd, size as u64).map_err(io::Error::from)?;
            let map = Map::new(fd.as_fd(), size, true)?;
            let pool = shm.create_pool(fd.as_fd(), size as i32, &qh, ());
            let buffer = pool.create_buffer(
                0,
                WIDTH as i32,
                HEIGHT as i32,
                STRIDE as i32,
                wl_shm::Format::Xrgb8888,
                &qh,
                (),
            );
            pool.destroy();
            let surface = compositor.create_surface(&qh, ());
            let mut c = Client {
                _conn: conn,
                queue,
                state,
                surface,
                buffer,
                map,
                frame: 0,
            };
            // The first frame: everything.
            c.draw(0, HEIGHT)?;
            Ok(c)
        }

        /// One `wl_display.sync` roundtrip.
        pub fn roundtrip(&mut self) -> io::Result<()> {
            self.queue.roundtrip(&mut self.state).map_err(fail)?;
            Ok(())
        }

        /// Draws the next frame into rows `r0..r1`, damages them, commits, and waits for the
        /// frame callback.
        pub fn draw(&mut self, r0: usize, r1: usize) -> io::Result<()> {
            let frame = self.frame;
            let mem = self.map.bytes_mut();
            for y in r0..r1 {
                fill_row(
                    &mut mem[y * STRIDE..y * STRIDE + WIDTH * 4],
                    frame,
                    y as u32,
                );
            }
            let qh = self.queue.handle();
            self.surface.attach(Some(&self.buffer), 0, 0);
            self.surface
                .damage_buffer(0, r0 as i32, WIDTH as i32, (r1 - r0) as i32);
            self.surface.frame(&qh, ());
            self.surface.commit();
            self.frame += 1;
            self.state.frame_done = false;
            while !self.state.frame_done {
                self.queue
                    .blocking_dispatch(&mut self.state)
                    .map_err(fail)?;
            }
            Ok(())
        }
    }
}

// ---- processes and counters --------------------------------------------------------------

/// Payload bytes both ways on the established TCP connections to `port` (the dialing end's
/// socket: `bytes_sent + bytes_received` from `ss -ti`).
fn wire_bytes(port: u16) -> Option<u64> {
    let out = Command::new("ss")
        .args(["-tinH", "state", "established"])
        .arg(format!("( dport = :{port} )"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0;
    let mut seen = false;
    for word in text.split_whitespace() {
        for key in ["bytes_sent:", "bytes_received:"] {
            if let Some(v) = word.strip_prefix(key).and_then(|v| v.parse::<u64>().ok()) {
                total += v;
                seen = true;
            }
        }
    }
    seen.then_some(total)
}

// ---- transports --------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Direct,
    Waysock,
    Waypipe08,
    Waypipe011,
}

struct Transport {
    kind: Kind,
    title: String,
    /// Why it was not measured.
    skip: Option<String>,
    waypipe: Option<PathBuf>,
    /// socat with `nodelay` on its TCP ends (otherwise socat's defaults, Nagle on).
    nodelay: bool,
    /// Extra arguments for both `waysock bridge` ends.
    bridge_args: &'static [&'static str],
}

/// A running transport: where the client connects and which TCP port carries it.
struct Running {
    display: PathBuf,
    port: Option<u16>,
    procs: Procs,
}

fn start(t: &Transport, dir: &Path, compositor: &Path, token: &Path) -> io::Result<Running> {
    let mut procs = Procs::new();
    let (display, port) = match t.kind {
        Kind::Direct => (compositor.to_path_buf(), None),
        Kind::Waysock => {
            let mut port = None;
            let display = procs.bridge(dir, compositor, token, t.bridge_args, |p| {
                port = Some(p);
                Ok(p)
            })?;
            (display, port)
        }
        Kind::Waypipe08 | Kind::Waypipe011 => {
            let wp = t.waypipe.clone().unwrap_or_default();
            let tag = match (t.kind, t.nodelay) {
                (Kind::Waypipe08, false) => "wp08",
                (Kind::Waypipe08, true) => "wp08nd",
                (_, false) => "wp011",
                (_, true) => "wp011nd",
            };
            let mut port = None;
            let display = procs.waypipe(dir, compositor, &wp, tag, &[], t.nodelay, |p| {
                port = Some(p);
                Ok(p)
            })?;
            (display, port)
        }
    };
    Ok(Running {
        display,
        port,
        procs,
    })
}

// ---- measurement -------------------------------------------------------------------------

struct Phase {
    frames: u64,
    fps: f64,
    wire_per_frame: Option<f64>,
    cpu_per_frame: f64,
}

#[derive(Default)]
struct Result_ {
    roundtrip_us: Option<f64>,
    roundtrips: usize,
    phases: Vec<Phase>,
    rows_checked: u64,
    bad_rows: u64,
    error: Option<String>,
}

struct Plan {
    roundtrips: usize,
    roundtrip_cap: Duration,
    phase: Duration,
    warmup: Duration,
}

const DAMAGE: [(&str, usize); 2] = [("10 %", HEIGHT / 10), ("100 %", HEIGHT)];

fn measure(
    plan: &Plan,
    t: &Transport,
    dir: &Path,
    compositor_path: &Path,
    token: &Path,
    checks: &compositor::Checks,
) -> io::Result<Result_> {
    let mut running = start(t, dir, compositor_path, token)?;
    let checked0 = checks.rows_checked.load(Ordering::Relaxed);
    let bad0 = checks.bad_rows.load(Ordering::Relaxed);
    let mut client = client::Client::connect(&running.display)?;
    let mut r = Result_::default();

    let mut samples = Vec::new();
    let t0 = Instant::now();
    while samples.len() < plan.roundtrips && t0.elapsed() < plan.roundtrip_cap {
        let s = Instant::now();
        client.roundtrip()?;
        samples.push(s.elapsed().as_secs_f64() * 1e6);
    }
    r.roundtrips = samples.len();
    r.roundtrip_us = median(&samples);

    for (_, rows) in DAMAGE {
        let band = |c: &mut client::Client| {
            let r0 = (c.frame as usize * rows) % HEIGHT;
            let r1 = (r0 + rows).min(HEIGHT);
            c.draw(r0, r1)
        };
        let w = Instant::now();
        while w.elapsed() < plan.warmup {
            band(&mut client)?;
        }
        let wire0 = running.port.and_then(wire_bytes);
        let cpu0 = cpu_seconds();
        let start = Instant::now();
        let mut frames = 0u64;
        while start.elapsed() < plan.phase {
            band(&mut client)?;
            frames += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let wire1 = running.port.and_then(wire_bytes);
        r.phases.push(Phase {
            frames,
            fps: frames as f64 / secs,
            wire_per_frame: match (wire0, wire1) {
                (Some(a), Some(b)) => Some((b - a) as f64 / frames as f64),
                _ => None,
            },
            cpu_per_frame: cpu / frames as f64,
        });
    }
    running.procs.check_alive()?;
    drop(client);
    r.rows_checked = checks.rows_checked.load(Ordering::Relaxed) - checked0;
    r.bad_rows = checks.bad_rows.load(Ordering::Relaxed) - bad0;
    Ok(r)
}

// ---- report ------------------------------------------------------------------------------

fn cell(r: &Result_, f: impl Fn(&Result_) -> Option<String>) -> String {
    if let Some(e) = &r.error {
        let _ = e;
        return "failed".into();
    }
    f(r).unwrap_or_else(|| "n/a".into())
}

fn table(transports: &[Transport], results: &[Result_]) -> String {
    let mut s = String::from("| |");
    for t in transports {
        let _ = write!(s, " {} |", t.title);
    }
    s.push_str("\n|---|");
    for _ in transports {
        s.push_str("---:|");
    }
    s.push('\n');
    type Row<'a> = (String, Box<dyn Fn(&Result_) -> Option<String> + 'a>);
    let mut rows: Vec<Row<'_>> = vec![(
        "`wl_display.sync` roundtrip, median µs".into(),
        Box::new(|r: &Result_| {
            r.roundtrip_us
                .map(|v| format!("{v:.0} (n={})", r.roundtrips))
        }),
    )];
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("frames/s, {label} damage"),
            Box::new(move |r: &Result_| r.phases.get(i).map(|p| format!("{:.1}", p.fps))),
        ));
    }
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("TCP bytes/frame, {label} damage"),
            Box::new(move |r: &Result_| {
                r.phases
                    .get(i)
                    .and_then(|p| p.wire_per_frame)
                    .map(human_bytes)
            }),
        ));
    }
    for (i, (label, _)) in DAMAGE.iter().enumerate() {
        rows.push((
            format!("CPU ms/frame (all processes), {label} damage"),
            Box::new(move |r: &Result_| {
                r.phases
                    .get(i)
                    .map(|p| format!("{:.2}", p.cpu_per_frame * 1e3))
            }),
        ));
    }
    rows.push((
        "frames measured (10 % / 100 %)".into(),
        Box::new(|r: &Result_| {
            (r.phases.len() == 2)
                .then(|| format!("{} / {}", r.phases[0].frames, r.phases[1].frames))
        }),
    ));
    rows.push((
        "rows checked by the compositor / stale or wrong".into(),
        Box::new(|r: &Result_| Some(format!("{} / {}", r.rows_checked, r.bad_rows))),
    ));
    for (label, f) in &rows {
        let _ = write!(s, "| {label} |");
        for (t, r) in transports.iter().zip(results) {
            let c = match &t.skip {
                Some(why) => why.clone(),
                None => cell(r, f),
            };
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

/// The targets, against waypipe 0.11 measured in the same run (each socat variant).
fn targets(transports: &[Transport], results: &[Result_]) -> String {
    let measured = |t: &Transport, r: &Result_| t.skip.is_none() && r.error.is_none();
    let Some(ws) = transports
        .iter()
        .zip(results)
        .find(|(t, r)| t.kind == Kind::Waysock && measured(t, r))
        .map(|(_, r)| r)
    else {
        return "Targets not evaluated: the waysock bridge was not measured.\n".into();
    };
    let mut s = String::new();
    for (t, wp) in transports.iter().zip(results) {
        if t.kind != Kind::Waypipe011 || !measured(t, wp) {
            continue;
        }
        let _ = writeln!(
            s,
            "| target vs {} | waysock | waypipe | ratio | met? |\n|---|---:|---:|---:|---|",
            t.title
        );
        let mut line = |name: &str, ours: f64, theirs: f64, ok: bool, unit: &str| {
            let _ = writeln!(
                s,
                "| {name} | {ours:.1}{unit} | {theirs:.1}{unit} | {:.2}× | {} |",
                ours / theirs,
                if ok { "met" } else { "**not met**" }
            );
        };
        if let (Some(a), Some(b)) = (ws.roundtrip_us, wp.roundtrip_us) {
            line("roundtrip ≤ 0.33×", a, b, a <= 0.33 * b, " µs");
        }
        for (i, (label, _)) in DAMAGE.iter().enumerate() {
            let (Some(a), Some(b)) = (ws.phases.get(i), wp.phases.get(i)) else {
                continue;
            };
            let need = if i == 0 { 10.0 } else { 3.0 };
            line(
                &format!("frames/s at {label} ≥ {need}×"),
                a.fps,
                b.fps,
                a.fps >= need * b.fps,
                "",
            );
        }
        for (i, (label, _)) in DAMAGE.iter().enumerate() {
            let (Some(a), Some(b)) = (
                ws.phases.get(i).and_then(|p| p.wire_per_frame),
                wp.phases.get(i).and_then(|p| p.wire_per_frame),
            ) else {
                continue;
            };
            line(&format!("bytes/frame at {label} ≤ 1×"), a, b, a <= b, " B");
        }
        s.push('\n');
    }
    if s.is_empty() {
        s = "Targets not evaluated: waypipe 0.11 was not measured in this run \
             (set `WAYPIPE_011`).\n"
            .into();
    }
    s
}

// ---- main --------------------------------------------------------------------------------

fn bench(full: bool) -> io::Result<bool> {
    let plan = if full {
        Plan {
            roundtrips: 1000,
            roundtrip_cap: Duration::from_secs(3),
            phase: Duration::from_secs(3),
            warmup: Duration::from_millis(300),
        }
    } else {
        Plan {
            roundtrips: 50,
            roundtrip_cap: Duration::from_millis(500),
            phase: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
        }
    };
    let (dir, token) = common::scratch_dir("bridge")?;
    let compositor_path = dir.join("wayland-compositor");
    let checks = Arc::new(compositor::Checks::default());
    let compositor = compositor::start(UnixListener::bind(&compositor_path)?, Arc::clone(&checks))?;

    let have_socat = in_path("socat").is_some();
    let mut transports = vec![
        Transport {
            kind: Kind::Direct,
            title: "direct Unix socket".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &[],
        },
        Transport {
            kind: Kind::Waysock,
            title: "waysock bridge, TCP".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &[],
        },
        // What the busy poll buys (and costs): the same bridge sleeping at once in every read.
        Transport {
            kind: Kind::Waysock,
            title: "waysock bridge, TCP, `--busy-poll-us 0`".into(),
            skip: None,
            waypipe: None,
            nodelay: false,
            bridge_args: &["--busy-poll-us", "0"],
        },
    ];
    let wp08 = in_path("waypipe");
    let wp011 = std::env::var_os("WAYPIPE_011").map(PathBuf::from);
    for (kind, bin, missing) in [
        (Kind::Waypipe08, wp08, "no `waypipe` in PATH"),
        (Kind::Waypipe011, wp011, "set WAYPIPE_011"),
    ] {
        let version = bin.as_deref().and_then(version_of).unwrap_or_else(|| {
            if kind == Kind::Waypipe08 {
                "0.8"
            } else {
                "0.11"
            }
            .into()
        });
        for nodelay in [false, true] {
            transports.push(Transport {
                kind,
                title: format!(
                    "waypipe {version} + socat{}",
                    if nodelay { " (nodelay)" } else { "" }
                ),
                skip: match (&bin, have_socat) {
                    (None, _) => Some(format!("not measured ({missing})")),
                    (Some(p), _) if !p.is_file() => {
                        Some(format!("not measured ({} missing)", p.display()))
                    }
                    (_, false) => Some("not measured (no `socat` in PATH)".into()),
                    _ => None,
                },
                waypipe: bin.clone(),
                nodelay,
                bridge_args: &[],
            });
        }
    }

    // `BRIDGE_BENCH_ONLY=direct,waysock` measures only the columns whose titles contain one of
    // the words (for quick iterations); such a partial run never rewrites docs/PERFORMANCE.md.
    let only = std::env::var("BRIDGE_BENCH_ONLY").ok();
    if let Some(words) = &only {
        for t in &mut transports {
            let title = t.title.to_lowercase();
            if t.skip.is_none() && !words.split(',').any(|w| title.contains(w.trim())) {
                t.skip = Some("not measured (BRIDGE_BENCH_ONLY)".into());
            }
        }
    }

    let started = Instant::now();
    let mut results = Vec::new();
    for t in &transports {
        if t.skip.is_some() {
            eprintln!("{}: skipped", t.title);
            results.push(Result_::default());
            continue;
        }
        eprintln!("{}: measuring…", t.title);
        let r = measure(&plan, t, &dir, &compositor_path, &token, &checks).unwrap_or_else(|e| {
            Result_ {
                error: Some(e.to_string()),
                ..Result_::default()
            }
        });
        if let Some(e) = &r.error {
            eprintln!("{}: FAILED: {e}", t.title);
        }
        results.push(r);
    }
    let elapsed = started.elapsed();
    let first_bad = checks.first_bad.lock().ok().and_then(|f| f.clone());
    drop(compositor);

    let table = table(&transports, &results);
    let targets = targets(&transports, &results);
    let machine = common::machine(&format!("{} at the end", common::load()));
    println!("\n{table}\n{targets}");
    println!(
        "machine: {machine}; measured in {:.0} s",
        elapsed.as_secs_f64()
    );

    let mut ok = true;
    let bad: u64 = results.iter().map(|r| r.bad_rows).sum();
    if bad > 0 {
        eprintln!(
            "STALE OR WRONG PIXELS: {bad} rows did not carry the current frame's pattern; \
             first: {}",
            first_bad.unwrap_or_default()
        );
        ok = false;
    }
    for (t, r) in transports.iter().zip(&results) {
        if t.skip.is_none() && r.error.is_some() {
            ok = false;
        }
        // The bridge itself must always work.
        if t.kind == Kind::Waysock && t.skip.is_none() && r.rows_checked == 0 {
            ok = false;
        }
    }
    if full && ok && only.is_none() {
        write_doc(&transports, &machine, &table, &targets, elapsed)?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

/// The line that opens the part of `docs/PERFORMANCE.md` this bench writes.
const BEGIN: &str =
    "<!-- generated by crates/waysock-cli/benches/bridge.rs: edits below are overwritten -->";
/// The line that closes it.
const END: &str = "<!-- end of the generated part -->";

/// Replaces the generated part of `docs/PERFORMANCE.md` (between [`BEGIN`] and [`END`]) with
/// what this run measured: the machine line, the table, the targets and the columns not
/// measured. The prose around it is hand-written and states no figures.
fn write_doc(
    transports: &[Transport],
    machine: &str,
    table: &str,
    targets: &str,
    elapsed: Duration,
) -> io::Result<()> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {machine}. Whole run {:.0} s.\n",
        elapsed.as_secs_f64()
    );
    md.push_str(table);
    md.push('\n');
    md.push_str(targets);
    let skipped: Vec<&str> = transports
        .iter()
        .filter(|t| t.skip.is_some())
        .map(|t| t.title.as_str())
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(md, "\nNot measured in this run: {}.", skipped.join(", "));
    }
    md.push('\n');
    common::write_generated(BEGIN, END, &md)
}

fn main() -> ExitCode {
    common::run("bridge", bench)
}
