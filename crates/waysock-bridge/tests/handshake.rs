//! How a failed handshake is named on each side (SPEC §8): the listener finds the connector's
//! token wrong and tells it so before closing, so both name the token (not a bare I/O error or
//! a hang-up); a listener that closes on our greeting did not answer.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use waysock_bridge::auth::{handshake, AuthError, Refusal, Role, Token, GREETING_LEN};

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
    x.write_all(b"WSB4").unwrap();
    drop(x);
    let tok = Token::from_bytes(b"0123456789abcdef-secret").unwrap();
    let l = handshake(&mut y, &tok, Role::Listener);
    assert!(matches!(l, Err(AuthError::PeerClosed)), "{l:?}");
}
