//! Authentication of the two bridge ends (SPEC §8): both prove they hold the same secret, the
//! whole content of a token file, by challenge-response. The secret never crosses the wire.
//!
//! ```text
//! connector → listener   "WSB3" nonce_c[32]
//! listener  → connector  "WSB3" nonce_s[32] HMAC-SHA256(secret, "waysock-bridge listener" | nonce_c | nonce_s)
//! connector → listener   HMAC-SHA256(secret, "waysock-bridge connector" | nonce_s | nonce_c)
//! listener  → connector  0x01 (accepted)
//! then, both ends:       key c→s = HMAC-SHA256(secret, "waysock-bridge key: connector to listener" | nonce_c | nonce_s)
//!                        key s→c = HMAC-SHA256(secret, "waysock-bridge key: listener to connector" | nonce_c | nonce_s)
//! ```
//! A listener that ends a handshake early says why before it closes, so the connector can
//! tell its user: in place of its greeting `"WSB-"` and a [`Refusal`] code, or in place of the
//! `0x01` the code alone (`0x00`: our proof was wrong; `0x02`: busy; `0x03`: timed out). A
//! connector of an older version reads that as a closed connection.
//! Each MAC covers both nonces and the sender's role, so a reply cannot be replayed from
//! another session or reflected back at its sender. MACs are compared in constant time. Any
//! failure ends the handshake with nothing relayed. The nonces are always 32 bytes and the
//! labels differ, so proofs and keys never share an input. After the handshake everything is
//! sealed with the two keys ([`crate::channel`]). There is no forward secrecy: whoever later
//! learns the secret can derive the keys of a recorded session.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::channel::SessionKeys;

/// Shortest accepted secret.
pub const MIN_SECRET: usize = 16;
/// Longest accepted token file (a secret, not a document).
pub const MAX_SECRET: usize = 64 * 1024;
/// The greeting: "WSB" and the channel protocol's version (3: sealed records, pipes with
/// credit acks).
const MAGIC: &[u8; 4] = b"WSB3";

/// What the listener sends in place of its greeting when it ends the handshake at once; one
/// [`Refusal`] code follows.
const REFUSAL: &[u8; 4] = b"WSB-";

/// What a greeting that is not ours is.
fn greeting_error(got: &[u8]) -> AuthError {
    match got {
        [b'W', b'S', b'B', v] => AuthError::Version(*v),
        _ => AuthError::NotABridge,
    }
}
const NONCE: usize = 32;
const MAC: usize = 32;
/// The connector's greeting: the magic and its nonce.
pub const GREETING_LEN: usize = 4 + NONCE;
/// The connector's proof.
pub const PROOF_LEN: usize = MAC;

/// The status byte after the connector's proof: accepted.
const ACCEPTED: u8 = 1;
/// The status byte after the connector's proof: the proof was wrong.
const PROOF_REJECTED: u8 = 0;

/// Why a listener ended a handshake before it was done, as it tells the connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many unauthenticated connections were open: the oldest were shed to make room.
    Busy,
    /// The handshake did not finish within the listener's deadline.
    TimedOut,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Refusal::Busy => 2,
            Refusal::TimedOut => 3,
        }
    }

    fn from_code(code: u8) -> Option<Refusal> {
        match code {
            2 => Some(Refusal::Busy),
            3 => Some(Refusal::TimedOut),
            _ => None,
        }
    }

    /// What the listener sends before closing: `replied` tells whether its greeting (and so
    /// the connector's wait for the status byte) has gone out already.
    pub fn message(self, replied: bool) -> Vec<u8> {
        if replied {
            vec![self.code()]
        } else {
            let mut m = REFUSAL.to_vec();
            m.push(self.code());
            m
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Busy => {
                "the bridge is busy: too many unauthenticated connections are open (a flood?) \
                 and it shed this one; try again"
            }
            Refusal::TimedOut => {
                "the bridge timed out waiting for our side of the handshake (a slow or stalled \
                 link, or a bridge overloaded by a flood); try again"
            }
        })
    }
}

/// The shared secret, read from a token file. Never printed.
pub struct Token {
    secret: Vec<u8>,
}

impl Drop for Token {
    fn drop(&mut self) {
        // Best effort: do not leave the secret in freed memory.
        self.secret.fill(0);
        std::hint::black_box(&self.secret);
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({} bytes, redacted)", self.secret.len())
    }
}

/// Why a token file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It could not be read.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Group or others can read it.
    #[error("token file {path} has mode {mode:04o}: it must be 0600 (or stricter); run `chmod 600 {path}`")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not ours.
    #[error("token file {path} belongs to uid {owner}, not to us (uid {uid})")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        uid: u32,
    },
    /// Not a regular file.
    #[error("token file {path} is not a regular file")]
    NotFile {
        /// The file.
        path: PathBuf,
    },
    /// Too short to be a secret, or absurdly long.
    #[error("token file {path} holds {len} bytes; a secret needs {MIN_SECRET}..={MAX_SECRET} (e.g. `head -c 32 /dev/urandom > {path}`)")]
    Length {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
}

impl Token {
    /// Reads and checks a token file: a regular file of ours, mode 0600 or stricter, holding
    /// 16 bytes to 64 KiB; its whole content is the secret.
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_o_nonblock() | (rustix::fs::OFlags::NOFOLLOW.bits() as i32))
            .open(path)
            .map_err(io)?;
        let md = file.metadata().map_err(io)?;
        if !md.is_file() {
            return Err(TokenError::NotFile {
                path: path.to_path_buf(),
            });
        }
        let uid = rustix::process::geteuid().as_raw();
        if md.uid() != uid {
            return Err(TokenError::Owner {
                path: path.to_path_buf(),
                owner: md.uid(),
                uid,
            });
        }
        let mode = md.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Mode {
                path: path.to_path_buf(),
                mode,
            });
        }
        if !(MIN_SECRET as u64..=MAX_SECRET as u64).contains(&md.len()) {
            return Err(TokenError::Length {
                path: path.to_path_buf(),
                len: md.len(),
            });
        }
        let mut secret = Vec::with_capacity(md.len() as usize);
        (&mut file)
            .take(MAX_SECRET as u64 + 1)
            .read_to_end(&mut secret)
            .map_err(io)?;
        if !(MIN_SECRET..=MAX_SECRET).contains(&secret.len()) {
            return Err(TokenError::Length {
                path: path.to_path_buf(),
                len: secret.len() as u64,
            });
        }
        Ok(Token { secret })
    }

    /// A token from bytes (tests, and callers that keep the secret elsewhere).
    pub fn from_bytes(secret: &[u8]) -> Option<Token> {
        (MIN_SECRET..=MAX_SECRET)
            .contains(&secret.len())
            .then(|| Token {
                secret: secret.to_vec(),
            })
    }

    /// HMAC over `label | first | second`; the two nonces are always [`NONCE`] bytes, which
    /// keeps the concatenation unambiguous.
    fn hmac(&self, label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
        debug_assert!(first.len() == NONCE && second.len() == NONCE);
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable_hmac());
        m.update(label);
        m.update(first);
        m.update(second);
        m
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> [u8; MAC] {
        self.hmac(label, first, second)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Checks a peer's proof in constant time (the `hmac` crate's `verify_slice`).
    fn verify(&self, proof: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> bool {
        self.hmac(label, first, second).verify_slice(proof).is_ok()
    }
}

/// HMAC accepts keys of any length; this cannot happen.
fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 rejected a key (it accepts any length)")
}

/// `O_NONBLOCK`, so a FIFO planted as the token file cannot hang us in `open` (the file is also
/// opened `O_NOFOLLOW`: a symlink there is refused with ELOOP).
fn libc_o_nonblock() -> i32 {
    rustix::fs::OFlags::NONBLOCK.bits() as i32
}

/// Which end of the handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the TCP connection.
    Listener,
    /// The end that made it.
    Connector,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The peer does not speak this protocol.
    #[error("the peer is not a waysock bridge (bad greeting)")]
    NotABridge,
    /// The peer is a waysock bridge speaking another channel protocol version.
    #[error(
        "the peer is a waysock bridge of another protocol version ({} here, {} there): run \
         the same waysock version on both ends",
        char::from(MAGIC[3]),
        char::from(*.0)
    )]
    Version(u8),
    /// The peer's proof was wrong: it does not hold our secret.
    #[error("the peer does not hold the same token (proof rejected)")]
    BadProof,
    /// The listener rejected our proof.
    #[error("the listener rejected our token")]
    Rejected,
    /// The listener ended the handshake early and said why.
    #[error("{0}")]
    Refused(Refusal),
    /// The listener closed the connection before answering our greeting, without a reason
    /// (a bridge of an older version refuses that way when it is busy).
    #[error(
        "the listener closed the connection without answering our greeting (a busy bridge of \
         an older version, or not a waysock bridge)"
    )]
    NoAnswer,
    /// The peer hung up mid-handshake: typically it found our proof wrong (a different token).
    #[error("the peer closed the connection during the handshake (it holds a different token?)")]
    PeerClosed,
    /// The handshake did not finish within our deadline.
    #[error("handshake timed out after {} s", .0.as_secs_f32())]
    TimedOut(std::time::Duration),
    /// The connection failed or timed out.
    #[error("handshake I/O: {0}")]
    Io(io::Error),
}

impl From<io::Error> for AuthError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => AuthError::PeerClosed,
            _ => AuthError::Io(e),
        }
    }
}

/// The session's keys (connector → listener, listener → connector) from the secret and the
/// connector's and listener's nonces. HMAC-SHA256 keyed with the secret is the PRF; distinct
/// labels keep the keys apart from each other and from the proofs.
fn session_keys(token: &Token, connector: &[u8], listener: &[u8]) -> ([u8; 32], [u8; 32]) {
    (
        token.mac(
            b"waysock-bridge key: connector to listener",
            connector,
            listener,
        ),
        token.mac(
            b"waysock-bridge key: listener to connector",
            connector,
            listener,
        ),
    )
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    let mut filled = 0;
    while filled < NONCE {
        let got = rustix::rand::getrandom(&mut n[filled..], rustix::rand::GetRandomFlags::empty())
            .map_err(io::Error::from)?;
        filled += got;
    }
    Ok(n)
}

/// The label of the listener's proof.
const L_LISTENER: &[u8] = b"waysock-bridge listener";
/// The label of the connector's proof.
const L_CONNECTOR: &[u8] = b"waysock-bridge connector";

/// Runs the handshake on `stream` (set a read timeout on it first). `Ok` means the peer holds
/// the same secret and Wayland bytes may flow, sealed with the returned keys (see
/// [`crate::channel`]): one per direction, derived from the secret and both nonces, so fresh
/// for every connection.
pub fn handshake<S: Read + Write>(
    stream: &mut S,
    token: &Token,
    role: Role,
) -> Result<SessionKeys, AuthError> {
    match role {
        Role::Connector => {
            let mine = nonce()?;
            let mut hello = Vec::with_capacity(4 + NONCE);
            hello.extend_from_slice(MAGIC);
            hello.extend_from_slice(&mine);
            stream.write_all(&hello)?;
            let mut reply = [0u8; 4 + NONCE + MAC];
            stream
                .read_exact(&mut reply[..4])
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                        AuthError::NoAnswer
                    }
                    _ => AuthError::from(e),
                })?;
            if &reply[..4] == REFUSAL {
                let mut code = [0u8; 1];
                stream.read_exact(&mut code)?;
                return Err(Refusal::from_code(code[0])
                    .map(AuthError::Refused)
                    .unwrap_or(AuthError::PeerClosed));
            }
            if &reply[..4] != MAGIC {
                return Err(greeting_error(&reply[..4]));
            }
            stream.read_exact(&mut reply[4..])?;
            let theirs = &reply[4..4 + NONCE];
            let proof = &reply[4 + NONCE..];
            if !token.verify(proof, L_LISTENER, &mine, theirs) {
                return Err(AuthError::BadProof);
            }
            stream.write_all(&token.mac(L_CONNECTOR, theirs, &mine))?;
            let mut ok = [0u8; 1];
            stream.read_exact(&mut ok)?;
            if ok[0] != ACCEPTED {
                return Err(Refusal::from_code(ok[0])
                    .map(AuthError::Refused)
                    .unwrap_or(AuthError::Rejected));
            }
            let (to_listener, to_connector) = session_keys(token, &mine, theirs);
            Ok(SessionKeys {
                send: to_listener,
                receive: to_connector,
            })
        }
        Role::Listener => {
            let mut hello = [0u8; GREETING_LEN];
            stream.read_exact(&mut hello)?;
            let (listening, reply) = Listening::greet(token, &hello)?;
            stream.write_all(&reply)?;
            let mut proof = [0u8; PROOF_LEN];
            stream.read_exact(&mut proof)?;
            match listening.finish(token, &proof) {
                Ok((keys, ok)) => {
                    stream.write_all(&ok)?;
                    Ok(keys)
                }
                Err((e, no)) => {
                    let _ = stream.write_all(&no);
                    Err(e)
                }
            }
        }
    }
}

/// The listener's side of the handshake as two steps with no I/O of their own, for a caller
/// that drives many handshakes from one poll loop ([`crate::gate`]); [`handshake`] runs the
/// same steps on a blocking stream.
pub struct Listening {
    mine: [u8; NONCE],
    theirs: [u8; NONCE],
}

impl Listening {
    /// Checks what has arrived of a greeting so far: a wrong magic fails as soon as its four
    /// bytes are in, without waiting for the rest.
    pub fn check_start(got: &[u8]) -> Result<(), AuthError> {
        if got.len() >= 4 && &got[..4] != MAGIC {
            return Err(greeting_error(&got[..4]));
        }
        Ok(())
    }

    /// From the connector's whole greeting: the state to finish with, and our reply to send.
    pub fn greet(
        token: &Token,
        hello: &[u8; GREETING_LEN],
    ) -> Result<(Listening, Vec<u8>), AuthError> {
        Listening::check_start(hello)?;
        let mut theirs = [0u8; NONCE];
        theirs.copy_from_slice(&hello[4..]);
        let mine = nonce()?;
        let mut reply = Vec::with_capacity(4 + NONCE + MAC);
        reply.extend_from_slice(MAGIC);
        reply.extend_from_slice(&mine);
        reply.extend_from_slice(&token.mac(L_LISTENER, &theirs, &mine));
        Ok((Listening { mine, theirs }, reply))
    }

    /// From the connector's proof: the session keys and the status byte to send, or why it
    /// failed and the status byte that says so.
    pub fn finish(
        self,
        token: &Token,
        proof: &[u8; PROOF_LEN],
    ) -> Result<(SessionKeys, [u8; 1]), (AuthError, [u8; 1])> {
        if !token.verify(proof, L_CONNECTOR, &self.mine, &self.theirs) {
            return Err((AuthError::BadProof, [PROOF_REJECTED]));
        }
        let (to_listener, to_connector) = session_keys(token, &self.theirs, &self.mine);
        Ok((
            SessionKeys {
                send: to_connector,
                receive: to_listener,
            },
            [ACCEPTED],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    type Outcome = Result<SessionKeys, AuthError>;

    fn run(a: &'static [u8], b: &'static [u8]) -> (Outcome, Outcome) {
        let (mut x, mut y) = UnixStream::pair().unwrap();
        x.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        y.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let t = std::thread::spawn(move || {
            let tok = Token::from_bytes(b).unwrap();
            handshake(&mut y, &tok, Role::Listener)
        });
        let tok = Token::from_bytes(a).unwrap();
        let r = handshake(&mut x, &tok, Role::Connector);
        drop(x);
        (r, t.join().unwrap())
    }

    #[test]
    fn same_secret_passes_both_ways() {
        let (c, l) = run(b"0123456789abcdef-secret", b"0123456789abcdef-secret");
        let (c, l) = (c.unwrap(), l.unwrap());
        // One key per direction, the same on both ends, and fresh for every connection.
        assert_eq!(c.send, l.receive);
        assert_eq!(c.receive, l.send);
        assert_ne!(c.send, c.receive);
        let (again, _) = run(b"0123456789abcdef-secret", b"0123456789abcdef-secret");
        assert_ne!(again.unwrap().send, c.send);
    }

    #[test]
    fn different_secret_fails_on_both_sides() {
        let (c, l) = run(b"0123456789abcdef-secret", b"0123456789abcdef-SECRET");
        assert!(matches!(c, Err(AuthError::BadProof)), "{c:?}");
        // The connector gave up before proving anything: the listener sees the stream end.
        assert!(l.is_err());
    }

    #[test]
    fn secret_never_on_the_wire() {
        let secret = b"very-secret-token-value";
        let (mut x, mut y) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4 + NONCE];
            y.read_exact(&mut buf).unwrap();
            seen.extend_from_slice(&buf);
            seen
        });
        let tok = Token::from_bytes(secret).unwrap();
        x.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let _ = handshake(&mut x, &tok, Role::Connector);
        let seen = t.join().unwrap();
        assert!(!seen.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn a_bridge_of_another_protocol_version_is_named_as_such() {
        let (mut x, mut y) = UnixStream::pair().unwrap();
        let mut hello = b"WSB1".to_vec();
        hello.extend_from_slice(&[7; NONCE]);
        y.write_all(&hello).unwrap();
        let tok = Token::from_bytes(b"0123456789abcdef").unwrap();
        let err = handshake(&mut x, &tok, Role::Listener).unwrap_err();
        assert!(matches!(err, AuthError::Version(b'1')), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("3 here, 1 there") && text.contains("same waysock version"),
            "{text}"
        );
    }

    #[test]
    fn garbage_greeting_is_not_a_bridge() {
        let (mut x, mut y) = UnixStream::pair().unwrap();
        y.write_all(&[0x47; 36]).unwrap();
        let tok = Token::from_bytes(b"0123456789abcdef").unwrap();
        assert!(matches!(
            handshake(&mut x, &tok, Role::Listener),
            Err(AuthError::NotABridge)
        ));
    }

    #[test]
    fn a_symlinked_token_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("waysock-tok-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let real = dir.join("real");
        std::fs::write(&real, b"0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Token::load(&real).is_ok());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Token::load(&link).unwrap_err().to_string();
        assert!(err.contains("link"), "{err}");
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Token::load(&real).unwrap_err().to_string().contains("0644"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Token::from_bytes(b"short").is_none());
        assert_eq!(
            format!("{:?}", Token::from_bytes(b"0123456789abcdef").unwrap()),
            "Token(16 bytes, redacted)"
        );
    }
}
