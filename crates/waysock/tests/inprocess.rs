//! A real Wayland conversation in one process, fast: a `wayland-server` `Display` fed by the
//! listener `waysock::Binder::bind()` returns, and a `wayland-client` `Connection` made from the
//! stream `waysock::Discovery` found. The client does a roundtrip and must see the global the
//! server advertises (`wl_output`), once through a runtime dir and once through an abstract
//! socket. Both libraries use their pure-Rust backends; no compositor is installed for this.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use waysock::registry::Registry;
use waysock::{Binder, Discovery, Endpoint, Environment, Strategy};
use waysock_testkit::compositor::{self, client, wayland_server};
use waysock_testkit::{set_mode, unique, Scratch};

use wayland_client::{Connection, QueueHandle};
use wayland_server::protocol::wl_output::{self, WlOutput};
use wayland_server::{DataInit, Dispatch, DisplayHandle, GlobalDispatch, New};

// ---- the server --------------------------------------------------------------------------

/// The compositor's state: it only counts binds.
#[derive(Default)]
struct Server {
    binds: usize,
}

impl GlobalDispatch<WlOutput, ()> for Server {
    fn bind(
        state: &mut Self,
        _: &DisplayHandle,
        _: &wayland_server::Client,
        resource: New<WlOutput>,
        _: &(),
        data_init: &mut DataInit<'_, Self>,
    ) {
        state.binds += 1;
        let output = data_init.init(resource, ());
        output.geometry(
            0,
            0,
            0,
            0,
            wl_output::Subpixel::Unknown,
            "waysock".into(),
            "test".into(),
            wl_output::Transform::Normal,
        );
    }
}

impl Dispatch<WlOutput, ()> for Server {
    fn request(
        _: &mut Self,
        _: &wayland_server::Client,
        _: &WlOutput,
        _: wl_output::Request,
        _: &(),
        _: &DisplayHandle,
        _: &mut DataInit<'_, Self>,
    ) {
    }
}

/// The kit's in-process compositor offering `wl_output` v4, serving `listener` until dropped.
struct Compositor(compositor::Compositor<Server>);

impl Compositor {
    fn start(listener: UnixListener) -> Compositor {
        Compositor(
            compositor::Compositor::start(listener, |dh| {
                dh.create_global::<Server, WlOutput, ()>(4, ());
                Server::default()
            })
            .expect("start the compositor"),
        )
    }

    /// Stops the thread; how many times the global was bound.
    fn finish(self) -> usize {
        self.0.finish().binds
    }
}

// ---- the client --------------------------------------------------------------------------

/// The client's state: it keeps nothing.
struct Client;

impl wayland_client::Dispatch<wayland_client::protocol::wl_output::WlOutput, ()> for Client {
    fn event(
        _: &mut Self,
        _: &wayland_client::protocol::wl_output::WlOutput,
        _: wayland_client::protocol::wl_output::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

/// Connects over `stream`, lists the globals with one roundtrip, binds `wl_output` and does a
/// second roundtrip.
fn talk(stream: std::os::unix::net::UnixStream) -> Vec<(String, u32)> {
    let conn = Connection::from_socket(stream).expect("wayland-client connection");
    let mut queue = conn.new_event_queue();
    let qh = queue.handle();
    let (registry, globals) = client::globals(&conn).expect("first roundtrip");
    for g in globals.iter().filter(|g| g.interface == "wl_output") {
        registry.bind::<wayland_client::protocol::wl_output::WlOutput, _, _>(
            g.name,
            g.version.min(4),
            &qh,
            (),
        );
    }
    queue.roundtrip(&mut Client).expect("second roundtrip");
    globals
        .into_iter()
        .map(|g| (g.interface, g.version))
        .collect()
}

// ---- fixtures ----------------------------------------------------------------------------

/// An environment with only `XDG_RUNTIME_DIR` (maybe) set; every other place is nowhere.
fn environment(scratch: &Scratch, runtime_dir: Option<PathBuf>) -> Environment {
    let mut env = Environment::clean(waysock::Roots::under(&scratch.path().join("nonexistent")));
    env.xdg_runtime_dir = runtime_dir.map(Into::into);
    env
}

/// Discovery that never looks at the real registry.
fn discovery(scratch: &Scratch, env: Environment) -> Discovery {
    let uid = env.uid;
    Discovery::new(env).registry(Registry::in_dir(scratch.path(), uid))
}

fn assert_sees_output(globals: &[(String, u32)]) {
    assert!(
        globals.iter().any(|(i, v)| i == "wl_output" && *v == 4),
        "wl_output v4 not advertised: {globals:?}"
    );
}

// ---- tests -------------------------------------------------------------------------------

#[test]
fn runtime_dir_socket_serves_a_real_wayland_client() {
    let scratch = Scratch::new("inproc-rt");
    let rt = scratch.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    set_mode(&rt, 0o700);
    let env = environment(&scratch, Some(rt.clone()));
    let bound = Binder::new(env.clone())
        .strategies(vec![Strategy::RuntimeDir])
        .bind()
        .unwrap();
    assert_eq!(bound.endpoint(), &Endpoint::Unix(rt.join("wayland-0")));
    let (listener, lock, _report) = bound.into_parts();
    let server = Compositor::start(listener);

    // Found by scanning the runtime dir (nothing set but XDG_RUNTIME_DIR).
    let (found, _) = discovery(&scratch, env.clone()).find().unwrap();
    assert_eq!(found.endpoint, Endpoint::Unix(rt.join("wayland-0")));
    assert_eq!(found.source, "runtime-dir");
    assert_sees_output(&talk(found.stream.expect("a connection")));

    // Found through WAYLAND_DISPLAY, relative and absolute.
    for display in ["wayland-0".into(), rt.join("wayland-0").into_os_string()] {
        let mut env = env.clone();
        env.wayland_display = Some(display);
        let (found, _) = discovery(&scratch, env).find().unwrap();
        assert_eq!(found.source, "WAYLAND_DISPLAY");
        assert_sees_output(&talk(found.stream.unwrap()));
    }
    assert_eq!(server.finish(), 3);
    drop(lock);
}

#[test]
fn abstract_socket_serves_a_real_wayland_client() {
    let scratch = Scratch::new("inproc-abs");
    let env = environment(&scratch, None);
    // Abstract names are per network namespace, shared by every test running here: unique.
    let name = unique("wayland-t").replace('-', "");
    let bound = Binder::new(env.clone())
        .strategies(vec![Strategy::Abstract])
        .display(Some(name.clone()))
        .bind()
        .unwrap();
    let Endpoint::Abstract(abs) = bound.endpoint().clone() else {
        panic!("not abstract: {}", bound.endpoint());
    };
    assert_eq!(abs, format!("wayland-{}-{name}", env.uid));
    let (listener, lock, _report) = bound.into_parts();
    assert!(lock.is_none(), "abstract sockets need no lock file");
    let server = Compositor::start(listener);

    let (found, tried) = discovery(&scratch, env.clone())
        .display(Some(name.clone()))
        .find()
        .unwrap();
    assert_eq!(found.endpoint, Endpoint::Abstract(abs.clone()));
    assert_eq!(found.source, "abstract");
    assert!(
        tried.iter().any(|t| t.candidate.contains("registry")),
        "the registry comes before abstract: {tried:?}"
    );
    assert_sees_output(&talk(found.stream.unwrap()));

    // An explicit endpoint skips the search.
    let (found, _) = discovery(&scratch, env)
        .endpoint(Some(Endpoint::Abstract(abs)))
        .find()
        .unwrap();
    assert_eq!(found.source, "--endpoint");
    assert_sees_output(&talk(found.stream.unwrap()));
    assert_eq!(server.finish(), 2);
}

#[test]
fn registry_record_leads_a_client_with_nothing_set() {
    // The `waysock run` → `env -i` client path, in process: a display published in a
    // registry is found when no variable names it.
    let scratch = Scratch::new("inproc-reg");
    let dir = scratch.path().join("private");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o700);
    let env = environment(&scratch, Some(dir.clone()));
    let bound = Binder::new(env.clone())
        .strategies(vec![Strategy::RuntimeDir])
        .display(Some("wayland-7".into()))
        .bind()
        .unwrap();
    let ep = bound.endpoint().clone();
    let (listener, lock, _) = bound.into_parts();
    let server = Compositor::start(listener);
    let reg = Registry::in_dir(scratch.path(), env.uid);
    let rec =
        waysock::Record::for_process("wayland-7", ep.clone(), std::process::id(), None).unwrap();
    reg.publish(&rec).unwrap();

    let bare = environment(&scratch, None);
    let (found, _) = discovery(&scratch, bare).find().unwrap();
    assert_eq!(found.endpoint, ep);
    assert_eq!(found.source, "registry");
    assert_sees_output(&talk(found.stream.unwrap()));
    assert_eq!(server.finish(), 1);
    drop(lock);
    // The compositor is gone: the record is no longer live, and discovery says why.
    assert!(!rec.is_live());
    let err = discovery(&scratch, environment(&scratch, None))
        .find()
        .unwrap_err();
    assert!(err.to_string().contains("wayland-7"), "{err}");
}
