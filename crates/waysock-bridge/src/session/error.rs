//! Why a session ended: [`SessionError`].

use std::io;

use super::{MAX_COPY, MAX_MIRRORED, MAX_PIPES, MAX_POOL, MAX_SESSION_FDS};
use crate::codec::CodecError;
use crate::protocol::handled::ArgMismatch;
use crate::transport::PIPE_WINDOW;

/// Why a session ended with an error. [`super::run`] hands it on as an [`io::Error`]: an
/// I/O error as it was, anything else as [`io::ErrorKind::InvalidData`] (the peer or the far
/// side broke the protocol) or [`io::ErrorKind::Other`] (this process failed).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or writing a socket, a pool, a pipe.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A message header that cannot be, or an object map the message does not fit.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A message whose arguments do not decode.
    #[error("{message}: {source}")]
    Decode {
        /// `interface.message`.
        message: String,
        /// Why.
        source: CodecError,
    },
    /// Decoded values that do not fit the typed form of a handled message.
    #[error(transparent)]
    Args(#[from] ArgMismatch),
    /// A pool larger than one session may mirror.
    #[error(
        "shm pool of {size} bytes (this session already mirrors {mirrored} of at most \
         {MAX_MIRRORED})"
    )]
    PoolTooLarge {
        /// The pool's size.
        size: u64,
        /// What the session mirrors already.
        mirrored: u64,
    },
    /// A pool resized beyond what one session may mirror.
    #[error("resizing a pool to {0} bytes exceeds the session's {MAX_MIRRORED}")]
    ResizeTooLarge(u64),
    /// The far side announced a pool larger than `MAX_POOL`.
    #[error("mirrored pool of {0} bytes")]
    FarPoolTooLarge(u64),
    /// The far side's pools together exceed `MAX_MIRRORED`.
    #[error("the far side mirrors more than {MAX_MIRRORED} bytes")]
    FarMirrorsTooMuch,
    /// A message that carries a descriptor came without it.
    #[error("{0} carries a descriptor that did not arrive")]
    MissingDescriptor(String),
    /// Descriptors piled up with no message to carry them.
    #[error("{0} descriptors queued without messages that carry them")]
    QueuedDescriptors(usize),
    /// Descriptors left over once every message was handled.
    #[error(
        "{0} descriptor(s) came with messages the bridge cannot decode (an interface or \
         version it has no signature for)"
    )]
    UndecodableDescriptors(usize),
    /// A Wayland frame names a descriptor the far side never announced.
    #[error("unknown descriptor id {0}")]
    UnknownDescriptor(u32),
    /// A socket passed as a descriptor.
    #[error("a socket was passed as a descriptor; the bridge cannot relay sockets")]
    Socket,
    /// A memory descriptor too large to copy once.
    #[error("a {0}-byte memory descriptor is too large to copy (at most {MAX_COPY})")]
    MemoryTooLarge(u64),
    /// More than `MAX_PIPES` pipes at once.
    #[error("more than {MAX_PIPES} pipes relayed at once")]
    TooManyPipes,
    /// More than `MAX_SESSION_FDS` descriptors from the far side.
    #[error("more than {MAX_SESSION_FDS} descriptors pending from the far side")]
    TooManyDescriptors,
    /// The far side ignored a pipe's flow control.
    #[error("the far side sent more than {PIPE_WINDOW} unacknowledged bytes into pipe {0}")]
    PipeWindow(u32),
    /// Pool data for a pool the far side never announced.
    #[error("data for unknown pool {0}")]
    UnknownPool(u32),
    /// A resize of a pool the far side never announced.
    #[error("resize of unknown pool {0}")]
    ResizeUnknownPool(u32),
    /// Pool data beyond the pool's end.
    #[error("pool data beyond the pool's end")]
    BeyondPool,

    /// A move that reads or writes outside its mirror.
    #[error(
        "a move of {rows} rows of {width} bytes every {stride} at {start} by {dy} rows and {dx} \
         bytes reaches beyond its {size}-byte pool"
    )]
    BadMove {
        /// Where its first row goes.
        start: u64,
        /// Rows moved.
        rows: usize,
        /// Bytes from a row to the next.
        stride: usize,
        /// Bytes of each row.
        width: usize,
        /// Rows down where each comes from.
        dy: isize,
        /// Bytes across where each comes from.
        dx: isize,
        /// The pool's size.
        size: u64,
    },

    /// The far side shrank a mirror (pools only ever grow).
    #[error("pool {id} shrunk from {from} to {to} bytes; Wayland pools only grow")]
    PoolShrunk {
        /// The mirror.
        id: u32,
        /// Its size before.
        from: u64,
        /// The size asked for.
        to: u64,
    },
    /// Compressed pool data that decompresses to another length.
    #[error("compressed pool data of the wrong length")]
    Lz4Length,
    /// Compressed pool data that does not decompress.
    #[error("corrupt compressed pool data: {0}")]
    Lz4(String),
    /// zstd-compressed pool data that decompresses to another length.
    #[error("zstd-compressed pool data of the wrong length")]
    ZstdLength,
    /// zstd-compressed pool data that does not decompress (or would exceed its length).
    #[error("corrupt zstd-compressed pool data: {0}")]
    Zstd(String),
    /// A pool patch whose span table does not match its data.
    #[error("a pool patch whose spans do not match its data")]
    BadPatch,
    /// The client bound a global the bridge does not carry.
    #[error("the client bound {0}, which the bridge does not carry")]
    Unbindable(String),
    /// A Wayland frame that ends inside a message.
    #[error("a frame ends inside a message")]
    SplitMessage,
    /// A Wayland frame with bytes after its last message.
    #[error("trailing bytes in a frame")]
    TrailingBytes,
    /// Captures in progress hold more than `MAX_POOL` bytes of snapshots.
    #[error("captures in progress hold more than {MAX_POOL} bytes")]
    CapturesTooLarge,
    /// A thread of the session panicked while holding its state.
    #[error("session state poisoned by a panic")]
    Poisoned,
    /// A thread of the session panicked.
    #[error("{0} thread panicked")]
    Panicked(&'static str),
    /// The pool-update thread is gone.
    #[error("the pool update thread stopped")]
    ApplierStopped,
}

impl SessionError {
    /// Whether this is the stream ending without a sealed close.
    pub(super) fn is_unexpected_eof(&self) -> bool {
        matches!(self, SessionError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof)
    }
}

impl From<SessionError> for io::Error {
    fn from(e: SessionError) -> io::Error {
        match e {
            SessionError::Io(e) => e,
            e @ (SessionError::Poisoned
            | SessionError::Panicked(_)
            | SessionError::ApplierStopped) => io::Error::other(e),
            e => io::Error::new(io::ErrorKind::InvalidData, e),
        }
    }
}

impl<T> From<std::sync::PoisonError<T>> for SessionError {
    fn from(_: std::sync::PoisonError<T>) -> SessionError {
        SessionError::Poisoned
    }
}
