//! An in-process Wayland compositor for tests and benches (cargo feature `compositor`): a
//! thread that accepts clients on a listening socket and dispatches them with a
//! `wayland-server` [`Display`] (its pure-Rust backend: no libwayland installed). What it
//! offers is the caller's: a state type with its `Dispatch` impls, and the globals it creates
//! in `setup`.
//!
//! ```ignore
//! let server = Compositor::start(listener, |dh| {
//!     dh.create_global::<MyState, WlOutput, ()>(4, ());
//!     MyState::default()
//! })?;
//! // … clients connect to the listener's address …
//! let state = server.finish(); // stops the thread; its state, or a panic with its error
//! ```

use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use wayland_server;
use wayland_server::backend::{ClientData, ClientId, DisconnectReason};
use wayland_server::{Display, DisplayHandle};

/// Client data for clients that need none.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoClientData;

impl ClientData for NoClientData {
    fn initialized(&self, _: ClientId) {}
    fn disconnected(&self, _: ClientId, _: DisconnectReason) {}
}

/// A compositor thread serving a listener until [`finish`](Compositor::finish)ed or dropped.
#[derive(Debug)]
pub struct Compositor<S> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(S, Option<String>)>>,
}

impl<S: Send + 'static> Compositor<S> {
    /// Starts the thread: makes the display, lets `setup` create the globals and the state,
    /// then accepts every client `listener` gets and dispatches them (polling the listener
    /// and the clients, at most 100 ms between looks at the stop flag). The first error the
    /// loop meets (accepting, inserting, dispatching, flushing) is kept for
    /// [`finish`](Compositor::finish); the loop goes on.
    pub fn start(
        listener: UnixListener,
        setup: impl FnOnce(&DisplayHandle) -> S + Send + 'static,
    ) -> std::io::Result<Compositor<S>> {
        listener.set_nonblocking(true)?;
        let mut display: Display<S> = Display::new().map_err(std::io::Error::other)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut state = setup(&display.handle());
            let mut error: Option<String> = None;
            let mut note = |what: &str, e: &dyn std::fmt::Display| {
                if error.is_none() {
                    error = Some(format!("{what}: {e}"));
                }
            };
            let timeout = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 100_000_000,
            };
            while !flag.load(Ordering::Relaxed) {
                {
                    let backend = display.backend();
                    let clients = backend.poll_fd();
                    let mut fds = [
                        rustix::event::PollFd::new(&listener, rustix::event::PollFlags::IN),
                        rustix::event::PollFd::new(&clients, rustix::event::PollFlags::IN),
                    ];
                    let _ = rustix::event::poll(&mut fds, Some(&timeout));
                }
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nonblocking(false);
                            if let Err(e) = display
                                .handle()
                                .insert_client(stream, Arc::new(NoClientData))
                            {
                                note("insert_client", &e);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            note("accept", &e);
                            break;
                        }
                    }
                }
                if let Err(e) = display.dispatch_clients(&mut state) {
                    note("dispatch_clients", &e);
                }
                if let Err(e) = display.flush_clients() {
                    note("flush_clients", &e);
                }
            }
            (state, error)
        });
        Ok(Compositor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns its state; panics if the thread panicked or the loop met
    /// an error.
    pub fn finish(mut self) -> S {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("finish runs once");
        let (state, error) = thread.join().expect("the compositor thread panicked");
        if let Some(e) = error {
            panic!("the compositor failed: {e}");
        }
        state
    }
}

impl<S> Drop for Compositor<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The client side: what a test's `wayland-client` needs before it binds anything.
pub mod client {
    pub use wayland_client;
    use wayland_client::globals::{registry_queue_init, Global, GlobalListContents};
    use wayland_client::protocol::wl_registry::{self, WlRegistry};
    use wayland_client::{Connection, Dispatch, QueueHandle};

    /// Handles the registry's events while the globals are listed.
    struct Lister;

    impl Dispatch<WlRegistry, GlobalListContents> for Lister {
        fn event(
            _: &mut Self,
            _: &WlRegistry,
            _: wl_registry::Event,
            _: &GlobalListContents,
            _: &Connection,
            _: &QueueHandle<Self>,
        ) {
        }
    }

    /// The registry and every global the compositor advertises (one roundtrip, on a queue of
    /// its own). Bind from the registry onto the caller's queue:
    /// `registry.bind::<I, _, _>(g.name, g.version.min(V), &qh, ())`.
    pub fn globals(conn: &Connection) -> Result<(WlRegistry, Vec<Global>), String> {
        let (list, _queue) = registry_queue_init::<Lister>(conn).map_err(|e| e.to_string())?;
        Ok((list.registry().clone(), list.contents().clone_list()))
    }
}
