//! Socket activation for compositors that cannot take an fd (issue 11, item 4), and `ls` on
//! shim displays (item 6): real `systemd-socket-activate`, real headless weston, as the
//! unprivileged test user in a sandbox with private mount, pid and network namespaces.
//!
//! `systemd-socket-activate` binds the socket, waits for the first connection, and only then
//! execs `waysock run` with `LISTEN_FDS=1`: the first client is in the listener's backlog
//! before `run`, let alone weston, exists.

use std::time::Duration;

use waysock_testkit::script::prelude;
use waysock_testkit::{test_user, Needs, Out, Script, Stage, TEST_USER};

const LIMIT: Duration = Duration::from_secs(60);

/// Shell functions every script gets after [`prelude::BASE`], [`prelude::WAIT`] and
/// [`prelude::VICTIM`].
const PRELUDE: &str = r#"
# Waits at most 15 s for run $1 to say its display is up in log $2.
wait_up() { i=0; while alive "$1" && ! grep -q 'is up on' "$2" && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; }
"#;

/// `body` run for `test` (which needs `programs` too) as the test user on a
/// [`Stage::waysock`] with fresh `/tmp`, `/run`, `/dev/shm`, or with those and `$M/home`
/// read-only if `read_only`; what it printed and the test user's uid. `None` after a skip.
fn run(test: &'static str, programs: &[&str], read_only: bool, body: &str) -> Option<(Out, u32)> {
    let met = Needs::new(test)
        .waysock_stage()
        .programs(programs)
        .programs(&["setpriv", "weston"])
        .test_user()
        .met();
    if !met {
        return None;
    }
    let uid = test_user().expect("probed by Needs").0;
    let stage = Stage::waysock("activation", env!("CARGO_BIN_EXE_waysock")).owned_by(TEST_USER);
    let home = format!("{}/home", stage.m());
    let stage = if read_only {
        stage.with(|s| {
            s.read_only("/tmp")
                .read_only("/run")
                .read_only("/dev/shm")
                .read_only(&home)
        })
    } else {
        stage.private_tmp()
    };
    let stage = stage.with(|s| s.env("VICTIM", TEST_USER));
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(prelude::VICTIM)
        .prelude(PRELUDE)
        .limit(LIMIT + Duration::from_secs(5));
    Some((script.run(stage.sandbox(), body), uid))
}

/// The first client connects while only the activator listens (no `run`, no weston); weston
/// then serves it on the inherited socket: its bind of `/tmp/act/wayland-5` became the
/// listener, its lock is the real `wayland-5.lock`, `run` publishes that very path with the
/// strategy `inherited`, and when weston ends the socket stays for the activator.
#[test]
fn a_client_that_connected_before_weston_was_up_is_served() {
    let Some((out, _)) = run(
        "a_client_that_connected_before_weston_was_up_is_served",
        &["systemd-socket-activate", "wayland-info"],
        false,
        r#"
V mkdir -m 700 /tmp/act
VB systemd-socket-activate -l /tmp/act/wayland-5 "$W" run -- $WESTON >"$O/run.out" 2>"$O/run.log" &
RP=$!
wait_for /tmp/act/wayland-5
say before; pgrep -x weston || echo none
V env XDG_RUNTIME_DIR=/tmp/act WAYLAND_DISPLAY=wayland-5 timeout 20 wayland-info >"$O/info" 2>&1
say client; echo $?
say compositor; grep -c "interface: 'wl_compositor'" "$O/info"
wait_up $RP "$O/run.log"
say up; grep -h 'is up on' "$O/run.log" "$O/run.out"
say shim; grep -h 'waysock\] bind' "$O/run.log"
say lock; ls /tmp/act
say ls; V "$W" ls --json
finish $RP
say after; ls -A /tmp/act
say log; cat "$O/run.log" "$O/run.out"
"#,
    ) else {
        return;
    };
    out.eq("before", "none")
        .eq("client", "0")
        .eq("compositor", "1")
        .contains("up", "weston is up on unix:/tmp/act/wayland-5 (inherited")
        .contains(
            "shim",
            "unix:/tmp/act/wayland-5) = 0: the socket-activated listener (inherited fd 3)",
        )
        .eq("lock", "wayland-5\nwayland-5.lock")
        .absent("hung")
        .eq("rc", "0")
        .eq("after", "wayland-5");
    let ls = out.json("ls");
    let e = ls.as_array().map(Vec::as_slice).unwrap_or_default();
    if e.len() != 1
        || e[0]["endpoint"] != "unix:/tmp/act/wayland-5"
        || e[0]["strategy"] != "inherited"
        || e[0]["published"] != true
    {
        out.fail("ls should list the activated socket, published with strategy inherited");
    }
}

/// A compositor the shim cannot reach is refused with the reason (exit 1), never started on
/// another socket: a real statically linked ELF (`ldconfig`, static on every Debian) named
/// `weston`, and a copy of the real weston marked setuid.
#[test]
fn a_compositor_the_shim_cannot_reach_is_refused_with_the_reason() {
    let Some((out, _)) = run(
        "a_compositor_the_shim_cannot_reach_is_refused_with_the_reason",
        &["systemd-socket-activate", "socat"],
        false,
        r#"
cp "$(command -v ldconfig || echo /sbin/ldconfig)" "$M/bin/weston"; chmod 755 "$M/bin/weston"
cp "$(command -v weston)" "$M/bin/suid-weston"; chmod 4755 "$M/bin/suid-weston"
V mkdir -m 700 /tmp/act
refused() {
  rm -f /tmp/act/wayland-5
  VB systemd-socket-activate -l /tmp/act/wayland-5 "$W" run -- "$@" >"$O/$1.out" 2>"$O/$1.log" &
  RP=$!
  wait_for /tmp/act/wayland-5
  V socat -u OPEN:/dev/null UNIX-CONNECT:/tmp/act/wayland-5 2>/dev/null
  wait_end $RP 100
  finish $RP
}
cd "$M/bin"
refused ./weston --version; say static; cat "$O/./weston.log" "$O/./weston.out"
say static_rc; echo $rc
refused ./suid-weston --version; say suid; cat "$O/./suid-weston.log"
say suid_rc; echo $rc
say started; pgrep -x weston || pgrep -x suid-weston || echo none
"#,
    ) else {
        return;
    };
    let head = "waysock run: socket-activated on /tmp/act/wayland-5 (LISTEN_FDS: fd 3), but";
    out.absent("hung")
        .eq("static_rc", "1")
        .contains("static", head)
        .contains("static", "weston is statically linked")
        .contains(
            "static",
            "fix: a compositor that takes a listening fd itself",
        )
        .lacks("static", "ldconfig")
        .eq("suid_rc", "1")
        .contains("suid", head)
        .contains("suid", "suid-weston is setuid/setgid")
        .eq("started", "none");
}

/// `ls` with no registry (everything read-only): a shim display with a name that is not
/// `wayland-N` is listed, as published (its compositor holds run's sealed record), with its
/// age and strategy.
#[test]
fn ls_shows_a_shim_display_of_any_name_as_published() {
    let Some((out, uid)) = run(
        "ls_shows_a_shim_display_of_any_name_as_published",
        &[],
        true,
        r#"
VB env -u XDG_RUNTIME_DIR "$W" run --display wayland-kiosk -- $WESTON --socket=wayland-kiosk >"$O/run.out" 2>"$O/run.log" &
RP=$!
wait_up $RP "$O/run.log"
say up; grep -h 'is up on' "$O/run.log" "$O/run.out"
say ls; V env -u XDG_RUNTIME_DIR "$W" ls --json
finish $RP
say log; cat "$O/run.log"
"#,
    ) else {
        return;
    };
    out.contains("up", &format!("is up on abstract:wayland-{uid}-kiosk"))
        .absent("hung");
    let ls = out.json("ls");
    let e = ls.as_array().map(Vec::as_slice).unwrap_or_default();
    let ok = e.len() == 1
        && e[0]["display"] == "wayland-kiosk"
        && e[0]["endpoint"] == format!("abstract:wayland-{uid}-kiosk").as_str()
        && e[0]["strategy"] == "abstract"
        && e[0]["published"] == true
        && e[0]["age_seconds"].as_u64().is_some_and(|a| a < 60);
    if !ok {
        out.fail("ls should list wayland-kiosk, published, strategy abstract, with its age");
    }
}
