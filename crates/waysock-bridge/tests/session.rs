//! The two ends of one bridged session, in process, joined by a real loopback TCP connection:
//! the test plays the Wayland client on one Unix socket and the compositor on the other,
//! speaking raw wire bytes, and checks what the descriptors the messages carry turn into on the
//! far side: a keymap arrives with its content, clipboard pipes are relayed both ways with end
//! of file, shm pools are mirrored and kept current on commit (never stale), and garbage ends the
//! session with an error, never a panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waysock_bridge::auth::{self, Role, Token};
use waysock_bridge::channel::{SealWriter, Sealed};
use waysock_bridge::session::{self, Side, Stats};
use waysock_bridge::transport::{self, Frame};

/// Every wait in this file is bounded by this.
const LIMIT: Duration = Duration::from_secs(10);

// ---- raw Wayland wire --------------------------------------------------------------------

/// One argument, as it goes on the wire (descriptors travel beside the bytes).
enum A<'a> {
    U(u32),
    I(i32),
    S(&'a str),
}

fn msg(object: u32, opcode: u16, args: &[A<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for a in args {
        match a {
            A::U(u) => body.extend_from_slice(&u.to_ne_bytes()),
            A::I(i) => body.extend_from_slice(&i.to_ne_bytes()),
            A::S(s) => {
                body.extend_from_slice(&(s.len() as u32 + 1).to_ne_bytes());
                body.extend_from_slice(s.as_bytes());
                body.push(0);
                while body.len() % 4 != 0 {
                    body.push(0);
                }
            }
        }
    }
    let size = (8 + body.len()) as u32;
    let mut m = object.to_ne_bytes().to_vec();
    m.extend_from_slice(&((size << 16) | u32::from(opcode)).to_ne_bytes());
    m.extend_from_slice(&body);
    m
}

/// A received message.
#[derive(Debug)]
struct Msg {
    object: u32,
    opcode: u16,
    body: Vec<u8>,
}

impl Msg {
    fn is(&self, object: u32, opcode: u16) -> bool {
        self.object == object && self.opcode == opcode
    }
}

/// One side of a Unix socket speaking Wayland by hand.
struct Peer {
    sock: UnixStream,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Peer {
    fn new(sock: UnixStream) -> Peer {
        sock.set_read_timeout(Some(LIMIT)).unwrap();
        Peer {
            sock,
            buf: Vec::new(),
            fds: Vec::new(),
        }
    }

    fn send(&self, bytes: &[u8], fds: &[&OwnedFd]) {
        let fds: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        transport::send_with_fds(self.sock.as_fd(), bytes, &fds).expect("send to the bridge");
    }

    /// The next whole message (panics after [`LIMIT`] or at end of stream).
    fn recv(&mut self) -> Msg {
        loop {
            if self.buf.len() >= 8 {
                let object = u32::from_ne_bytes(self.buf[0..4].try_into().unwrap());
                let w = u32::from_ne_bytes(self.buf[4..8].try_into().unwrap());
                let size = (w >> 16) as usize;
                assert!(size >= 8, "bad message from the bridge: {:?}", &self.buf);
                if self.buf.len() >= size {
                    let body = self.buf[8..size].to_vec();
                    self.buf.drain(..size);
                    return Msg {
                        object,
                        opcode: (w & 0xffff) as u16,
                        body,
                    };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = transport::recv_with_fds(self.sock.as_fd(), &mut chunk, &mut self.fds)
                .expect("receive from the bridge (timed out?)");
            assert!(n > 0, "the bridge closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Skips messages until one on `object` with `opcode`.
    fn expect(&mut self, object: u32, opcode: u16) -> Msg {
        loop {
            let m = self.recv();
            if m.is(object, opcode) {
                return m;
            }
        }
    }

    fn take_fd(&mut self) -> OwnedFd {
        assert!(!self.fds.is_empty(), "no descriptor arrived");
        self.fds.remove(0)
    }

    /// Waits (bounded) for the bridge to close this connection.
    fn expect_eof(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match self.sock.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("the bridge did not close the connection: {e}"),
            }
        }
    }
}

// ---- a session pair ----------------------------------------------------------------------

/// Both ends of one bridged connection, running in threads.
struct Bridged {
    client: Peer,
    server: Peer,
    done: mpsc::Receiver<(Side, std::thread::Result<std::io::Result<()>>)>,
}

/// Two ends of a loopback TCP connection after the real handshake: (connector, listener).
fn tcp_pair() -> (Sealed, Sealed) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    handshaken(c, s)
}

/// The same through a tap in the middle that keeps a copy of every byte, both ways.
fn tapped_tcp_pair(seen: Arc<Mutex<Vec<u8>>>) -> (Sealed, Sealed) {
    let real = TcpListener::bind("127.0.0.1:0").unwrap();
    let tap = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(tap.local_addr().unwrap()).unwrap();
    let (tap_in, _) = tap.accept().unwrap();
    let tap_out = TcpStream::connect(real.local_addr().unwrap()).unwrap();
    let (s, _) = real.accept().unwrap();
    for (mut from, mut to) in [
        (tap_in.try_clone().unwrap(), tap_out.try_clone().unwrap()),
        (tap_out, tap_in),
    ] {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    handshaken(c, s)
}

fn handshaken(mut c: TcpStream, mut s: TcpStream) -> (Sealed, Sealed) {
    let listener = std::thread::spawn(move || {
        let token = Token::from_bytes(b"session-test-token-0123456789").unwrap();
        let keys = auth::handshake(&mut s, &token, Role::Listener).unwrap();
        Sealed { tcp: s, keys }
    });
    let token = Token::from_bytes(b"session-test-token-0123456789").unwrap();
    let keys = auth::handshake(&mut c, &token, Role::Connector).unwrap();
    (Sealed { tcp: c, keys }, listener.join().unwrap())
}

/// A hand-driven far end: seals whatever it is given with the session's keys.
fn far_end(s: Sealed) -> SealWriter<TcpStream> {
    SealWriter::new(s.tcp, &s.keys.send, s.keys.cipher)
}

fn spawn_session(
    local: UnixStream,
    remote: Sealed,
    side: Side,
    done: mpsc::Sender<(Side, std::thread::Result<std::io::Result<()>>)>,
) {
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(move || {
            let stats = Arc::new(Stats::default());
            session::run(
                local,
                remote,
                side,
                "test",
                stats,
                session::DEFAULT_BUSY_POLL,
            )
        });
        let _ = done.send((side, r));
    });
}

fn bridged() -> Bridged {
    bridged_over(tcp_pair())
}

fn bridged_over((tc, ts): (Sealed, Sealed)) -> Bridged {
    let (client_peer, client_end) = UnixStream::pair().unwrap();
    let (server_peer, server_end) = UnixStream::pair().unwrap();
    let (tx, done) = mpsc::channel();
    spawn_session(client_end, tc, Side::Client, tx.clone());
    spawn_session(server_end, ts, Side::Server, tx);
    Bridged {
        client: Peer::new(client_peer),
        server: Peer::new(server_peer),
        done,
    }
}

impl Bridged {
    /// Ends both peers and waits (bounded) for both sessions; their results.
    fn finish(self) -> Vec<(Side, std::io::Result<()>)> {
        drop(self.client);
        drop(self.server);
        collect(&self.done, 2)
    }
}

fn collect(
    done: &mpsc::Receiver<(Side, std::thread::Result<std::io::Result<()>>)>,
    n: usize,
) -> Vec<(Side, std::io::Result<()>)> {
    (0..n)
        .map(|_| {
            let (side, r) = done
                .recv_timeout(LIMIT)
                .expect("a session did not end within the limit");
            (
                side,
                r.unwrap_or_else(|_| panic!("the {side:?} session panicked")),
            )
        })
        .collect()
}

// Object ids the scripted client allocates.
const REGISTRY: u32 = 2;
const SEAT: u32 = 3;
const KEYBOARD: u32 = 4;
const DDM: u32 = 5;
const DATA_DEVICE: u32 = 6;
const DATA_SOURCE: u32 = 7;
const SHM: u32 = 8;
const COMPOSITOR: u32 = 9;
const SURFACE: u32 = 10;
const POOL: u32 = 11;
const BUFFER: u32 = 12;
/// The first id the compositor allocates.
const SERVER_ID: u32 = 0xff00_0000;

/// The client gets the registry and binds every global the tests use; the compositor sees
/// the requests and advertises the globals.
fn bind_globals(b: &mut Bridged) {
    b.client.send(&msg(1, 1, &[A::U(REGISTRY)]), &[]);
    b.server.expect(1, 1);
    let globals = [
        (1, "wl_seat", 7),
        (2, "wl_data_device_manager", 3),
        (3, "wl_shm", 1),
        (4, "wl_compositor", 5),
    ];
    let mut events = Vec::new();
    for (name, iface, version) in globals {
        events.extend(msg(REGISTRY, 0, &[A::U(name), A::S(iface), A::U(version)]));
    }
    b.server.send(&events, &[]);
    for _ in globals {
        b.client.expect(REGISTRY, 0);
    }
    let mut binds = Vec::new();
    for ((name, iface, version), id) in globals.into_iter().zip([SEAT, DDM, SHM, COMPOSITOR]) {
        binds.extend(msg(
            REGISTRY,
            0,
            &[A::U(name), A::S(iface), A::U(version), A::U(id)],
        ));
    }
    b.client.send(&binds, &[]);
    for _ in globals {
        b.server.expect(REGISTRY, 0);
    }
}

fn memfd_with(content: &[u8]) -> OwnedFd {
    let fd = rustix::fs::memfd_create("test", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, content.len() as u64).unwrap();
    let mut done = 0;
    while done < content.len() {
        done += rustix::io::pwrite(&fd, &content[done..], done as u64).unwrap();
    }
    fd
}

fn read_all_at(fd: &OwnedFd, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = rustix::io::pread(fd, &mut out[got..], got as u64).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    out.truncate(got);
    out
}

fn pipe() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

/// Reads a pipe to end of file, bounded by [`LIMIT`].
fn read_to_eof(fd: OwnedFd) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(fd);
        let mut out = Vec::new();
        let r = f.read_to_end(&mut out).map(|_| out);
        let _ = tx.send(r);
    });
    rx.recv_timeout(LIMIT)
        .expect("no end of file on the relayed pipe")
        .expect("read the relayed pipe")
}

// ---- tests -------------------------------------------------------------------------------

#[test]
fn keymap_arrives_with_its_content() {
    // Through a tap: what a sniffer on the path would see.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut b = bridged_over(tapped_tcp_pair(Arc::clone(&seen)));
    bind_globals(&mut b);
    b.client.send(&msg(SEAT, 1, &[A::U(KEYBOARD)]), &[]);
    b.server.expect(SEAT, 1);
    let keymap: Vec<u8> = b"xkb_keymap { xkb_keycodes \"waysock-test\" { minimum = 8; }; };\n"
        .iter()
        .copied()
        .cycle()
        .take(40_000)
        .chain([0u8])
        .collect();
    let fd = memfd_with(&keymap);
    b.server.send(
        &msg(KEYBOARD, 0, &[A::U(1), A::U(keymap.len() as u32)]),
        &[&fd],
    );
    let m = b.client.expect(KEYBOARD, 0);
    let size = u32::from_ne_bytes(m.body[4..8].try_into().unwrap()) as usize;
    assert_eq!(size, keymap.len(), "the keymap size is relayed unchanged");
    let got = b.client.take_fd();
    assert_ne!(
        rustix::fs::fstat(&got).unwrap().st_ino,
        rustix::fs::fstat(&fd).unwrap().st_ino,
        "in process the fd could be the same file; the bridge must have made a copy"
    );
    assert_eq!(read_all_at(&got, size + 10), keymap);
    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
    // 40 kB of keymap and the registry's interface names crossed, sealed: none of it, nor
    // any 8-byte run of it, appears on the wire.
    let wire = seen.lock().unwrap().clone();
    assert!(wire.len() > 40_000, "the tap saw {} bytes", wire.len());
    for plain in [&b"xkb_keymap"[..], b"waysock-test", b"wl_seat", b"wl_shm"] {
        assert!(
            !wire.windows(plain.len()).any(|w| w == plain),
            "{} readable on the wire",
            String::from_utf8_lossy(plain)
        );
    }
}

/// The client gets its data device, and the compositor offers a selection of `mime` on it
/// (offer id [`SERVER_ID`]).
fn offer_selection(b: &mut Bridged, mime: &str) {
    b.client
        .send(&msg(DDM, 1, &[A::U(DATA_DEVICE), A::U(SEAT)]), &[]);
    b.server.expect(DDM, 1);
    let mut ev = msg(DATA_DEVICE, 0, &[A::U(SERVER_ID)]);
    ev.extend(msg(SERVER_ID, 0, &[A::S(mime)]));
    ev.extend(msg(DATA_DEVICE, 5, &[A::U(SERVER_ID)]));
    b.server.send(&ev, &[]);
    b.client.expect(DATA_DEVICE, 5);
}

#[test]
fn clipboard_pipes_are_relayed_both_ways() {
    let mut b = bridged();
    bind_globals(&mut b);
    offer_selection(&mut b, "text/plain;charset=utf-8");

    // Paste: wl_data_offer.receive(mime, fd) — the client reads, the compositor side writes.
    let (r, w) = pipe();
    b.client.send(
        &msg(SERVER_ID, 1, &[A::S("text/plain;charset=utf-8")]),
        &[&w],
    );
    drop(w);
    b.server.expect(SERVER_ID, 1);
    let far = b.server.take_fd();
    let text: Vec<u8> = b"clipboard text \xe2\x9c\x93 "
        .iter()
        .copied()
        .cycle()
        .take(300_000)
        .collect();
    let writer = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(far);
            f.write_all(&text).unwrap();
        })
    };
    assert_eq!(read_to_eof(r), text, "pasted bytes");
    writer.join().unwrap();

    // Copy: wl_data_source.send(mime, fd) — the client writes, the compositor side reads.
    b.client.send(&msg(DDM, 0, &[A::U(DATA_SOURCE)]), &[]);
    b.server.expect(DDM, 0);
    let (r, w) = pipe();
    b.server
        .send(&msg(DATA_SOURCE, 1, &[A::S("text/plain")]), &[&w]);
    drop(w);
    b.client.expect(DATA_SOURCE, 1);
    let near = b.client.take_fd();
    std::fs::File::from(near)
        .write_all(b"copied from the client")
        .unwrap();
    assert_eq!(read_to_eof(r), b"copied from the client", "copied bytes");

    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
}

/// Fills rows `rows` of a `width`×`height` XRGB8888 buffer with a pattern of `seed`.
fn paint(fd: &OwnedFd, stride: usize, rows: std::ops::Range<usize>, seed: u32) {
    for y in rows {
        let row: Vec<u8> = (0..stride / 4)
            .flat_map(|x| {
                (seed.wrapping_mul(2_654_435_761) ^ (y as u32 * 65_537 + x as u32)).to_ne_bytes()
            })
            .collect();
        let mut done = 0;
        while done < row.len() {
            done += rustix::io::pwrite(fd, &row[done..], (y * stride + done) as u64).unwrap();
        }
    }
}

#[test]
fn shm_pool_is_mirrored_and_current_after_every_commit() {
    mirrored_and_current_after_every_commit(256, 200);
}

#[test]
fn large_damage_synced_on_two_threads_leaves_no_stale_rows() {
    // 2.4 MB damaged at once: the range is split in halves sent from two threads, and the
    // half boundary (1 201 152) falls inside row 299.
    let (width, height) = (1001, 600);
    assert!(width * 4 * height >= session::PARALLEL_SYNC);
    assert_ne!((width * 4 * height / 2 / 64 * 64) % (width * 4), 0);
    mirrored_and_current_after_every_commit(width, height);
}

fn mirrored_and_current_after_every_commit(width: usize, height: usize) {
    let mut b = bridged();
    bind_globals(&mut b);
    let stride = width * 4;
    let size = stride * height;
    let pool = memfd_with(&vec![0u8; size]);
    paint(&pool, stride, 0..height, 1);

    let mut req = msg(COMPOSITOR, 0, &[A::U(SURFACE)]);
    req.extend(msg(SHM, 0, &[A::U(POOL), A::I(size as i32)]));
    b.client.send(&req, &[&pool]);
    b.server.expect(COMPOSITOR, 0);
    b.server.expect(SHM, 0);
    let mirror = b.server.take_fd();
    assert_ne!(
        rustix::fs::fstat(&mirror).unwrap().st_ino,
        rustix::fs::fstat(&pool).unwrap().st_ino,
        "the compositor side must get a mirror, not the client's file"
    );

    let frame = |b: &mut Bridged, damage: (usize, usize)| {
        let mut req = Vec::new();
        req.extend(msg(SURFACE, 1, &[A::U(BUFFER), A::I(0), A::I(0)]));
        req.extend(msg(
            SURFACE,
            9,
            &[
                A::I(0),
                A::I(damage.0 as i32),
                A::I(width as i32),
                A::I(damage.1 as i32),
            ],
        ));
        req.extend(msg(SURFACE, 6, &[]));
        b.client.send(&req, &[]);
        b.server.expect(SURFACE, 6);
    };

    b.client.send(
        &msg(
            POOL,
            0,
            &[
                A::U(BUFFER),
                A::I(0),
                A::I(width as i32),
                A::I(height as i32),
                A::I(stride as i32),
                A::U(1), // xrgb8888
            ],
        ),
        &[],
    );
    b.server.expect(POOL, 0);
    frame(&mut b, (0, height));
    assert!(
        read_all_at(&mirror, size) == read_all_at(&pool, size),
        "first frame: the mirror differs from the client's pool"
    );

    // 10 % of the rows change and are damaged, several frames in a row.
    for (i, y0) in [40usize, 100, 180, 40].into_iter().enumerate() {
        let rows = y0..y0 + height / 10;
        paint(&pool, stride, rows.clone(), 10 + i as u32);
        frame(&mut b, (rows.start, rows.len()));
        let (m, p) = (read_all_at(&mirror, size), read_all_at(&pool, size));
        let stale: Vec<usize> = (0..height)
            .filter(|y| m[y * stride..(y + 1) * stride] != p[y * stride..(y + 1) * stride])
            .collect();
        assert!(
            stale.is_empty(),
            "frame {i}: rows {stale:?} of the mirror are stale after the commit"
        );
    }

    // wl_surface.damage (surface coordinates) means the whole buffer.
    paint(&pool, stride, 0..height, 99);
    let mut req = msg(SURFACE, 1, &[A::U(BUFFER), A::I(0), A::I(0)]);
    req.extend(msg(SURFACE, 2, &[A::I(0), A::I(0), A::I(1), A::I(1)]));
    req.extend(msg(SURFACE, 6, &[]));
    b.client.send(&req, &[]);
    b.server.expect(SURFACE, 6);
    assert!(
        read_all_at(&mirror, size) == read_all_at(&pool, size),
        "surface damage: the mirror is stale"
    );
    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
}

#[test]
fn garbage_from_the_client_ends_the_session_without_a_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..20 {
        let mut b = bridged();
        let mut junk: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        if round % 2 == 0 {
            // A known object and opcode whose arguments are cut short: wl_display.get_registry
            // with no new id.
            junk.splice(0..0, msg(1, 1, &[]));
        }
        // Whatever the random part was, a header with an impossible size follows.
        junk.extend_from_slice(&[1, 0, 0, 0, 0, 0, 3, 0]);
        let _ = b.client.sock.write_all(&junk);
        // Both sessions end on their own (not because we hung up): the client's on the garbage,
        // the compositor side's because its stream was cut without a sealed close. Both with
        // an error, and the compositor sees its client hang up.
        let results = collect(&b.done, 2);
        let err_of = |side: Side| {
            let r = &results.iter().find(|(s, _)| *s == side).unwrap().1;
            r.as_ref()
                .map(|_| ())
                .expect_err("ended without an error")
                .to_string()
        };
        let client = err_of(Side::Client);
        assert!(
            !client.contains("without the far side closing"),
            "round {round}: the client session must fail on the garbage itself: {client}"
        );
        let server = err_of(Side::Server);
        assert!(
            server.contains("without the far side closing"),
            "round {round}: {server}"
        );
        b.client.expect_eof();
        b.server.expect_eof();
    }
}

#[test]
fn an_oversized_frame_from_tcp_ends_the_session() {
    let (client_peer, client_end) = UnixStream::pair().unwrap();
    let (tc, ts) = tcp_pair();
    let far = far_end(ts);
    let (tx, done) = mpsc::channel();
    spawn_session(client_end, tc, Side::Client, tx);
    let mut client = Peer::new(client_peer);
    let len = (transport::MAX_FRAME + 1) as u32;
    let mut head = vec![1u8];
    head.extend_from_slice(&len.to_le_bytes());
    // Some of the promised payload: the session must not wait to buffer it all.
    head.extend_from_slice(&[0u8; 64 * 1024]);
    far.write_record(&head).unwrap();
    let results = collect(&done, 1);
    let err = results[0]
        .1
        .as_ref()
        .expect_err("an oversized frame must end the session with an error");
    assert!(
        err.to_string().contains("bytes"),
        "the error names the size: {err}"
    );
    client.expect_eof();
    // Also an unknown frame kind.
    let (client_peer, client_end) = UnixStream::pair().unwrap();
    let (tc, ts) = tcp_pair();
    let far = far_end(ts);
    let (tx, done) = mpsc::channel();
    spawn_session(client_end, tc, Side::Client, tx);
    let mut client = Peer::new(client_peer);
    far.write_record(&[200, 4, 0, 0, 0, 1, 2, 3, 4]).unwrap();
    assert!(
        collect(&done, 1)[0].1.is_err(),
        "unknown frame kind accepted"
    );
    client.expect_eof();
}

#[test]
fn unsealed_or_altered_bytes_from_tcp_end_the_session_unread() {
    // Someone on the path injects a plain frame, or flips a bit of a sealed one: the session
    // ends before acting on either, and says why.
    let keymap_frame = Frame::MemNew {
        id: 2,
        bytes: b"xkb_keymap {}".to_vec(),
    }
    .encode();
    for tamper in [false, true] {
        let (client_peer, client_end) = UnixStream::pair().unwrap();
        let (tc, ts) = tcp_pair();
        let (tx, done) = mpsc::channel();
        spawn_session(client_end, tc, Side::Client, tx);
        let mut client = Peer::new(client_peer);
        let mut tcp = ts.tcp.try_clone().unwrap();
        if tamper {
            let sealed = SealWriter::new(Vec::new(), &ts.keys.send, ts.keys.cipher);
            sealed.write_record(&keymap_frame).unwrap();
            let mut bytes = sealed.into_inner().unwrap();
            bytes[9] ^= 0x40;
            tcp.write_all(&bytes).unwrap();
        } else {
            let mut plain = ((keymap_frame.len() + 16) as u32).to_le_bytes().to_vec();
            plain.extend_from_slice(&keymap_frame);
            plain.extend_from_slice(&[0; 16]);
            tcp.write_all(&plain).unwrap();
        }
        let results = collect(&done, 1);
        let err = results[0]
            .1
            .as_ref()
            .expect_err("an unauthenticated record must end the session");
        assert!(err.to_string().contains("failed authentication"), "{err}");
        client.expect_eof();
        drop(ts);
    }
}

#[test]
fn pipe_data_beyond_the_window_ends_the_session() {
    // A far side that ignores flow control (sends more into a pipe than was acknowledged)
    // ends its session with a clear error instead of growing our buffers. The pipe's local
    // reader never reads, so nothing is acknowledged beyond what the kernel pipe holds.
    let (client_peer, client_end) = UnixStream::pair().unwrap();
    let (tc, ts) = tcp_pair();
    let far = far_end(ts);
    let (tx, done) = mpsc::channel();
    spawn_session(client_end, tc, Side::Client, tx);
    let mut client = Peer::new(client_peer);
    far.write_record(
        &Frame::PipeNew {
            id: 3,
            dir: transport::PipeDir::PeerReads,
        }
        .encode(),
    )
    .unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let writer = std::thread::spawn(move || {
        for _ in 0..3 * (transport::PIPE_WINDOW as usize) / chunk.len() {
            let f = Frame::PipeData {
                id: 3,
                bytes: chunk.clone(),
            };
            if far.write_record(&f.encode()).is_err() {
                break;
            }
        }
        far
    });
    let results = collect(&done, 1);
    let err = results[0]
        .1
        .as_ref()
        .expect_err("data beyond the window must end the session");
    assert!(err.to_string().contains("unacknowledged"), "{err}");
    client.expect_eof();
    drop(writer.join().unwrap());
}

#[test]
fn clipboard_stream_and_shm_updates_share_the_connection_without_corruption() {
    let mut b = bridged();
    bind_globals(&mut b);
    // A copy from the client: the compositor side reads it slowly at first, so the stream
    // backs up while the client also commits big shm frames.
    b.client.send(&msg(DDM, 0, &[A::U(DATA_SOURCE)]), &[]);
    b.server.expect(DDM, 0);
    let (r, w) = pipe();
    b.server
        .send(&msg(DATA_SOURCE, 1, &[A::S("text/plain")]), &[&w]);
    drop(w);
    b.client.expect(DATA_SOURCE, 1);
    let near = b.client.take_fd();
    let text: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    let writer = {
        let text = text.clone();
        std::thread::spawn(move || {
            let _ = std::fs::File::from(near).write_all(&text);
        })
    };
    let (tx, pasted) = mpsc::channel();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut f = std::fs::File::from(r);
        let mut out = Vec::new();
        let _ = tx.send(f.read_to_end(&mut out).map(|_| out));
    });

    let (width, height) = (1024usize, 1024usize);
    let stride = width * 4;
    let size = stride * height;
    let pool = memfd_with(&vec![0u8; size]);
    let mut req = msg(COMPOSITOR, 0, &[A::U(SURFACE)]);
    req.extend(msg(SHM, 0, &[A::U(POOL), A::I(size as i32)]));
    req.extend(msg(
        POOL,
        0,
        &[
            A::U(BUFFER),
            A::I(0),
            A::I(width as i32),
            A::I(height as i32),
            A::I(stride as i32),
            A::U(1),
        ],
    ));
    b.client.send(&req, &[&pool]);
    b.server.expect(SHM, 0);
    let mirror = b.server.take_fd();
    for frame in 0..8u32 {
        paint(&pool, stride, 0..height, 1000 + frame);
        let mut req = msg(SURFACE, 1, &[A::U(BUFFER), A::I(0), A::I(0)]);
        req.extend(msg(
            SURFACE,
            9,
            &[A::I(0), A::I(0), A::I(width as i32), A::I(height as i32)],
        ));
        req.extend(msg(SURFACE, 6, &[]));
        b.client.send(&req, &[]);
        b.server.expect(SURFACE, 6);
        assert!(
            read_all_at(&mirror, size) == read_all_at(&pool, size),
            "frame {frame}: the mirror is stale"
        );
    }
    let got = pasted
        .recv_timeout(Duration::from_secs(30))
        .expect("the copied stream did not end")
        .expect("read the copied stream");
    writer.join().unwrap();
    assert!(
        got == text,
        "copied stream: {} of {} bytes, or different",
        got.len(),
        text.len()
    );
    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
}

/// Double buffering: a client alternates two buffers, repairs the one it reuses for the last
/// two frames' changes, and damages only this frame's rows (Wayland damage is relative to the
/// surface's previous content). The mirror of the reused buffer must still be current.
#[test]
fn double_buffered_client_gets_no_stale_rows() {
    const BUFFER_B: u32 = 13;
    let mut b = bridged();
    bind_globals(&mut b);
    let (width, height) = (128usize, 100usize);
    let stride = width * 4;
    let size = stride * height;
    let pool = memfd_with(&vec![0u8; 2 * size]);
    let mut req = msg(COMPOSITOR, 0, &[A::U(SURFACE)]);
    req.extend(msg(SHM, 0, &[A::U(POOL), A::I(2 * size as i32)]));
    b.client.send(&req, &[&pool]);
    b.server.expect(COMPOSITOR, 0);
    b.server.expect(SHM, 0);
    let mirror = b.server.take_fd();
    for (id, offset) in [(BUFFER, 0usize), (BUFFER_B, size)] {
        b.client.send(
            &msg(
                POOL,
                0,
                &[
                    A::U(id),
                    A::I(offset as i32),
                    A::I(width as i32),
                    A::I(height as i32),
                    A::I(stride as i32),
                    A::U(1),
                ],
            ),
            &[],
        );
        b.server.expect(POOL, 0);
    }
    let commit = |b: &mut Bridged, buffer: u32, rows: std::ops::Range<usize>| {
        let mut req = msg(SURFACE, 1, &[A::U(buffer), A::I(0), A::I(0)]);
        req.extend(msg(
            SURFACE,
            9,
            &[
                A::I(0),
                A::I(rows.start as i32),
                A::I(width as i32),
                A::I(rows.len() as i32),
            ],
        ));
        req.extend(msg(SURFACE, 6, &[]));
        b.client.send(&req, &[]);
        b.server.expect(SURFACE, 6);
    };
    // Frames 1 and 2: each buffer drawn whole.
    paint(&pool, stride, 0..height, 1);
    commit(&mut b, BUFFER, 0..height);
    paint(&pool, stride, height..2 * height, 1);
    commit(&mut b, BUFFER_B, 0..height);
    // Frame 3 changes rows 10..20 (in B)... then frame 4 reuses A: A is repaired for rows
    // 10..20 (frame 3's change) and 60..70 (this frame's), but only 60..70 are damaged.
    paint(&pool, stride, height + 10..height + 20, 3);
    commit(&mut b, BUFFER_B, 10..20);
    paint(&pool, stride, 10..20, 3);
    paint(&pool, stride, 60..70, 4);
    commit(&mut b, BUFFER, 60..70);
    let (m, p) = (read_all_at(&mirror, size), read_all_at(&pool, size));
    let stale: Vec<usize> = (0..height)
        .filter(|y| m[y * stride..(y + 1) * stride] != p[y * stride..(y + 1) * stride])
        .collect();
    assert!(
        stale.is_empty(),
        "rows {stale:?} of buffer A's mirror are stale"
    );
    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
}

/// A client that asks for a paste, then waits for a Wayland event before it reads the pipe
/// (as `wl_display_roundtrip` between `receive` and `read` does): paste data larger than a
/// pipe's buffer must not hold back the client's Wayland events.
#[test]
fn paste_larger_than_a_pipe_does_not_block_wayland_events() {
    let mut b = bridged();
    bind_globals(&mut b);
    offer_selection(&mut b, "text/plain");

    let (r, w) = pipe();
    b.client
        .send(&msg(SERVER_ID, 1, &[A::S("text/plain")]), &[&w]);
    drop(w);
    b.server.expect(SERVER_ID, 1);
    let far = b.server.take_fd();
    // The compositor side writes 8 MiB: far more than the client's 64 KiB pipe holds, and
    // more than the bridge may buffer for one pipe (its flow-control window)...
    let text: Vec<u8> = (0..8 << 20).map(|i| (i % 251) as u8).collect();
    let writer = {
        let text = text.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(far);
            f.write_all(&text).unwrap();
        })
    };
    // ...then sends an event (another selection offer) that the client waits for first.
    std::thread::sleep(Duration::from_millis(200));
    b.server.send(&msg(DATA_DEVICE, 5, &[A::U(0)]), &[]);
    b.client.expect(DATA_DEVICE, 5);
    assert_eq!(read_to_eof(r), text, "pasted bytes");
    writer.join().unwrap();
    for (side, r) in b.finish() {
        assert!(r.is_ok(), "{side:?} session: {r:?}");
    }
}

#[test]
fn a_far_side_that_shrinks_a_mirror_or_moves_outside_it_ends_the_session_by_name() {
    // The far end announces a mirror (mapped here), then either shrinks it, which no Wayland
    // pool ever does, or moves rows from beyond its end: the session ends, naming what.
    let cases: [(Frame, &str); 2] = [
        (
            Frame::ShmSize { id: 5, size: 4096 },
            "shrunk from 131072 to 4096",
        ),
        (
            Frame::ShmMove {
                id: 5,
                start: 0,
                rows: 64,
                stride: 4096,
                width: 4096,
                dy: 1,
                dx: 0,
            },
            "reaches beyond its 131072-byte pool",
        ),
    ];
    for (frame, says) in cases {
        let (compositor_peer, compositor_end) = UnixStream::pair().unwrap();
        let (tc, ts) = tcp_pair();
        let far = far_end(tc);
        let (tx, done) = mpsc::channel();
        spawn_session(compositor_end, ts, Side::Server, tx);
        let mut compositor = Peer::new(compositor_peer);
        let mut bytes = Frame::ShmNew {
            id: 5,
            size: 128 * 1024,
        }
        .encode();
        bytes.extend_from_slice(&frame.encode());
        far.write_record(&bytes).unwrap();
        let results = collect(&done, 1);
        let err = results[0].1.as_ref().expect_err("the session must end");
        assert!(err.to_string().contains(says), "{says}: {err}");
        compositor.expect_eof();
    }
}
