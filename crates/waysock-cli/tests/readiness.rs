//! Readiness for supervisors and scripts (issue 11): `run --ready-fd`, `NOTIFY_SOCKET`, the
//! export lines on stdout, `waysock wait`, a compositor that never answers, and discovery that
//! never guesses between jobs. Real weston and clients, each case in its own mount, pid and
//! network namespace with fresh `/tmp`, `/run` and `/dev/shm`.

use std::time::Duration;

use waysock_testkit::script::prelude;
use waysock_testkit::{Needs, Scenario, Script, Stage};

const PRELUDE: &str = r#"
# wayland-info through `waysock exec` with ARGS: "STATUS ok" when it saw wl_compositor.
info() {
  timeout 10 "$W" exec "$@" -- wayland-info >"$O/info.out" 2>"$O/info.err"; r=$?
  if grep -q "interface: 'wl_compositor'" "$O/info.out"; then echo "$r ok"; else echo "$r none"; cat "$O/info.err"; fi
}
"#;

fn case(test: &'static str, programs: &[&str]) -> Option<Scenario> {
    if !Needs::new(test).waysock_stage().programs(programs).met() {
        return None;
    }
    let stage = Stage::waysock("ready", env!("CARGO_BIN_EXE_waysock"))
        .private_tmp()
        .home();
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(PRELUDE)
        .limit(Duration::from_secs(90));
    Some(Scenario { stage, script })
}

/// `--ready-fd 3` gets one line, the endpoint, only once the display answers (a client run
/// the moment it arrives works), then EOF; `NOTIFY_SOCKET` gets `READY=1` with a `STATUS=`
/// line the same way, and `STOPPING=1` at the end; the export lines are the only thing on
/// stdout.
#[test]
fn ready_fd_and_notify_socket_fire_once_the_display_answers() {
    let Some(c) = case(
        "ready_fd_and_notify_socket_fire_once_the_display_answers",
        &["weston", "wayland-info", "socat", "timeout"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
socat -u UNIX-RECV:"$O/notify" - >"$O/notes" 2>/dev/null &
SP=$!
i=0; while [ ! -S "$O/notify" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
mkfifo "$O/ready"
NOTIFY_SOCKET="$O/notify" "$W" run --ready-fd 3 -- $WESTON 3>"$O/ready" >"$O/stdout" 2>"$O/stderr" &
RP=$!
# Blocks until the line arrives, then until EOF (the fd closed).
timeout 20 cat "$O/ready" >"$O/line"; status ready_status
say line; cat "$O/line"
say info_at_ready; info
i=0; while ! grep -q READY=1 "$O/notes" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
say notes_up; cat "$O/notes"
say stdout; cat "$O/stdout"
finish $RP run
i=0; while ! grep -q STOPPING=1 "$O/notes" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
say notes_end; cat "$O/notes"
kill $SP 2>/dev/null
say stderr; cat "$O/stderr"
"#,
    );
    out.eq("ready_status", "0")
        .eq("line", "unix:/tmp/waysock-0/wayland-1")
        .eq("info_at_ready", "0 ok")
        .contains("notes_up", "READY=1\nSTATUS=weston is up on unix:/tmp/waysock-0/wayland-1")
        .eq(
            "stdout",
            "export XDG_RUNTIME_DIR='/tmp/waysock-0'\nexport WAYLAND_DISPLAY='/tmp/waysock-0/wayland-1'",
        )
        .eq("rc_run", "0")
        .contains("notes_end", "STOPPING=1")
        .contains("stderr", "weston is up on unix:/tmp/waysock-0/wayland-1")
        .lacks("stderr", "export ");
    // READY=1 is sent once, and after the status that says it is starting.
    let notes = out.sec("notes_end");
    assert_eq!(notes.matches("READY=1").count(), 1, "{}", out.context());
    match (notes.find("STATUS=starting"), notes.find("READY=1")) {
        (Some(a), Some(b)) if a < b => {}
        _ => out.fail("STATUS=starting does not come before READY=1"),
    }
}

/// A compositor that never answers: `--ready-timeout` stops it and `run` exits 125 even
/// though it would have exited 0; the readiness fd sees EOF without a line; a bad
/// `--ready-fd` is a usage error before anything starts.
#[test]
fn a_compositor_that_never_answers_fails_run() {
    let Some(c) = case(
        "a_compositor_that_never_answers_fails_run",
        &["timeout", "sleep"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
mkfifo "$O/ready"
timeout 30 "$W" run --ready-timeout 1 --ready-fd 3 -- sleep 4 3>"$O/ready" 2>"$O/e1" &
RP=$!
timeout 20 cat "$O/ready" >"$O/line"; status eof
wait $RP; status rc_timeout
say line; cat "$O/line"; echo end
say e1; cat "$O/e1"
"$W" run -- true 2>"$O/e2"; status rc_exit0
say e2; cat "$O/e2"
"$W" run --ready-fd 1 -- true 2>"$O/e3"; status rc_fd1
"$W" run --ready-fd 9 -- true 2>"$O/e4"; status rc_fd9
say e4; cat "$O/e4"
say leftovers; find /tmp /run /dev/shm -mindepth 1 -path '*waysock*' ! -name '*.registry*'
"#,
    );
    out.eq("eof", "0")
        .eq("rc_timeout", "125")
        .eq("line", "end")
        .contains("e1", "did not bring up a Wayland socket")
        .contains("e1", "never answered on its display: exit 125")
        .eq("rc_exit0", "125")
        .contains("e2", "true exited: status 0")
        .eq("rc_fd1", "2")
        .eq("rc_fd9", "2")
        .contains("e4", "--ready-fd 9: fd 9 is not an open file descriptor")
        .eq("leftovers", "");
}

/// `waysock wait` returns 0 (printing the endpoint) once the display answers, and 1 with the
/// reason when nothing does within `--timeout`.
#[test]
fn wait_returns_once_the_display_answers() {
    let Some(c) = case(
        "wait_returns_once_the_display_answers",
        &["weston", "timeout"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
"$W" wait --timeout 0.3 2>"$O/e0"; status rc_nothing
say e0; cat "$O/e0"
"$W" run -- $WESTON >/dev/null 2>&1 &
RP=$!
timeout 20 "$W" wait --timeout 15 >"$O/w" 2>&1; status rc_up
say waited; cat "$O/w"
"$W" wait --timeout x 2>/dev/null; status rc_bad
finish $RP run
"#,
    );
    out.eq("rc_nothing", "1")
        .contains("e0", "no display answered within 0.3 s")
        .eq("rc_up", "0")
        .eq("waited", "unix:/tmp/waysock-0/wayland-1")
        .eq("rc_bad", "2")
        .eq("rc_run", "0");
}

/// Two sibling jobs of one user, each `run &` then `exec`: each client reaches its own
/// display, never the other's, whichever started last. Two displays started by one shell are
/// equally the caller's: `exec` refuses, lists both with the `--display` to use, and connects
/// to neither.
#[test]
fn discovery_never_guesses_between_jobs() {
    let Some(c) = case(
        "discovery_never_guesses_between_jobs",
        &["weston", "wayland-info", "timeout"],
    ) else {
        return;
    };
    let out = c.run(
        r#"
job() {
  "$W" run --print-env "$O/env$1" -- $WESTON >/dev/null 2>&1 &
  rp=$!
  wait_file "$O/env$1"
  # Give the other job time to come up too: its display is the newer one half the time.
  sleep 1
  . "$O/env$1"
  mine=$WAYLAND_DISPLAY
  got=$(env -u WAYLAND_DISPLAY -u XDG_RUNTIME_DIR "$W" exec -- sh -c 'echo $WAYLAND_DISPLAY')
  if [ "$got" = "$mine" ]; then echo "job$1 own"; else echo "job$1 other: $got (mine $mine)"; fi
  kill $rp; wait $rp
}
(job a >"$O/a") &
(job b >"$O/b") &
wait
say a; cat "$O/a"
say b; cat "$O/b"
"$W" run -- $WESTON >/dev/null 2>&1 &
R1=$!
"$W" wait --timeout 15 >/dev/null 2>&1
"$W" run -- $WESTON >/dev/null 2>&1 &
R2=$!
i=0; while [ ! -S /tmp/waysock-0/wayland-2 ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
sleep 0.5
"$W" exec -- true 2>"$O/tie"; status rc_tie
say tie; cat "$O/tie"
"$W" exec --display wayland-2 -- true; status rc_named
finish $R1 one
finish $R2 two
"#,
    );
    out.eq("a", "joba own")
        .eq("b", "jobb own")
        .eq("rc_tie", "1")
        .contains("tie", "2 displays of yours are running")
        .contains("tie", "--display /tmp/waysock-0/wayland-1")
        .contains("tie", "--display /tmp/waysock-0/wayland-2")
        .eq("rc_named", "0");
}
