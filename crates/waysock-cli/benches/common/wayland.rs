//! Both ends of the benches' Wayland traffic, in this process: a compositor (the kit's thread,
//! `wayland-server`) offering `wl_compositor` v4 and `wl_shm` that hands every commit's buffer
//! and damage to a bench's [`Check`], then releases the buffer and fires the frame callbacks at
//! once; and a client (`wayland-client`) with one `W`×`H` XRGB8888 buffer in a memfd pool on
//! one surface, one frame in flight.

// Shared-memory pools must be mapped, as every compositor and shm client does.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::mm::{MapFlags, ProtFlags};

pub const W: usize = 1920;
pub const H: usize = 1080;

/// A rectangle of the surface (buffer coordinates, scale 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

// ---- shared memory -----------------------------------------------------------------------

/// A shared mapping of a pool, seen as XRGB8888 words.
pub struct Map {
    ptr: *mut u32,
    /// In bytes.
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this struct; it is only touched through
// `&self`/`&mut self`.
unsafe impl Send for Map {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Map {}

impl Map {
    /// Maps `len` bytes of `fd` (a zero length maps nothing).
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
        // SAFETY: a fresh mapping at an address the kernel picks (page-aligned, so aligned
        // for u32); unmapped in `drop`.
        let ptr =
            unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED, fd, 0) }
                .map_err(io::Error::from)?;
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn words(&self) -> &[u32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len / 4` aligned readable words for the lifetime of `self`.
        // Another process may write them meanwhile (that is what shared memory is for); we
        // only compare them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len / 4) }
    }

    fn words_mut(&mut self) -> &mut [u32] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `words`, and the mapping was made writable by the only caller that
        // writes (the client's own pool).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len / 4) }
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

// ---- the compositor ----------------------------------------------------------------------

pub use compositor::{start, Buffer, Check};

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
    use waysock_testkit::compositor::{wayland_server, Compositor};

    /// What a bench does with the commits it is shown.
    pub trait Check: Send + 'static {
        /// Kept with a surface from its creation and handed back with its commits.
        type Surface: Send + 'static;
        fn new_surface(&mut self) -> Self::Surface;
        /// The `commit`-th commit (from 0) of `surface` with `buffer` attached, and the damage
        /// since the previous commit, clipped to `W`×`H`.
        fn commit(
            &mut self,
            surface: &Self::Surface,
            commit: u32,
            buffer: &Buffer,
            damage: &[Rect],
        );
    }

    /// The compositor's state: the bench's [`Check`].
    pub struct Server<C>(C);

    pub struct Pool(Mutex<Option<Map>>);

    /// A buffer in a pool.
    pub struct Buffer {
        pool: Arc<Pool>,
        offset: usize,
        pub width: usize,
        pub height: usize,
        stride: usize,
    }

    impl Buffer {
        /// Runs `f` on the words of the pool's mapping (`None` if it could not be mapped).
        pub fn with_words<R>(&self, f: impl FnOnce(&[u32]) -> R) -> Option<R> {
            let pool = self.pool.0.lock().unwrap();
            pool.as_ref().map(|m| f(m.words()))
        }

        /// Pixels `x..x + w` of row `y` in `words` (the pool's), if the pool holds them.
        pub fn row<'a>(&self, words: &'a [u32], y: usize, x: usize, w: usize) -> Option<&'a [u32]> {
            let start = self.offset / 4 + y * (self.stride / 4) + x;
            words.get(start..start + w)
        }
    }

    pub struct Surface<T>(Mutex<SurfaceState<T>>);

    struct SurfaceState<T> {
        data: T,
        pending: Option<Option<WlBuffer>>,
        current: Option<WlBuffer>,
        damage: Vec<Rect>,
        callbacks: Vec<WlCallback>,
        commits: u32,
    }

    impl<C: Check> GlobalDispatch<WlCompositor, ()> for Server<C> {
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

    impl<C: Check> Dispatch<WlCompositor, ()> for Server<C> {
        fn request(
            state: &mut Self,
            _: &Client,
            _: &WlCompositor,
            request: wl_compositor::Request,
            _: &(),
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            match request {
                wl_compositor::Request::CreateSurface { id } => {
                    data_init.init(
                        id,
                        Surface(Mutex::new(SurfaceState {
                            data: state.0.new_surface(),
                            pending: None,
                            current: None,
                            damage: Vec::new(),
                            callbacks: Vec::new(),
                            commits: 0,
                        })),
                    );
                }
                wl_compositor::Request::CreateRegion { id } => {
                    data_init.init(id, ());
                }
                _ => {}
            }
        }
    }

    impl<C: Check> Dispatch<WlRegion, ()> for Server<C> {
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

    impl<C: Check> Dispatch<WlCallback, ()> for Server<C> {
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

    fn rect(x: i32, y: i32, w: i32, h: i32) -> Rect {
        // Clipped to the surface (scale 1: surface and buffer coordinates agree).
        let (x0, y0) = (x.clamp(0, W as i32) as usize, y.clamp(0, H as i32) as usize);
        let x1 = (i64::from(x) + i64::from(w)).clamp(0, W as i64) as usize;
        let y1 = (i64::from(y) + i64::from(h)).clamp(0, H as i64) as usize;
        Rect {
            x: x0,
            y: y0,
            w: x1.saturating_sub(x0),
            h: y1.saturating_sub(y0),
        }
    }

    impl<C: Check> Dispatch<WlSurface, Surface<C::Surface>> for Server<C> {
        fn request(
            state: &mut Self,
            _: &Client,
            _: &WlSurface,
            request: wl_surface::Request,
            data: &Surface<C::Surface>,
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            let mut s = data.0.lock().unwrap();
            match request {
                wl_surface::Request::Attach { buffer, .. } => s.pending = Some(buffer),
                wl_surface::Request::Damage {
                    x,
                    y,
                    width,
                    height,
                }
                | wl_surface::Request::DamageBuffer {
                    x,
                    y,
                    width,
                    height,
                } => s.damage.push(rect(x, y, width, height)),
                wl_surface::Request::Frame { callback } => {
                    let cb = data_init.init(callback, ());
                    s.callbacks.push(cb);
                }
                wl_surface::Request::Commit => state.commit(&mut s),
                _ => {}
            }
        }
    }

    impl<C: Check> Server<C> {
        fn commit(&mut self, s: &mut SurfaceState<C::Surface>) {
            let commit = s.commits;
            s.commits += 1;
            if let Some(p) = s.pending.take() {
                s.current = p;
            }
            let damage = std::mem::take(&mut s.damage);
            if let Some(buffer) = &s.current {
                if let Some(b) = buffer.data::<Buffer>() {
                    self.0.commit(&s.data, commit, b, &damage);
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
    }

    impl<C: Check> GlobalDispatch<WlShm, ()> for Server<C> {
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

    impl<C: Check> Dispatch<WlShm, ()> for Server<C> {
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
            }
        }
    }

    impl<C: Check> Dispatch<WlShmPool, Arc<Pool>> for Server<C> {
        fn request(
            _: &mut Self,
            _: &Client,
            _: &WlShmPool,
            request: wl_shm_pool::Request,
            data: &Arc<Pool>,
            _: &DisplayHandle,
            data_init: &mut DataInit<'_, Self>,
        ) {
            if let wl_shm_pool::Request::CreateBuffer {
                id,
                offset,
                width,
                height,
                stride,
                ..
            } = request
            {
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
        }
    }

    impl<C: Check> Dispatch<WlBuffer, Buffer> for Server<C> {
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
    /// `listener` until dropped; `check` sees every commit.
    pub fn start<C: Check>(listener: UnixListener, check: C) -> io::Result<Compositor<Server<C>>> {
        Compositor::start(listener, move |dh| {
            dh.create_global::<Server<C>, WlCompositor, ()>(4, ());
            dh.create_global::<Server<C>, WlShm, ()>(1, ());
            Server(check)
        })
    }
}

// ---- the client --------------------------------------------------------------------------

pub use client::Client;

mod client {
    use super::*;
    use wayland_client::protocol::{
        wl_buffer::WlBuffer,
        wl_callback::{self, WlCallback},
        wl_compositor::WlCompositor,
        wl_shm::{self, WlShm},
        wl_shm_pool::WlShmPool,
        wl_surface::WlSurface,
    };
    use wayland_client::{Connection, Dispatch, EventQueue, QueueHandle};

    #[derive(Default)]
    pub struct State {
        frame_done: bool,
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
    ignore!(WlCompositor, WlSurface, WlShmPool, WlShm, WlBuffer);

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

    /// A connected client with one `W`×`H` XRGB8888 buffer on one surface.
    pub struct Client {
        _conn: Connection,
        queue: EventQueue<State>,
        state: State,
        surface: WlSurface,
        buffer: WlBuffer,
        map: Map,
    }

    fn fail(e: impl std::fmt::Display) -> io::Error {
        io::Error::other(e.to_string())
    }

    impl Client {
        /// Connects to `path` (trying for 10 s), binds the globals, makes the buffer and the
        /// surface.
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
            let (registry, globals) =
                waysock_testkit::compositor::client::globals(&conn).map_err(fail)?;
            let (mut compositor, mut shm) = (None, None);
            for g in &globals {
                match g.interface.as_str() {
                    "wl_compositor" if g.version >= 4 => {
                        compositor = Some(registry.bind::<WlCompositor, _, _>(g.name, 4, &qh, ()));
                    }
                    "wl_shm" => shm = Some(registry.bind::<WlShm, _, _>(g.name, 1, &qh, ())),
                    _ => {}
                }
            }
            let (Some(compositor), Some(shm)) = (compositor, shm) else {
                return Err(fail("wl_compositor v4 or wl_shm missing"));
            };
            let size = W * H * 4;
            let fd = rustix::fs::memfd_create("bench-pool", rustix::fs::MemfdFlags::CLOEXEC)
                .map_err(io::Error::from)?;
            rustix::fs::ftruncate(&fd, size as u64).map_err(io::Error::from)?;
            let map = Map::new(fd.as_fd(), size, true)?;
            let pool = shm.create_pool(fd.as_fd(), size as i32, &qh, ());
            let buffer = pool.create_buffer(
                0,
                W as i32,
                H as i32,
                (W * 4) as i32,
                wl_shm::Format::Xrgb8888,
                &qh,
                (),
            );
            pool.destroy();
            let surface = compositor.create_surface(&qh, ());
            Ok(Client {
                _conn: conn,
                queue,
                state: State::default(),
                surface,
                buffer,
                map,
            })
        }

        /// One `wl_display.sync` roundtrip.
        pub fn roundtrip(&mut self) -> io::Result<()> {
            self.queue.roundtrip(&mut self.state).map_err(fail)?;
            Ok(())
        }

        /// Idle `wl_display.sync` roundtrips, `n` of them or as many as fit in `cap`: each
        /// one's time in µs.
        pub fn roundtrips(&mut self, n: usize, cap: std::time::Duration) -> io::Result<Vec<f64>> {
            let mut samples = Vec::with_capacity(n);
            let t0 = std::time::Instant::now();
            while samples.len() < n && t0.elapsed() < cap {
                let s = std::time::Instant::now();
                self.roundtrip()?;
                samples.push(s.elapsed().as_secs_f64() * 1e6);
            }
            Ok(samples)
        }

        /// The buffer's pixels, `W` a row.
        pub fn pixels(&mut self) -> &mut [u32] {
            self.map.words_mut()
        }

        /// Attaches the buffer, damages `r`, asks for a frame callback, runs `before_commit`,
        /// commits, and waits for the frame callback.
        pub fn present(&mut self, r: Rect, before_commit: impl FnOnce()) -> io::Result<()> {
            let qh = self.queue.handle();
            self.surface.attach(Some(&self.buffer), 0, 0);
            self.surface
                .damage_buffer(r.x as i32, r.y as i32, r.w as i32, r.h as i32);
            self.surface.frame(&qh, ());
            before_commit();
            self.surface.commit();
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
