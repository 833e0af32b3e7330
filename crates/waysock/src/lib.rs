//! # waysock
//!
//! Bring a Wayland display socket up wherever the standard path fails, say exactly why the
//! standard path failed, and let clients find it.
//!
//! [`Binder`] walks a chain of [`Strategy`]s (SPEC §2): an inherited socket
//! (`LISTEN_FDS`), `$XDG_RUNTIME_DIR`, `/run/user/$UID`, private 0700 directories in `/tmp`,
//! `/run`, `/dev/shm`, `/var/run`, `$HOME/.local/run`, and finally an abstract socket. Every
//! attempt is recorded as an [`Attempt`] with the failing syscall, its [`Errno`], a decoded
//! cause and a remedy; the whole list is the [`Report`].
//!
//! Names inside a directory follow libwayland's lock-file protocol (`wayland-N.lock`, held
//! with `flock`), so waysock and any libwayland compositor never own one name at once. Unlike
//! libwayland, waysock never unlinks something that is not a dead socket, never follows a
//! symlink it did not create, and never uses a directory that is not its own and 0700.
//!
//! ```no_run
//! use waysock::{Binder, Strategy};
//! let binder = Binder::from_env().strategies(vec![Strategy::RuntimeDir, Strategy::Abstract]);
//! match binder.bind() {
//!     Ok(bound) => println!("WAYLAND_DISPLAY={}", bound.client_endpoint()),
//!     Err(e) => {
//!         eprintln!("{e}");
//!         if let Some(report) = e.report() {
//!             eprint!("{report}");
//!         }
//!     }
//! }
//! ```
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod binder;
pub mod classify;
pub mod discover;
mod endpoint;
mod errno;
mod lock;
pub mod names;
pub mod peer;
pub mod probe;
pub mod registry;
mod report;
mod runtime_dir;
pub mod stock;
mod strategy;
mod sys;
pub mod trust;

pub use binder::{BindError, Binder, Bound, DirHold, Prepared, MAX_DISPLAY_NUMBER};
pub use classify::Decision;
pub use discover::{ConnectError, Discovery, Found};
pub use endpoint::{
    abstract_display_name, unix_in, Endpoint, EndpointError, ACCEPTED_FORMS, SUN_PATH_MAX,
};
pub use errno::Errno;
pub use lock::{remove_stale_display, DisplayLock};
pub use registry::{Record, Registry};
pub use report::{Attempt, Choice, Failure, Outcome, Report, Source};
pub use strategy::inherited::{
    activation, listen_fds_close_on_exec, pass_on_listen_fd, Activation, LISTEN_FDS_START,
};
pub use strategy::{Environment, NoDirectory, Roots, Strategy, StrategyError};
pub use sys::{
    adopt_inherited_fd, kind_name as file_kind_name, set_inheritable, set_inheritable_raw,
    terminate_with_parent, validate_unix_stream, FdProblem,
};
