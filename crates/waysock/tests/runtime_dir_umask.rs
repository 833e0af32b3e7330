//! A runtime dir waysock creates is exactly 0700 whatever the umask: `mkdir`'s mode goes
//! through the umask, so it is set again on the new directory's fd. Alone in its own test
//! binary: the umask is per process, and no other test may create files while it is changed.

use waysock::{Binder, Environment, Roots, Strategy};
use waysock_testkit::{mode_of, Scratch};

#[test]
fn a_created_runtime_dir_is_0700_under_any_umask() {
    let scratch = Scratch::new("rt-umask");
    let rt = scratch.path().join("rt");
    let mut env = Environment::clean(Roots::under(&scratch.path().join("nowhere")));
    env.xdg_runtime_dir = Some(rt.clone().into());
    // Owner write masked out: mkdir alone would make it 0500, unusable.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o277));
    let bound = Binder::new(env)
        .strategies(vec![Strategy::RuntimeDir])
        .bind();
    rustix::process::umask(old);
    let bound = bound.expect("bind in a runtime dir waysock created");
    assert_eq!(mode_of(&rt), 0o700);
    drop(bound);
}
