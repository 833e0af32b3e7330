//! Authentication and key agreement of the two bridge ends (SPEC §8): the Noise protocol
//! framework's `NNpsk0` handshake, `Noise_NNpsk0_25519_ChaChaPoly_SHA256` (the `snow` crate),
//! whose pre-shared key is a hash of the token file's whole content. The secret never crosses
//! the wire, and every connection agrees on its keys by an ephemeral X25519 exchange, so a
//! recording of a session cannot be decrypted later even by whoever then learns the token
//! (forward secrecy).
//!
//! ```text
//! psk      = HMAC-SHA256(secret, "waysock-bridge WSB8 noise psk")
//! prologue = "waysock-bridge WSB8"
//! connector → listener   "WSB8" | Noise message 1 (psk, e):  e_c[32] offer[1] tag[16]
//! listener  → connector  "WSB8" | Noise message 2 (e, ee):   e_l[32] choice[1] tag[16]
//! (k1, k2)  = Noise Split() (raw), h = the handshake hash
//! connector → listener   HMAC-SHA256(k1, "waysock-bridge WSB8 confirm" | h)
//! listener  → connector  0x01 (accepted)
//! then, both ends:       key c→l = HMAC-SHA256(k1, "waysock-bridge WSB8 record key: connector to listener")
//!                        key l→c = HMAC-SHA256(k2, "waysock-bridge WSB8 record key: listener to connector")
//! ```
//!
//! - Message 1 carries a one-byte payload encrypted under a key mixed from the psk and `e_c`:
//!   the connector's offer (1: AES-256-GCM runs in hardware here; 0: not). The listener learns
//!   whether the connector holds the token before it does any Diffie-Hellman work, and says so
//!   at once if not (a flood of wrong handshakes costs it two hashes and one AEAD check each).
//! - Message 2's one-byte payload is the listener's choice of the record cipher
//!   ([`crate::channel::Cipher`]): 1, AES-256-GCM, when both ends run it in hardware; 0,
//!   ChaCha20-Poly1305, otherwise. Both bytes are in the transcript hash the confirmation
//!   covers, so nobody on the way can change the choice.
//! - Message 2's payload tag proves to the connector that the listener holds the token and saw
//!   message 1 unchanged (the tag covers the transcript hash).
//! - The confirmation proves to the listener that the connector took part in this exchange (it
//!   needs `e_c`'s private half): message 1 recorded from an earlier session and replayed is
//!   answered, but the replayer cannot confirm, and nothing is relayed.
//! - The record layer ([`crate::channel`]: AES-256-GCM or ChaCha20-Poly1305 as agreed here,
//!   numbered records) keeps its own
//!   framing and is keyed from the split. The split keys are used only as HMAC keys, each output
//!   under its own label, so the confirmation and the two record keys never share an input (the
//!   raw split would otherwise key both the confirmation and records, whose nonces start at 0
//!   like Noise's own transport messages). The handshake hash `h` alone would not do: it mixes
//!   in the psk but not the ephemeral exchange, so it has no forward secrecy.
//!
//! A listener that ends a handshake early says why before it closes, so the connector can tell
//! its user: in place of its greeting `"WSB-"` and a code (`0x00`: our token is not its token;
//! [`Refusal`]: busy, timed out), or in place of the `0x01` the code alone. A listener that
//! receives a greeting of another version answers with its own magic and closes, so both ends
//! name the mismatch. Any failure ends the handshake with nothing relayed.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use snow::HandshakeState;
use subtle::ConstantTimeEq;

use crate::channel::{Cipher, SessionKeys};

/// Shortest accepted secret.
pub const MIN_SECRET: usize = 16;
/// Longest accepted token file (a secret, not a document).
pub const MAX_SECRET: usize = 64 * 1024;
/// The greeting: "WSB" and the channel protocol's version (8: moves of rectangles (`dx`), the
/// record cipher offered and chosen in the Noise payloads; 7: patches packed raw, LZ4 or zstd,
/// the link's rate reported back; 6: scrolls sent as moves; 5: pool patches, a commit's
/// changed spans in few large frames; 4: the Noise handshake; 3: sealed records, pipes with
/// credit acks).
const MAGIC: &[u8; 4] = b"WSB8";

/// What the listener sends in place of its greeting when it ends the handshake at once; one
/// code follows ([`TOKEN_REJECTED`] or a [`Refusal`]).
const REFUSAL: &[u8; 4] = b"WSB-";

/// The Noise protocol this version speaks.
pub const NOISE_PROTOCOL: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";
/// Mixed into the handshake hash first: the handshake is bound to this protocol and version.
const PROLOGUE: &[u8] = b"waysock-bridge WSB8";
/// Label of the pre-shared key (HMAC-SHA256 keyed with the secret).
const L_PSK: &[u8] = b"waysock-bridge WSB8 noise psk";
/// Label of the connector's key confirmation (HMAC-SHA256 keyed with the first split key).
const L_CONFIRM: &[u8] = b"waysock-bridge WSB8 confirm";
/// Label of the connector → listener record key.
const L_TO_LISTENER: &[u8] = b"waysock-bridge WSB8 record key: connector to listener";
/// Label of the listener → connector record key.
const L_TO_CONNECTOR: &[u8] = b"waysock-bridge WSB8 record key: listener to connector";

/// An ephemeral X25519 public key.
const DH: usize = 32;
/// The AEAD tag of a Noise message's payload.
const NOISE_TAG: usize = 16;
/// A Noise handshake message of ours: an ephemeral key, a one-byte payload (the offer or the
/// choice of the record cipher) and its tag.
const NOISE_MSG: usize = DH + 1 + NOISE_TAG;
/// The offer's bit: AES-256-GCM runs in hardware on the connector.
const OFFER_AES: u8 = 1;
/// The choices: ChaCha20-Poly1305 or AES-256-GCM.
const CHOSE_CHACHA: u8 = 0;
const CHOSE_AES: u8 = 1;
/// The connector's greeting: the magic and Noise message 1.
pub const GREETING_LEN: usize = 4 + NOISE_MSG;
/// The listener's reply: the magic and Noise message 2.
pub const REPLY_LEN: usize = 4 + NOISE_MSG;
/// The connector's key confirmation.
pub const PROOF_LEN: usize = 32;

/// The status byte after the connector's confirmation: accepted.
const ACCEPTED: u8 = 1;
/// The code that says the connector's token is not the listener's (after [`REFUSAL`], or as
/// the status byte when the confirmation was wrong).
const TOKEN_REJECTED: u8 = 0;

/// What a greeting that is not ours is.
fn greeting_error(got: &[u8]) -> AuthError {
    match got {
        [b'W', b'S', b'B', v] => AuthError::Version(*v),
        _ => AuthError::NotABridge,
    }
}

/// HMAC-SHA256 of `label | data` keyed with `key`: the one PRF of this module. Labels are
/// distinct constants and `data` is empty or a 32-byte hash, so no two uses share an input.
fn prf(key: &[u8], label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| panic!("HMAC-SHA256 rejected a key (it accepts any length)"));
    m.update(label);
    m.update(data);
    m.finalize().into_bytes().into()
}

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
    /// The Noise pre-shared key derived from it.
    psk: [u8; 32],
}

impl Drop for Token {
    fn drop(&mut self) {
        // Best effort: do not leave the secret in freed memory.
        self.secret.fill(0);
        self.psk.fill(0);
        std::hint::black_box(&self.secret);
        std::hint::black_box(&self.psk);
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
            // O_NONBLOCK: a FIFO planted as the token file cannot hang us in `open`;
            // O_NOFOLLOW: a symlink there is refused with ELOOP.
            .custom_flags(
                (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW).bits() as i32,
            )
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
        Ok(Token::new(secret))
    }

    /// A token from bytes (tests, and callers that keep the secret elsewhere).
    pub fn from_bytes(secret: &[u8]) -> Option<Token> {
        (MIN_SECRET..=MAX_SECRET)
            .contains(&secret.len())
            .then(|| Token::new(secret.to_vec()))
    }

    fn new(secret: Vec<u8>) -> Token {
        let psk = prf(&secret, L_PSK, &[]);
        Token { secret, psk }
    }
}

/// Which end of the handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that accepted the TCP connection (the Noise responder).
    Listener,
    /// The end that made it (the Noise initiator).
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
    /// (Connector) The listener's reply did not authenticate: it does not hold our token, or
    /// the reply was forged or altered on the way.
    #[error(
        "the peer's handshake reply did not authenticate: it does not hold the same token \
         (or the reply was altered on the way)"
    )]
    BadProof,
    /// (Listener) The connector's greeting did not authenticate: it holds another token.
    #[error("the connector does not hold the same token (its handshake did not authenticate)")]
    WrongToken,
    /// (Listener) The connector did not confirm the session keys: a recorded handshake
    /// replayed, or one altered on the way.
    #[error("the connector did not confirm the session keys (a replayed or altered handshake)")]
    Unconfirmed,
    /// (Connector) The listener rejected our token.
    #[error("the listener rejected our token (the token files on the two ends differ)")]
    Rejected,
    /// The listener ended the handshake early and said why.
    #[error("{0}")]
    Refused(Refusal),
    /// The listener closed the connection before answering our greeting, without a reason
    /// (a bridge of an older version refuses that way when it is busy, or when our version
    /// is not its own).
    #[error(
        "the listener closed the connection without answering our greeting (a bridge of an \
         older version, or not a waysock bridge)"
    )]
    NoAnswer,
    /// The peer hung up mid-handshake.
    #[error("the peer closed the connection during the handshake (it holds a different token?)")]
    PeerClosed,
    /// The handshake did not finish within our deadline.
    #[error("handshake timed out after {} s", .0.as_secs_f32())]
    TimedOut(std::time::Duration),
    /// The Noise library failed for a reason of its own (no randomness, say).
    #[error("handshake: {0}")]
    Noise(snow::Error),
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

/// A Noise handshake state of our protocol, keyed with the token's psk.
fn noise(token: &Token, role: Role) -> Result<HandshakeState, AuthError> {
    let params = NOISE_PROTOCOL.parse().map_err(AuthError::Noise)?;
    let builder = snow::Builder::new(params)
        .prologue(PROLOGUE)
        .and_then(|b| b.psk(0, &token.psk))
        .map_err(AuthError::Noise)?;
    match role {
        Role::Connector => builder.build_initiator(),
        Role::Listener => builder.build_responder(),
    }
    .map_err(AuthError::Noise)
}

/// What a finished handshake leaves: the two record keys, the cipher they key and the
/// connector's confirmation.
struct Agreed {
    to_listener: [u8; 32],
    to_connector: [u8; 32],
    cipher: Cipher,
    confirm: [u8; PROOF_LEN],
}

impl Drop for Agreed {
    fn drop(&mut self) {
        self.to_listener.fill(0);
        self.to_connector.fill(0);
        std::hint::black_box(&self.to_listener);
        std::hint::black_box(&self.to_connector);
    }
}

impl Agreed {
    /// From a finished handshake that agreed on `cipher`: see the module's diagram.
    fn from(hs: &mut HandshakeState, cipher: Cipher) -> Agreed {
        debug_assert!(hs.is_handshake_finished());
        let (mut k1, mut k2) = hs.dangerously_get_raw_split();
        let agreed = Agreed {
            to_listener: prf(&k1, L_TO_LISTENER, &[]),
            to_connector: prf(&k2, L_TO_CONNECTOR, &[]),
            cipher,
            confirm: prf(&k1, L_CONFIRM, hs.get_handshake_hash()),
        };
        k1.fill(0);
        k2.fill(0);
        std::hint::black_box((&k1, &k2));
        agreed
    }

    fn keys(&self, role: Role) -> SessionKeys {
        match role {
            Role::Connector => SessionKeys {
                send: self.to_listener,
                receive: self.to_connector,
                cipher: self.cipher,
            },
            Role::Listener => SessionKeys {
                send: self.to_connector,
                receive: self.to_listener,
                cipher: self.cipher,
            },
        }
    }
}

/// Reads a Noise message of ours: its one-byte payload; `bad` is what a failed check means
/// here.
fn read_noise(hs: &mut HandshakeState, msg: &[u8], bad: AuthError) -> Result<u8, AuthError> {
    let mut payload = [0u8; NOISE_MSG];
    match hs.read_message(msg, &mut payload) {
        Ok(1) => Ok(payload[0]),
        // Any other payload: not something this version sends.
        Ok(_) => Err(AuthError::NotABridge),
        Err(snow::Error::Decrypt) => Err(bad),
        Err(e) => Err(AuthError::Noise(e)),
    }
}

/// Writes a Noise message of ours with the one-byte payload `byte`, after `MAGIC`.
fn write_noise(hs: &mut HandshakeState, byte: u8) -> Result<[u8; 4 + NOISE_MSG], AuthError> {
    let mut out = [0u8; 4 + NOISE_MSG];
    out[..4].copy_from_slice(MAGIC);
    let n = hs
        .write_message(&[byte], &mut out[4..])
        .map_err(AuthError::Noise)?;
    debug_assert_eq!(n, NOISE_MSG);
    Ok(out)
}

/// The connector's offer when AES runs in hardware here (`aes`).
fn offer(aes: bool) -> u8 {
    if aes {
        OFFER_AES
    } else {
        0
    }
}

/// The listener's choice for the connector's `offer`, AES running in hardware here or not.
fn choose(offer: u8, aes: bool) -> (u8, Cipher) {
    if offer & OFFER_AES != 0 && aes {
        (CHOSE_AES, Cipher::Aes256Gcm)
    } else {
        (CHOSE_CHACHA, Cipher::ChaCha20Poly1305)
    }
}

/// What the listener's `choice` means to a connector that offered `offer`.
fn chosen(choice: u8, offer: u8) -> Result<Cipher, AuthError> {
    match choice {
        CHOSE_CHACHA => Ok(Cipher::ChaCha20Poly1305),
        CHOSE_AES if offer & OFFER_AES != 0 => Ok(Cipher::Aes256Gcm),
        _ => Err(AuthError::NotABridge),
    }
}

/// Runs the handshake on `stream` (set a read timeout on it first). `Ok` means the peer holds
/// the same secret and Wayland bytes may flow, sealed with the returned keys (see
/// [`crate::channel`]): one per direction, from this connection's ephemeral exchange.
pub fn handshake<S: Read + Write>(
    stream: &mut S,
    token: &Token,
    role: Role,
) -> Result<SessionKeys, AuthError> {
    handshake_as(stream, token, role, Cipher::aes_in_hardware())
}

/// [`handshake`], AES running in hardware here or not (`aes`).
fn handshake_as<S: Read + Write>(
    stream: &mut S,
    token: &Token,
    role: Role,
    aes: bool,
) -> Result<SessionKeys, AuthError> {
    match role {
        Role::Connector => {
            let mut hs = noise(token, Role::Connector)?;
            let offered = offer(aes);
            stream.write_all(&write_noise(&mut hs, offered)?)?;
            let mut reply = [0u8; REPLY_LEN];
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
                return Err(refused(code[0]).unwrap_or(AuthError::PeerClosed));
            }
            if &reply[..4] != MAGIC {
                return Err(greeting_error(&reply[..4]));
            }
            stream.read_exact(&mut reply[4..])?;
            let choice = read_noise(&mut hs, &reply[4..], AuthError::BadProof)?;
            let cipher = chosen(choice, offered)?;
            let agreed = Agreed::from(&mut hs, cipher);
            stream.write_all(&agreed.confirm)?;
            let mut ok = [0u8; 1];
            stream.read_exact(&mut ok)?;
            if ok[0] != ACCEPTED {
                return Err(refused(ok[0]).unwrap_or(AuthError::Rejected));
            }
            Ok(agreed.keys(Role::Connector))
        }
        Role::Listener => {
            let mut hello = [0u8; GREETING_LEN];
            let said = |stream: &mut S, d: Dismissal| {
                let _ = stream.write_all(&d.say);
                d.error
            };
            stream.read_exact(&mut hello[..4])?;
            if let Err(d) = Listening::check_start(&hello[..4]) {
                return Err(said(stream, d));
            }
            stream.read_exact(&mut hello[4..])?;
            let (listening, reply) =
                Listening::greet_as(token, &hello, aes).map_err(|d| said(stream, d))?;
            stream.write_all(&reply)?;
            let mut proof = [0u8; PROOF_LEN];
            stream.read_exact(&mut proof)?;
            match listening.finish(&proof) {
                Ok((keys, ok)) => {
                    stream.write_all(&ok)?;
                    Ok(keys)
                }
                Err(d) => Err(said(stream, d)),
            }
        }
    }
}

/// A connector's greeting with `token`, for tests that stop a handshake after it.
#[cfg(test)]
pub(crate) fn test_greeting(token: &Token) -> [u8; GREETING_LEN] {
    let mut hs = noise(token, Role::Connector).unwrap();
    write_noise(&mut hs, offer(Cipher::aes_in_hardware())).unwrap()
}

/// What a listener's refusal code means to the connector.
fn refused(code: u8) -> Option<AuthError> {
    match code {
        TOKEN_REJECTED => Some(AuthError::Rejected),
        c => Refusal::from_code(c).map(AuthError::Refused),
    }
}

/// A handshake the listener ends: why, and what to tell the connector before closing (best
/// effort; it may be empty).
#[derive(Debug)]
pub struct Dismissal {
    /// Why, for the listener's log.
    pub error: AuthError,
    /// The bytes that tell the connector.
    pub say: Vec<u8>,
}

impl Dismissal {
    fn new(error: AuthError, say: &[u8]) -> Dismissal {
        Dismissal {
            error,
            say: say.to_vec(),
        }
    }
}

/// The listener's side of the handshake as steps with no I/O of their own, for a caller that
/// drives many handshakes from one poll loop ([`crate::gate`]); [`handshake`] runs the same
/// steps on a blocking stream.
pub struct Listening {
    agreed: Agreed,
}

impl Listening {
    /// Checks what has arrived of a greeting so far: a wrong magic fails as soon as its four
    /// bytes are in, without waiting for the rest. A bridge of another version is answered
    /// with our magic, so that it can name the mismatch too.
    pub fn check_start(got: &[u8]) -> Result<(), Dismissal> {
        if got.len() >= 4 && &got[..4] != MAGIC {
            return Err(match greeting_error(&got[..4]) {
                e @ AuthError::Version(_) => Dismissal::new(e, MAGIC),
                e => Dismissal::new(e, &[]),
            });
        }
        Ok(())
    }

    /// From the connector's whole greeting: the state to finish with, and our reply to send.
    /// A greeting made with another token is refused here, before any Diffie-Hellman work.
    pub fn greet(
        token: &Token,
        hello: &[u8; GREETING_LEN],
    ) -> Result<(Listening, [u8; REPLY_LEN]), Dismissal> {
        Listening::greet_as(token, hello, Cipher::aes_in_hardware())
    }

    /// [`Listening::greet`], AES running in hardware here or not (`aes`).
    fn greet_as(
        token: &Token,
        hello: &[u8; GREETING_LEN],
        aes: bool,
    ) -> Result<(Listening, [u8; REPLY_LEN]), Dismissal> {
        Listening::check_start(hello)?;
        let internal = |e| Dismissal::new(e, &[]);
        let mut hs = noise(token, Role::Listener).map_err(internal)?;
        let offered =
            read_noise(&mut hs, &hello[4..], AuthError::WrongToken).map_err(|e| match e {
                AuthError::WrongToken => Dismissal::new(
                    e,
                    &[
                        REFUSAL[0],
                        REFUSAL[1],
                        REFUSAL[2],
                        REFUSAL[3],
                        TOKEN_REJECTED,
                    ],
                ),
                e => Dismissal::new(e, &[]),
            })?;
        let (choice, cipher) = choose(offered, aes);
        let reply = write_noise(&mut hs, choice).map_err(internal)?;
        Ok((
            Listening {
                agreed: Agreed::from(&mut hs, cipher),
            },
            reply,
        ))
    }

    /// From the connector's confirmation (compared in constant time): the session keys and
    /// the status byte to send, or why it failed and the status byte that says so.
    pub fn finish(self, proof: &[u8; PROOF_LEN]) -> Result<(SessionKeys, [u8; 1]), Dismissal> {
        if !bool::from(self.agreed.confirm.ct_eq(proof)) {
            return Err(Dismissal::new(AuthError::Unconfirmed, &[TOKEN_REJECTED]));
        }
        Ok((self.agreed.keys(Role::Listener), [ACCEPTED]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::sync::{Arc, Mutex};

    type Outcome = Result<SessionKeys, AuthError>;

    const SECRET: &[u8] = b"0123456789abcdef-secret";

    fn pair() -> (UnixStream, UnixStream) {
        let (x, y) = UnixStream::pair().unwrap();
        for s in [&x, &y] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
        }
        (x, y)
    }

    /// A stream that keeps a copy of every byte read from and written to it: the wire.
    struct Tap<S> {
        inner: S,
        wire: Arc<Mutex<Vec<u8>>>,
        sent: Vec<u8>,
    }

    impl<S: Read> Read for Tap<S> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.wire
                .lock()
                .map_err(|_| io::Error::other("tap poisoned"))?
                .extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    impl<S: Write> Write for Tap<S> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = self.inner.write(buf)?;
            self.wire
                .lock()
                .map_err(|_| io::Error::other("tap poisoned"))?
                .extend_from_slice(&buf[..n]);
            self.sent.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    /// A full handshake between a connector holding `a` and a listener holding `b`; the
    /// connector's side is tapped: (its outcome, the listener's, every byte both ways, what the
    /// connector sent).
    fn run_tapped(a: &'static [u8], b: &'static [u8]) -> (Outcome, Outcome, Vec<u8>, Vec<u8>) {
        let (x, mut y) = pair();
        let t = std::thread::spawn(move || {
            let tok = Token::from_bytes(b).unwrap();
            handshake(&mut y, &tok, Role::Listener)
        });
        let tok = Token::from_bytes(a).unwrap();
        let wire = Arc::new(Mutex::new(Vec::new()));
        let mut tap = Tap {
            inner: x,
            wire: Arc::clone(&wire),
            sent: Vec::new(),
        };
        let r = handshake(&mut tap, &tok, Role::Connector);
        let sent = std::mem::take(&mut tap.sent);
        drop(tap);
        let l = t.join().unwrap();
        let wire = wire.lock().unwrap().clone();
        (r, l, wire, sent)
    }

    fn run(a: &'static [u8], b: &'static [u8]) -> (Outcome, Outcome) {
        let (c, l, _, _) = run_tapped(a, b);
        (c, l)
    }

    #[test]
    fn same_secret_passes_and_every_session_has_keys_of_its_own() {
        let (c, l) = run(SECRET, SECRET);
        let (c, l) = (c.unwrap(), l.unwrap());
        // One key per direction, the same on both ends.
        assert_eq!(c.send, l.receive);
        assert_eq!(c.receive, l.send);
        assert_ne!(c.send, c.receive);
        // A second session between the same ends agrees on other keys (fresh ephemerals).
        let (again, _) = run(SECRET, SECRET);
        let again = again.unwrap();
        assert_ne!(again.send, c.send);
        assert_ne!(again.receive, c.receive);
    }

    #[test]
    fn aes_is_chosen_only_when_both_ends_run_it_in_hardware_and_keys_work_either_way() {
        for (connector_aes, listener_aes, want) in [
            (true, true, Cipher::Aes256Gcm),
            (true, false, Cipher::ChaCha20Poly1305),
            (false, true, Cipher::ChaCha20Poly1305),
            (false, false, Cipher::ChaCha20Poly1305),
        ] {
            let (mut x, mut y) = pair();
            let t = std::thread::spawn(move || {
                let tok = Token::from_bytes(SECRET).unwrap();
                handshake_as(&mut y, &tok, Role::Listener, listener_aes)
            });
            let tok = Token::from_bytes(SECRET).unwrap();
            let c = handshake_as(&mut x, &tok, Role::Connector, connector_aes).unwrap();
            let l = t.join().unwrap().unwrap();
            assert_eq!((c.cipher, l.cipher), (want, want));
            // What one end seals, the other opens.
            let w = crate::channel::SealWriter::new(Vec::new(), &c.send, c.cipher);
            w.write_record(b"pixels").unwrap();
            let wire = w.into_inner().unwrap();
            let mut got = [0u8; 6];
            crate::channel::OpenReader::new(&wire[..], &l.receive, l.cipher)
                .read_exact(&mut got)
                .unwrap();
            assert_eq!(&got, b"pixels");
        }
    }

    #[test]
    fn a_listener_that_picks_aes_unoffered_or_an_unknown_cipher_is_not_a_bridge() {
        assert!(matches!(chosen(CHOSE_AES, 0), Err(AuthError::NotABridge)));
        assert!(matches!(chosen(7, OFFER_AES), Err(AuthError::NotABridge)));
        assert_eq!(chosen(CHOSE_AES, OFFER_AES).unwrap(), Cipher::Aes256Gcm);
        assert_eq!(
            chosen(CHOSE_CHACHA, OFFER_AES).unwrap(),
            Cipher::ChaCha20Poly1305
        );
        assert_eq!(choose(OFFER_AES | 0x80, true).1, Cipher::Aes256Gcm);
        assert_eq!(choose(0x80, true).1, Cipher::ChaCha20Poly1305);
    }

    #[test]
    fn a_different_secret_is_refused_by_the_listener_and_named_on_both_sides() {
        let (c, l) = run(SECRET, b"0123456789abcdef-SECRET");
        assert!(matches!(c, Err(AuthError::Rejected)), "{c:?}");
        assert!(c.unwrap_err().to_string().contains("token"));
        assert!(matches!(l, Err(AuthError::WrongToken)), "{l:?}");
        assert!(l.unwrap_err().to_string().contains("token"));
    }

    #[test]
    fn neither_the_secret_nor_anything_derived_from_it_is_on_the_wire() {
        let (c, _, wire, _) = run_tapped(SECRET, SECRET);
        let keys = c.unwrap();
        let tok = Token::from_bytes(SECRET).unwrap();
        for (what, needle) in [
            ("the secret", SECRET),
            ("the psk", &tok.psk[..]),
            ("a send key", &keys.send[..]),
            ("a receive key", &keys.receive[..]),
        ] {
            assert!(
                !wire.windows(16).any(|w| needle.windows(16).any(|n| n == w)),
                "16 bytes of {what} crossed the wire"
            );
        }
        // Greeting, reply, confirmation and status: nothing more.
        assert_eq!(wire.len(), GREETING_LEN + REPLY_LEN + PROOF_LEN + 1);
    }

    #[test]
    fn we_speak_plain_noise_nnpsk0() {
        // A bare `snow` initiator of the named protocol, the psk and prologue as documented,
        // completes the handshake with our listener: the wire is Noise's, not a variant.
        let (mut x, mut y) = pair();
        let t = std::thread::spawn(move || {
            let tok = Token::from_bytes(SECRET).unwrap();
            handshake(&mut y, &tok, Role::Listener)
        });
        let tok = Token::from_bytes(SECRET).unwrap();
        let psk = prf(SECRET, b"waysock-bridge WSB8 noise psk", &[]);
        let mut hs = snow::Builder::new(NOISE_PROTOCOL.parse().unwrap())
            .prologue(b"waysock-bridge WSB8")
            .unwrap()
            .psk(0, &psk)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut msg = [0u8; 128];
        // The offer: ChaCha20-Poly1305 only (no AES in hardware).
        let n = hs.write_message(&[0], &mut msg).unwrap();
        assert_eq!(n, NOISE_MSG);
        x.write_all(b"WSB8").unwrap();
        x.write_all(&msg[..n]).unwrap();
        let mut reply = [0u8; REPLY_LEN];
        x.read_exact(&mut reply).unwrap();
        assert_eq!(&reply[..4], b"WSB8");
        let mut payload = [0u8; 64];
        // The choice: ChaCha20-Poly1305, the only cipher offered.
        assert_eq!(hs.read_message(&reply[4..], &mut payload).unwrap(), 1);
        assert_eq!(payload[0], CHOSE_CHACHA);
        let (k1, _) = hs.dangerously_get_raw_split();
        x.write_all(&prf(
            &k1,
            b"waysock-bridge WSB8 confirm",
            hs.get_handshake_hash(),
        ))
        .unwrap();
        let mut ok = [0u8; 1];
        x.read_exact(&mut ok).unwrap();
        assert_eq!(ok, [ACCEPTED]);
        let keys = t.join().unwrap().unwrap();
        assert_eq!(keys.cipher, Cipher::ChaCha20Poly1305);
        assert_eq!(
            keys.receive,
            prf(
                &k1,
                b"waysock-bridge WSB8 record key: connector to listener",
                &[]
            )
        );
        drop(tok);
    }

    #[test]
    fn a_recorded_handshake_replayed_to_the_listener_is_refused() {
        // What a connector sent in a successful session: its greeting and its confirmation.
        let (c, l, _, sent) = run_tapped(SECRET, SECRET);
        assert!(c.is_ok() && l.is_ok());
        assert_eq!(sent.len(), GREETING_LEN + PROOF_LEN);
        // Replayed on a new connection: the listener answers the greeting (it cannot tell a
        // replay from a first try) but the confirmation is for other keys.
        let (mut x, mut y) = pair();
        let t = std::thread::spawn(move || {
            let tok = Token::from_bytes(SECRET).unwrap();
            handshake(&mut y, &tok, Role::Listener)
        });
        x.write_all(&sent[..GREETING_LEN]).unwrap();
        let mut reply = [0u8; REPLY_LEN];
        x.read_exact(&mut reply).unwrap();
        x.write_all(&sent[GREETING_LEN..]).unwrap();
        let mut status = [0u8; 1];
        x.read_exact(&mut status).unwrap();
        assert_eq!(status, [TOKEN_REJECTED]);
        let l = t.join().unwrap();
        assert!(matches!(l, Err(AuthError::Unconfirmed)), "{l:?}");
        assert!(l.unwrap_err().to_string().contains("replayed"));

        // The same through the steps the gate drives.
        let tok = Token::from_bytes(SECRET).unwrap();
        let hello: [u8; GREETING_LEN] = sent[..GREETING_LEN].try_into().unwrap();
        let proof: [u8; PROOF_LEN] = sent[GREETING_LEN..].try_into().unwrap();
        let (listening, _) = Listening::greet(&tok, &hello).unwrap();
        let d = listening.finish(&proof).unwrap_err();
        assert!(matches!(d.error, AuthError::Unconfirmed), "{:?}", d.error);
        assert_eq!(d.say, [TOKEN_REJECTED]);
    }

    #[test]
    fn a_recorded_reply_replayed_to_a_connector_is_refused() {
        // A listener's reply from one session does not authenticate in another.
        let (x, mut y) = pair();
        let recorder = std::thread::spawn(move || {
            let mut hello = [0u8; GREETING_LEN];
            y.read_exact(&mut hello).unwrap();
            let tok = Token::from_bytes(SECRET).unwrap();
            let (_, reply) = Listening::greet(&tok, &hello).unwrap();
            reply
        });
        let tok = Token::from_bytes(SECRET).unwrap();
        let mut x2 = x.try_clone().unwrap();
        x2.write_all(&test_greeting(&tok)).unwrap();
        let reply = recorder.join().unwrap();
        drop((x, x2));
        let (mut a, mut b) = pair();
        b.write_all(&reply).unwrap();
        let c = handshake(&mut a, &tok, Role::Connector);
        assert!(matches!(c, Err(AuthError::BadProof)), "{c:?}");
        // It never confirmed anything.
        let mut got = [0u8; GREETING_LEN + 1];
        drop(a);
        let n = b.read(&mut got).unwrap();
        assert_eq!(n, GREETING_LEN);
    }

    #[test]
    fn a_bridge_of_another_protocol_version_is_named_on_both_sides() {
        // An older connector (WSB3: magic and a 32-byte nonce) meets this listener.
        let (mut x, mut y) = pair();
        let mut hello = b"WSB3".to_vec();
        hello.extend_from_slice(&[7; 32]);
        x.write_all(&hello).unwrap();
        let tok = Token::from_bytes(SECRET).unwrap();
        let err = handshake(&mut y, &tok, Role::Listener).unwrap_err();
        assert!(matches!(err, AuthError::Version(b'3')), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("8 here, 3 there") && text.contains("same waysock version"),
            "{text}"
        );
        // It was answered with our magic, which a WSB3 connector names as version 8 (what
        // follows is a reset: the listener closed without reading the rest).
        drop(y);
        let mut answer = [0u8; 4];
        x.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"WSB8");

        // This connector meets a newer listener that answers with its magic.
        let (mut x, mut y) = pair();
        let t = std::thread::spawn(move || {
            let mut hello = [0u8; GREETING_LEN];
            y.read_exact(&mut hello).unwrap();
            y.write_all(b"WSB9").unwrap();
        });
        let err = handshake(&mut x, &tok, Role::Connector).unwrap_err();
        t.join().unwrap();
        assert!(matches!(err, AuthError::Version(b'9')), "{err}");
        assert!(err.to_string().contains("8 here, 9 there"), "{err}");
    }

    #[test]
    fn garbage_greeting_is_not_a_bridge() {
        let (mut x, mut y) = pair();
        x.write_all(&[0x47; GREETING_LEN]).unwrap();
        let tok = Token::from_bytes(SECRET).unwrap();
        assert!(matches!(
            handshake(&mut y, &tok, Role::Listener),
            Err(AuthError::NotABridge)
        ));
        // A bit flipped in a real greeting is a wrong token, never a pass.
        let mut hello = test_greeting(&tok);
        hello[10] ^= 1;
        let d = Listening::greet(&tok, &hello).err().unwrap();
        assert!(matches!(d.error, AuthError::WrongToken), "{:?}", d.error);
        assert_eq!(d.say, b"WSB-\0");
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
