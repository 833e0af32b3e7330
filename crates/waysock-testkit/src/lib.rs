//! Test fixtures for waysock: hostile environments made for real.
//!
//! - [`needs`]: what a test needs ([`Needs`], [`program`], [`namespaces`]) and loud skips
//!   ([`skip`]: `SKIPPED: test: reason` on stderr and in `target/waysock-skipped.txt`, which
//!   `.ci/run` lists at the end).
//! - [`users`]: the unprivileged accounts ([`TEST_USER`], [`INTRUDER`]).
//! - [`sandbox`]: one command in fresh namespaces ([`Sandbox`]: `unshare -m`, root-side setup
//!   such as read-only tmpfs mounts, optionally dropped to a user with `setpriv`; the test
//!   binary itself stays untouched and multi-threaded), and [`Stage`], a sandbox with a
//!   scratch tmpfs for scripted scenarios.
//! - [`script`]: scripted scenarios ([`Script`]: prelude pieces, body, epilogue) and their
//!   `@@` sections ([`Out`]: `eq`, `contains`, `lacks`, `absent`, `json`, `fail`); a
//!   [`Scenario`] is a [`Stage`] and the script its bodies run with.
//! - [`proc`]: processes ([`run_command`] and [`Run`], which dumps argv, environment, status
//!   and output when an assertion fails; [`Proc`], [`Weston`], [`wait_for`], [`relocated`]).
//! - [`fs`]: scratch dirs, modes, stale sockets, snapshots of a tree.
//! - [`stats`]: medians and percentiles for benches.
//! - [`net`]: free loopback ports.
//! - `compositor` (cargo feature `compositor`): an in-process `wayland-server` compositor.

pub mod fs;
pub mod needs;
pub mod net;
pub mod proc;
pub mod sandbox;
pub mod script;
pub mod stats;
pub mod users;

#[cfg(feature = "compositor")]
pub mod compositor;

pub use fs::{
    assert_mode_0700, file_kind, mode_of, set_mode, snapshot, stale_socket, unique, Scratch,
};
pub use needs::{all_namespaces, is_root, namespaces, program, skip, skip_log, Needs};
pub use net::{free_port, spawn_on_free_port};
pub use proc::{
    built_shim, relocated, run_command, wait_for, wayland_info, Proc, Run, Weston, SHIM,
};
pub use sandbox::{in_pid_namespace, sway_bridged, Netns, Sandbox, Stage, SwayBridged};
pub use script::{sections, Out, Scenario, Script};
pub use stats::{median, percentile};
pub use users::{intruder, test_user, INTRUDER, TEST_USER};
