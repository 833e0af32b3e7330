//! `waysock bridge`: Wayland over a byte stream (TCP), with the file descriptors the protocol
//! passes translated, and both ends authenticated before any Wayland byte moves.
//!
//! - [`protocol`]: signature tables (checked in, generated from the protocol XML of Smithay's
//!   protocol crates: core, wayland-protocols, wlr, misc, KDE), so the codec knows every
//!   argument, which arguments carry file descriptors and which create objects.
//! - [`codec`]: strict framing and argument decoding of Wayland messages, and the
//!   per-connection object map (ids → interfaces) that tells which message is which.
//! - [`auth`]: the token file and the handshake both ends run first (Noise `NNpsk0`, the
//!   token's hash as the pre-shared key); the secret never crosses the wire.
//! - [`channel`]: after it, every frame is sealed (AES-256-GCM or ChaCha20-Poly1305, as the
//!   handshake agreed) with per-connection keys.
//! - [`transport`], [`session`], [`bridge`]: frames, one relayed connection, the two ends.
//! - [`stream`]: the encoded side over TCP or a Unix stream (`waysock ssh`), and the two ends
//!   over a Unix socket.
//! - [`display_error`]: a client the bridge cannot serve is told why, as a compositor would
//!   (`wl_display.error`).
//! - [`gate`]: the listening end's handshake stage, one poll loop for every unauthenticated
//!   connection, bounded and shedding the oldest under a flood.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod bridge;
pub mod channel;
pub mod codec;
pub mod display_error;
pub mod gate;
pub mod protocol;
pub mod session;
pub mod stream;
pub mod transport;
