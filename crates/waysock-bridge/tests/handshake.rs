//! How a failed handshake is named on each side (SPEC §8): the side that finds the proof wrong
//! says so, the other sees the peer hang up (not a bare I/O error); a listener that closes on
//! our greeting did not answer.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use waysock_bridge::auth::{handshake, AuthError, Role, Token};

fn pair() -> (UnixStream, UnixStream) {
    let (x, y) = UnixStream::pair().unwrap();
    for s in [&x, &y] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (x, y)
}

#[test]
fn different_secrets_are_a_bad_proof_here_and_a_hang_up_there() {
    let (mut x, mut y) = pair();
    let listener = std::thread::spawn(move || {
        let tok = Token::from_bytes(b"0123456789abcdef-listener").unwrap();
        handshake(&mut y, &tok, Role::Listener)
    });
    let tok = Token::from_bytes(b"0123456789abcdef-connector").unwrap();
    let c = handshake(&mut x, &tok, Role::Connector);
    drop(x);
    let l = listener.join().unwrap();
    assert!(matches!(c, Err(AuthError::BadProof)), "{c:?}");
    // The connector gave up before proving anything: the listener sees it hang up.
    assert!(matches!(l, Err(AuthError::PeerClosed)), "{l:?}");
    assert!(
        l.unwrap_err().to_string().contains("different token"),
        "the listener's words do not point at the token"
    );
}

#[test]
fn a_listener_that_closes_on_our_greeting_did_not_answer() {
    let (mut x, mut y) = pair();
    let listener = std::thread::spawn(move || {
        let mut greeting = [0u8; 36];
        y.read_exact(&mut greeting).unwrap();
        // and hangs up
    });
    let tok = Token::from_bytes(b"0123456789abcdef-secret").unwrap();
    let c = handshake(&mut x, &tok, Role::Connector);
    listener.join().unwrap();
    assert!(matches!(c, Err(AuthError::NoAnswer)), "{c:?}");
}
