//! How a failed handshake is named on each side (SPEC §8): the listener finds the connector's
//! token wrong and tells it so before closing, so both name the token (not a bare I/O error or
//! a hang-up); a listener that closes on our greeting did not answer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use waysock_bridge::auth::{handshake, AuthError, Refusal, Role, Token, GREETING_LEN};
use waysock_bridge::channel::{OpenReader, SealWriter, TAG};

fn pair() -> (UnixStream, UnixStream) {
    let (x, y) = UnixStream::pair().unwrap();
    for s in [&x, &y] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (x, y)
}

#[test]
fn different_secrets_are_named_as_the_token_on_both_sides() {
    let (mut x, mut y) = pair();
    let listener = std::thread::spawn(move || {
        let tok = Token::from_bytes(b"0123456789abcdef-listener").unwrap();
        handshake(&mut y, &tok, Role::Listener)
    });
    let tok = Token::from_bytes(b"0123456789abcdef-connector").unwrap();
    let c = handshake(&mut x, &tok, Role::Connector);
    drop(x);
    let l = listener.join().unwrap();
    assert!(matches!(c, Err(AuthError::Rejected)), "{c:?}");
    assert!(matches!(l, Err(AuthError::WrongToken)), "{l:?}");
    for (side, e) in [("connector", c.unwrap_err()), ("listener", l.unwrap_err())] {
        assert!(
            e.to_string().contains("token"),
            "the {side}'s words do not point at the token: {e}"
        );
    }
}

#[test]
fn a_listener_that_closes_on_our_greeting_did_not_answer() {
    let (mut x, mut y) = pair();
    let listener = std::thread::spawn(move || {
        let mut greeting = [0u8; GREETING_LEN];
        y.read_exact(&mut greeting).unwrap();
        // and hangs up
    });
    let tok = Token::from_bytes(b"0123456789abcdef-secret").unwrap();
    let c = handshake(&mut x, &tok, Role::Connector);
    listener.join().unwrap();
    assert!(matches!(c, Err(AuthError::NoAnswer)), "{c:?}");
}

#[test]
fn a_listener_that_refuses_before_its_greeting_is_named_with_its_reason() {
    for (refusal, words) in [
        (Refusal::Busy, "busy"),
        (Refusal::TimedOut, "timed out waiting"),
    ] {
        let (mut x, mut y) = pair();
        let listener = std::thread::spawn(move || {
            let mut greeting = [0u8; GREETING_LEN];
            y.read_exact(&mut greeting).unwrap();
            y.write_all(&refusal.message(false)).unwrap();
        });
        let tok = Token::from_bytes(b"0123456789abcdef-secret").unwrap();
        let c = handshake(&mut x, &tok, Role::Connector);
        listener.join().unwrap();
        match c {
            Err(AuthError::Refused(r)) => {
                assert_eq!(r, refusal);
                assert!(r.to_string().contains(words), "{r}");
            }
            other => panic!("{refusal:?}: {other:?}"),
        }
    }
}

#[test]
fn a_connector_that_hangs_up_mid_greeting_is_named_as_gone() {
    let (mut x, mut y) = pair();
    // Part of a greeting (shorter than GREETING_LEN), then gone.
    x.write_all(b"WSB8").unwrap();
    drop(x);
    let tok = Token::from_bytes(b"0123456789abcdef-secret").unwrap();
    let l = handshake(&mut y, &tok, Role::Listener);
    assert!(matches!(l, Err(AuthError::PeerClosed)), "{l:?}");
}

/// One end of a connection that copies every byte it sends into `wire`: with both ends tapped,
/// `wire` holds everything that crossed, in both directions.
struct Tap {
    inner: UnixStream,
    wire: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.wire
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn the_secret_never_crosses_in_a_whole_session() {
    // A completed handshake on both ends, then sealed traffic both ways carrying the secret
    // itself as data, then both closes: no 8 bytes of the secret, nor of a key, nor the
    // plaintext, cross.
    const SECRET: &[u8] = b"very-secret-token-value";
    const FROM_LISTENER: &[&[u8]] = &[b"wl_display@1.error", SECRET, &[0x5a; 5000]];
    const FROM_CONNECTOR: &[&[u8]] = &[b"wl_registry@2.bind", SECRET];
    let wire = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (x, y) = pair();
    let tap = |inner| Tap {
        inner,
        wire: wire.clone(),
    };
    let (mut x, mut y) = (tap(x), tap(y));
    let session = |stream: &mut Tap, role: Role, say: &'static [&'static [u8]]| {
        let tok = Token::from_bytes(SECRET).unwrap();
        let keys = handshake(stream, &tok, role).expect("handshake");
        let writer = SealWriter::new(
            Tap {
                inner: stream.inner.try_clone().unwrap(),
                wire: stream.wire.clone(),
            },
            &keys.send,
            keys.cipher,
        );
        for part in say {
            writer.write_record(part).unwrap();
        }
        writer.close().unwrap();
        let mut heard = Vec::new();
        OpenReader::new(&mut *stream, &keys.receive, keys.cipher)
            .read_to_end(&mut heard)
            .unwrap();
        (heard, keys.send, keys.receive)
    };
    let listener = std::thread::spawn(move || session(&mut y, Role::Listener, FROM_LISTENER));
    let (heard_c, c_send, c_receive) = session(&mut x, Role::Connector, FROM_CONNECTOR);
    let (heard_l, l_send, l_receive) = listener.join().unwrap();
    assert_eq!(heard_c, FROM_LISTENER.concat());
    assert_eq!(heard_l, FROM_CONNECTOR.concat());
    assert_eq!((c_send, c_receive), (l_receive, l_send));

    let wire = wire.lock().unwrap().clone();
    // Everything crossed through the taps: the handshake, then one sealed record (4-byte
    // length, tag) per part and per close.
    let records = FROM_LISTENER.len() + FROM_CONNECTOR.len() + 2;
    let plain: usize = FROM_LISTENER
        .iter()
        .chain(FROM_CONNECTOR)
        .map(|p| p.len())
        .sum();
    let handshake_len = wire.len() - plain - records * (4 + TAG);
    assert!(handshake_len > 0 && handshake_len < 512, "{handshake_len}");
    let seen = |needle: &[u8]| wire.windows(needle.len()).any(|w| w == needle);
    for piece in SECRET.windows(8) {
        assert!(
            !seen(piece),
            "{:?} of the secret crossed",
            String::from_utf8_lossy(piece)
        );
    }
    for key in [c_send, c_receive] {
        assert!(
            !key.windows(8).any(seen),
            "8 bytes of a session key crossed"
        );
    }
    assert!(!seen(b"wl_registry@2.bind") && !seen(b"wl_display@1.error"));
}
