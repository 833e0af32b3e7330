//! `waysock headless -- CMD` (issue 11) with the real weston, sway and cage: CMD reaches its
//! own display, its status is ours, parallel jobs never meet, signals and failures end it
//! cleanly, `--screenshot` gives a PNG of the output. Each case in its own mount, pid and
//! network namespace with fresh `/tmp`, `/run` and `/dev/shm`; sway and cage (which refuse
//! root) as the unprivileged test user.

use std::time::Duration;

use waysock_testkit::script::prelude;
use waysock_testkit::{Needs, Scenario, Script, Stage, TEST_USER};

const PRELUDE: &str = r#"
# What waysock (or a compositor it started) left in the shared places: not what others make
# there (Xwayland's /tmp/.X11-unix, mount(8)'s /run/mount).
leftovers() {
  find /tmp /run /dev/shm -mindepth 1 \( -path '*waysock*' -o -name 'wayland-*' \) \
    ! -name '*.registry' ! -name '*.registry.lock' 2>/dev/null | sort
}
# Width and height of PNG $1, from its IHDR.
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{ print $3*256+$4 "x" $7*256+$8 }'; }
# CMD for the display: "ok DISPLAY" when wayland-info saw wl_compositor.
PROBE='if wayland-info 2>/dev/null | grep -q "interface: .wl_compositor."; then echo "ok $WAYLAND_DISPLAY"; else echo "none $WAYLAND_DISPLAY"; fi'
export PROBE O
"#;

fn case(test: &'static str, programs: &[&str], user: bool) -> Option<Scenario> {
    let mut needs = Needs::new(test).waysock_stage().programs(programs);
    if user {
        needs = needs.test_user();
    }
    if !needs.met() {
        return None;
    }
    let mut stage = Stage::waysock("headless", env!("CARGO_BIN_EXE_waysock"))
        .private_tmp()
        .home();
    if user {
        stage = stage.owned_by(TEST_USER).with(|s| s.as_user(TEST_USER));
    }
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(PRELUDE)
        .limit(Duration::from_secs(120));
    Some(Scenario { stage, script })
}

/// weston (as root): CMD reaches the display; CMD's status is ours (7, 127 for a missing
/// command); `--screenshot` writes a PNG of `--size`; nothing is left behind.
#[test]
fn headless_weston_runs_the_command_and_passes_its_status() {
    let Some(c) = case(
        "headless_weston_runs_the_command_and_passes_its_status",
        &["weston", "wayland-info", "weston-screenshooter", "od"],
        false,
    ) else {
        return;
    };
    let out = c.run(
        r#"
"$W" headless -- sh -c "$PROBE" >"$O/p" 2>"$O/e"; status rc
say probe; cat "$O/p"
"$W" headless -- sh -c 'exit 7' 2>/dev/null; status rc_7
"$W" headless -- /nonexistent/cmd 2>"$O/e127"; status rc_127
say e127; cat "$O/e127"
"$W" headless --size 320x200 --screenshot "$O/shot.png" -- true 2>"$O/es"; status rc_shot
say shot; png_size "$O/shot.png"
say leftovers; leftovers
say weston; pgrep -x weston || echo none
"#,
    );
    out.eq("rc", "0")
        .eq("probe", "ok /tmp/waysock-0/wayland-1")
        .eq("rc_7", "7")
        .eq("rc_127", "127")
        .contains("e127", "cannot start /nonexistent/cmd")
        .eq("rc_shot", "0")
        .eq("shot", "320x200")
        .eq("leftovers", "")
        .eq("weston", "none");
}

/// sway and cage (as the test user, both refuse root): CMD reaches the display, and
/// `--screenshot` (grim, wlr-screencopy) gives a PNG of the output's size.
#[test]
fn headless_sway_and_cage_as_the_test_user() {
    let Some(c) = case(
        "headless_sway_and_cage_as_the_test_user",
        &["sway", "cage", "grim", "wayland-info", "od"],
        true,
    ) else {
        return;
    };
    let out = c.run(
        r#"
"$W" headless --compositor sway --size 640x480 --screenshot "$O/sway.png" -- sh -c "$PROBE" >"$O/p1" 2>"$O/e1"; status rc_sway
say sway; cat "$O/p1"
say sway_png; png_size "$O/sway.png"
say e1; cat "$O/e1"
"$W" headless --compositor cage --screenshot "$O/cage.png" -- sh -c "$PROBE" >"$O/p2" 2>"$O/e2"; status rc_cage
say cage; cat "$O/p2"
say cage_png; png_size "$O/cage.png"
say e2; cat "$O/e2"
say leftovers; leftovers
"#,
    );
    let me = waysock_testkit::test_user().expect("probed by case").0;
    out.eq("rc_sway", "0")
        .eq("sway", &format!("ok /tmp/waysock-{me}/wayland-1"))
        .eq("sway_png", "640x480")
        .eq("rc_cage", "0")
        .contains("cage", "ok /tmp/waysock-")
        .eq("cage_png", "1280x720")
        .eq("leftovers", "");
}

/// Eight `headless` jobs started at once: each gets its own display, all succeed, and nothing
/// is left in `/tmp`, `/run`, `/dev/shm` or the registry.
#[test]
fn eight_parallel_jobs_each_get_their_own_display() {
    let Some(c) = case(
        "eight_parallel_jobs_each_get_their_own_display",
        &["weston", "wayland-info"],
        false,
    ) else {
        return;
    };
    let out = c.run(
        r#"
for i in 1 2 3 4 5 6 7 8; do
  ("$W" headless -- sh -c "$PROBE; sleep 1" >"$O/j$i" 2>"$O/e$i"; echo "rc $?" >>"$O/j$i") &
done
wait
say ok; cat "$O"/j? | grep -c '^ok '
say rcs; cat "$O"/j? | grep '^rc' | sort | uniq -c | awk '{ print $1, $2, $3 }'
say distinct; cat "$O"/j? | grep '^ok ' | sort -u | wc -l
say leftovers; leftovers
say registry; cat /dev/shm/waysock-*.registry 2>/dev/null; echo end
say errors; cat "$O"/e?
"#,
    );
    out.eq("ok", "8")
        .eq("rcs", "8 rc 0")
        .eq("distinct", "8")
        .eq("leftovers", "")
        .eq("registry", "end");
}

/// SIGTERM to `headless` while CMD sleeps: CMD gets it, the compositor is stopped, `headless`
/// ends with 143 and no compositor process is left. A compositor that cannot start: CMD never
/// runs, exit 125 with its last log lines and doctor's verdict.
#[test]
fn signals_and_a_failing_compositor_end_headless_cleanly() {
    let Some(c) = case(
        "signals_and_a_failing_compositor_end_headless_cleanly",
        &["weston", "timeout"],
        false,
    ) else {
        return;
    };
    let out = c.run(
        r#"
"$W" headless -- sh -c 'trap "echo got-TERM >$O/cmd; exit 0" TERM; echo started >$O/cmd; while :; do sleep 0.1; done' 2>"$O/et" &
HP=$!
wait_file "$O/cmd"
kill -TERM $HP
wait $HP; status rc_term
say cmd; cat "$O/cmd"
sleep 0.2
say weston; pgrep -x weston || echo none
say leftovers; leftovers
# A "weston" that fails at once, first in PATH.
mkdir -p "$M/fake"; printf '#!/bin/sh\necho "fake weston: cannot open the backend" >&2\nexit 3\n' >"$M/fake/weston"; chmod +x "$M/fake/weston"
PATH="$M/fake:$PATH" "$W" headless --compositor weston -- touch "$O/ran" 2>"$O/ef"; status rc_fail
say ef; cat "$O/ef"
say ran; ls "$O/ran" 2>/dev/null || echo no
"#,
    );
    out.eq("rc_term", "143")
        .eq("cmd", "got-TERM")
        .eq("weston", "none")
        .eq("leftovers", "")
        .eq("rc_fail", "125")
        .contains(
            "ef",
            "weston exited (status 3) before answering; touch did not run",
        )
        .contains("ef", "fake weston: cannot open the backend")
        .contains("ef", "doctor: ")
        .eq("ran", "no");
}

/// Nothing writable (`/tmp`, `/run`, `/dev/shm` and `HOME` read-only, no `XDG_RUNTIME_DIR`):
/// weston comes up on an abstract socket through the shim and CMD reaches it.
#[test]
fn headless_where_nothing_is_writable() {
    let Some(c) = case(
        "headless_where_nothing_is_writable",
        &["weston", "wayland-info"],
        false,
    ) else {
        return;
    };
    let out = c.run(
        r#"
mount -t tmpfs -o remount,ro none /tmp
mount -t tmpfs -o remount,ro none /run
mount -t tmpfs -o remount,ro none /dev/shm
mount -o remount,ro,bind "$M/home" "$M/home" 2>/dev/null || mount -t tmpfs -o ro none "$M/home"
"$W" headless -- sh -c "$PROBE" >"$O/p" 2>"$O/e"; status rc
say probe; cat "$O/p"
say e; cat "$O/e"
"#,
    );
    out.eq("rc", "0").eq("probe", "ok wayland-1");
}
