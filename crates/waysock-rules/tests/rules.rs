//! The shared rules' answers, value by value: the abstract prefix of a uid, and which errno of
//! `bind`/`connect` on a display path sends the library and the shim to the abstract name.

use waysock_rules::errno::{EACCES, ECONNREFUSED, ENOENT, EPERM, EROFS};
use waysock_rules::{abstract_prefix, bind_place_unusable, connect_nothing_there};

/// `EADDRINUSE`, `EINVAL`, `ENAMETOOLONG`, `EINTR`: errors that say nothing about the place.
const OTHERS: [i32; 4] = [98, 22, 36, 4];

#[test]
fn the_abstract_prefix_of_a_uid() {
    assert_eq!(abstract_prefix(1000), "wayland-1000-");
    assert_eq!(abstract_prefix(0), "wayland-0-");
}

#[test]
fn bind_errors_that_make_a_place_unusable() {
    for e in [EROFS, EACCES, EPERM, ENOENT] {
        assert!(bind_place_unusable(e), "errno {e}");
    }
    for e in OTHERS.into_iter().chain([ECONNREFUSED]) {
        assert!(!bind_place_unusable(e), "errno {e}");
    }
}

#[test]
fn connect_errors_that_mean_nothing_is_there() {
    for e in [ENOENT, ECONNREFUSED] {
        assert!(connect_nothing_there(e), "errno {e}");
    }
    for e in OTHERS.into_iter().chain([EACCES, EPERM, EROFS]) {
        assert!(!connect_nothing_there(e), "errno {e}");
    }
}
