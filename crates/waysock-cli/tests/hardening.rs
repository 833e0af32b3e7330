//! Another local user attacks waysock (issue 8): each test is one reproduction, run for real
//! with two unprivileged accounts — the victim ([`TEST_USER`]) and the intruder
//! ([`INTRUDER`]) — in a sandbox with private mount, pid and network namespaces and fresh
//! tmpfs over `/tmp`, `/run` and `/dev/shm`. The script runs as root and drops to either user
//! per command (`V` and `I`); nothing relies on `fs.protected_*` (off on many machines, and
//! the attacks here need none of them).
//!
//! Every wait in a script is bounded; the code before the fixes hung or reached the
//! intruder's socket, and each script records that instead of hanging the suite.

use std::time::Duration;

use waysock_testkit::script::prelude;
use waysock_testkit::{
    intruder, test_user, Needs, Out, Scenario, Script, Stage, INTRUDER, TEST_USER,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Shell functions every script gets after [`prelude::BASE`], [`prelude::WAIT`] and
/// [`prelude::VICTIM`].
const PRELUDE: &str = r#"
I() { setpriv --reuid="$INTRUDER" --regid="$INTRUDER" --init-groups env HOME=/ "$@"; }
# An intruder's listening socket at $1 that anyone may connect to; a connection touches $2.
bait() {
  I socat "UNIX-LISTEN:$1,fork,mode=777" "SYSTEM:touch $2" 2>/dev/null &
  wait_for "$1"
}
# CMD as the victim, its output in $O/run.log, given 10 s to end by itself; then `finish`.
ends_by_itself() { VB "$@" >"$O/run.log" 2>&1 & RP=$!; wait_end $RP 100; finish $RP; }
# Waits at most 15 s for file $1 to have content while background run $2 is alive.
wait_out() { i=0; while alive "$2" && [ ! -s "$1" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; }
"#;

/// The victim's and the intruder's uids, and a stage ready for a script.
struct World {
    scenario: Scenario,
    victim: u32,
    intruder: u32,
}

/// The world for `test`, which needs `programs` besides namespaces, `setpriv`, `socat` and
/// both users; `None` after reporting a skip.
///
/// A [`Stage::waysock`] (private pid and network namespaces, waysock as `$W` and the shim in
/// `$M/bin`) with fresh tmpfs over `/tmp`, `/run` and `/dev/shm`, `$M/home` and `$M/out` the
/// victim's.
fn world(test: &'static str, programs: &[&str]) -> Option<World> {
    let met = Needs::new(test)
        .waysock_stage()
        .programs(programs)
        .programs(&["setpriv", "socat"])
        .test_user()
        .intruder()
        .met();
    if !met {
        return None;
    }
    let victim = test_user().expect("probed by Needs").0;
    let intruder = intruder().expect("probed by Needs").0;
    let stage = Stage::waysock("hardening", env!("CARGO_BIN_EXE_waysock"))
        .private_tmp()
        .owned_by(TEST_USER)
        .with(|s| {
            s.env("VICTIM", TEST_USER)
                .env("INTRUDER", INTRUDER)
                .env("VU", victim.to_string())
                .env("IU", intruder.to_string())
        });
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(prelude::VICTIM)
        .prelude(PRELUDE)
        .limit(LIMIT + Duration::from_secs(5));
    Some(World {
        scenario: Scenario { stage, script },
        victim,
        intruder,
    })
}

impl World {
    fn script(&self, body: &str) -> Out {
        self.scenario.run(body)
    }
}

/// Hole 1: the intruder's world-writable `/tmp/wl.env` is never written into (the victim
/// would source what the intruder appends). `run` refuses it before starting anything.
#[test]
fn print_env_never_writes_into_another_users_file() {
    let Some(w) = world(
        "print_env_never_writes_into_another_users_file",
        &["weston"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
I sh -c 'touch /tmp/wl.env && chmod 666 /tmp/wl.env'
VB "$W" run --print-env /tmp/wl.env -- $WESTON >"$O/run.log" 2>&1 &
RP=$!
wait_out /tmp/wl.env $RP
finish $RP
say file; stat -c '%U %a %s' /tmp/wl.env
say log; cat "$O/run.log"
say weston; pgrep -x weston || echo none
"#,
    );
    out.eq("rc", "2")
        .eq("file", &format!("{INTRUDER} 666 0"))
        .contains("log", &format!("belongs to uid {}", w.intruder))
        .contains("log", "choose another path")
        .eq("weston", "none");
}

/// Hole 1, the other half: the file `run` writes is fresh, the victim's, 0600, holds the
/// export lines, and is gone (with no temp file left) once `run` ends.
#[test]
fn print_env_is_a_fresh_private_file_removed_when_run_ends() {
    let Some(w) = world(
        "print_env_is_a_fresh_private_file_removed_when_run_ends",
        &["weston"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
VB "$W" run --print-env /tmp/wl.env -- $WESTON >"$O/run.log" 2>&1 &
RP=$!
wait_out /tmp/wl.env $RP
say file; stat -c '%U %a %F' /tmp/wl.env
say content; cat /tmp/wl.env
finish $RP
say after; ls -A /tmp | grep wl.env || echo none
"#,
    );
    out.eq("file", &format!("{TEST_USER} 600 regular file"))
        .contains(
            "content",
            &format!(
                "export WAYLAND_DISPLAY='/tmp/waysock-{}/wayland-1'",
                w.victim
            ),
        )
        .eq("rc", "0")
        .eq("after", "none");
}

/// Hole 2: a FIFO at the `--print-env` path is never opened (the old code blocked in `open`
/// forever, ignoring SIGTERM, and left weston a zombie).
#[test]
fn print_env_on_a_fifo_is_refused_and_never_blocks() {
    let Some(w) = world(
        "print_env_on_a_fifo_is_refused_and_never_blocks",
        &["weston"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
I mkfifo -m 666 /tmp/wl.env
ends_by_itself "$W" run --print-env /tmp/wl.env -- $WESTON
say log; cat "$O/run.log"
say weston; pgrep -x weston || echo none
"#,
    );
    out.absent("hung")
        .eq("rc", "2")
        .contains("log", "is a FIFO, not a regular file")
        .eq("weston", "none");
}

/// Hole 3: a display name cannot lead out of the runtime dir, from the flag or from
/// `WAYLAND_DISPLAY` (exit 2, naming the rule), and an absolute path into another user's
/// directory is refused as untrusted. The intruder's socket is never connected to.
#[test]
fn display_names_never_lead_to_another_users_socket() {
    let Some(w) = world("display_names_never_lead_to_another_users_socket", &[]) else {
        return;
    };
    let out = w.script(
        r#"
I mkdir -m 755 /tmp/mal
bait /tmp/mal/wayland-1 /tmp/mal/hit
V mkdir -m 700 /tmp/waysock-$VU
V env XDG_RUNTIME_DIR=/tmp/waysock-$VU WAYLAND_DISPLAY=../mal/wayland-1 "$W" exec -- true 2>"$O/e1"
status rc_env_var
V "$W" exec --display ../../tmp/mal/wayland-1 -- true 2>"$O/e2"
status rc_flag
V env XDG_RUNTIME_DIR=/tmp/waysock-$VU "$W" env --display ../mal/wayland-1 2>"$O/e3"
status rc_env_cmd
V "$W" exec --display /tmp/mal/wayland-1 -- true 2>"$O/e4"
status rc_absolute
V env WAYLAND_DISPLAY=/tmp/mal/wayland-1 "$W" exec -- true 2>"$O/e5"
status rc_absolute_env
say e1; cat "$O/e1"
say e2; cat "$O/e2"
say e4; cat "$O/e4"
say e5; cat "$O/e5"
sleep 0.3
say hit; ls /tmp/mal/hit 2>/dev/null || echo none
"#,
    );
    out.eq("rc_env_var", "2")
        .contains(
            "e1",
            "WAYLAND_DISPLAY: invalid display name \"../mal/wayland-1\"",
        )
        .contains("e1", "contains '/'")
        .eq("rc_flag", "2")
        .contains("e2", "--display")
        .eq("rc_env_cmd", "2")
        .eq("rc_absolute", "1")
        .contains("e4", &format!("/tmp/mal belongs to uid {}", w.intruder))
        .eq("rc_absolute_env", "1")
        .contains("e5", "not trusted")
        .eq("hit", "none");
}

/// Hole 4: a HOME inside a directory the intruder owns (sticky or not) is refused as a
/// security matter by `run` and `doctor` alike; nothing is created in it.
#[test]
fn a_home_inside_another_users_directory_is_refused() {
    let Some(w) = world(
        "a_home_inside_another_users_directory_is_refused",
        &["weston"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
I mkdir -m 1777 /tmp/malhome
ends_by_itself env HOME=/tmp/malhome "$W" run --strategy home -- $WESTON
say log; cat "$O/run.log"
say created; ls -A /tmp/malhome; echo end
V env HOME=/tmp/malhome "$W" doctor --strategy home >"$O/doctor.out" 2>&1
status rc_doctor
say doctor; cat "$O/doctor.out"
"#,
    );
    let owner = format!("/tmp/malhome belongs to uid {}", w.intruder);
    out.eq("rc", "1")
        .contains("log", &owner)
        .eq("created", "end")
        .eq("rc_doctor", "1")
        .contains("doctor", &owner)
        .contains("doctor", "Security warnings");
}

/// Hole 6: `WAYSOCK_PRELOAD_LIB` naming the intruder's copy of the shim, or a file that is
/// not the shim at all, is refused with the reason; the compositor is not started.
#[test]
fn preload_lib_must_be_ours_and_really_the_shim() {
    let Some(w) = world("preload_lib_must_be_ours_and_really_the_shim", &["weston"]) else {
        return;
    };
    let out = w.script(
        r#"
I mkdir -m 755 /tmp/evil
for d in /tmp /tmp/evil; do
  cp "$M/bin/libwaysock_preload.so" $d/ && chown "$INTRUDER": $d/libwaysock_preload.so
done
for lib in /tmp/libwaysock_preload.so /tmp/evil/libwaysock_preload.so /etc/passwd; do
  ends_by_itself env WAYSOCK_PRELOAD_LIB=$lib "$W" run --strategy abstract -- $WESTON
  say "log $lib"; cat "$O/run.log"
done
say weston; pgrep -x weston || echo none
"#,
    );
    let rc = out
        .run()
        .stdout()
        .lines()
        .filter(|l| l.starts_with("@@rc"))
        .count();
    assert_eq!(rc, 3, "{}", out.context());
    out.contains(
        "log /tmp/libwaysock_preload.so",
        &format!("refused: it belongs to uid {}", w.intruder),
    )
    .contains(
        "log /tmp/evil/libwaysock_preload.so",
        &format!("refused: /tmp/evil belongs to uid {}", w.intruder),
    )
    .contains("log /etc/passwd", "refused: it is not an ELF shared object")
    .eq("weston", "none");
    for section in [
        "log /tmp/libwaysock_preload.so",
        "log /tmp/evil/libwaysock_preload.so",
        "log /etc/passwd",
    ] {
        if out.sec(section).contains("is up on") {
            out.fail(&format!("{section}: the compositor was started"));
        }
    }
}

/// Hole 7: every abstract name squatted by the intruder: `run` names who holds them (uid from
/// `SO_PEERCRED`) and what to do, instead of weston's 32 failed binds.
#[test]
fn squatted_abstract_names_are_named_with_their_holder() {
    let Some(w) = world(
        "squatted_abstract_names_are_named_with_their_holder",
        &["weston", "ss"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
for n in $(seq 0 32); do I socat ABSTRACT-LISTEN:wayland-$VU-$n,fork /dev/null 2>/dev/null & done
i=0; while [ "$(ss -xl | grep -c "@wayland-$VU-")" -lt 33 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
say squatted; ss -xl | grep -c "@wayland-$VU-"
ends_by_itself env WAYSOCK_STRATEGIES=abstract "$W" run -- $WESTON
say log; cat "$O/run.log"
"#,
    );
    out.eq("squatted", "33")
        .eq("rc", "1")
        .contains(
            "log",
            &format!("32 are held by uid {}, another user", w.intruder),
        )
        .contains("log", "fix:");
}

/// Hole 8: a directory whose wayland-1..32 are all taken (their locks held, as 32 running
/// compositors hold them) is full for a stock compositor: `run` moves on to the next place
/// (`/run/waysock-UID`: the sandbox's `/run` is writable), and `doctor` predicts the same
/// place for `run`.
#[test]
fn a_full_directory_moves_run_on_to_the_next_place() {
    let Some(w) = world(
        "a_full_directory_moves_run_on_to_the_next_place",
        &["weston", "flock"],
    ) else {
        return;
    };
    let out = w.script(
        r#"
D=/tmp/waysock-$VU
V mkdir -m 700 $D
# Blocking, so that the check below (which takes each lock for a moment) only delays them.
for n in $(seq 1 32); do V flock $D/wayland-$n.lock sleep 120 & done
held() { for n in $(seq 1 32); do V flock -n $D/wayland-$n.lock true && return 1; done; return 0; }
i=0; while ! held && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
say held; held && echo all || echo some
V "$W" doctor --json >"$O/doctor.json" 2>&1
say doctor; cat "$O/doctor.json"
VB "$W" run --print-env "$O/env" -- $WESTON >"$O/run.log" 2>&1 &
RP=$!
wait_out "$O/env" $RP
say env; cat "$O/env"
finish $RP
say log; cat "$O/run.log"
"#,
    );
    out.eq("held", "all").contains(
        "env",
        &format!(
            "export WAYLAND_DISPLAY='/run/waysock-{}/wayland-1'",
            w.victim
        ),
    );
    let doctor: serde_json::Value = serde_json::from_str(out.sec("doctor"))
        .unwrap_or_else(|e| out.fail(&format!("doctor --json: {e}")));
    assert_eq!(
        doctor["run_choice"]["strategy"],
        "private-run",
        "{}",
        out.context()
    );
}

/// The registry file in the victim's place belongs to the intruder: `run` says so at the
/// default verbosity (it used to refuse it silently) and still brings the display up.
#[test]
fn a_foreign_registry_is_warned_about() {
    let Some(w) = world("a_foreign_registry_is_warned_about", &["weston"]) else {
        return;
    };
    let out = w.script(
        r#"
I sh -c "touch /dev/shm/waysock-$VU.registry && chmod 644 /dev/shm/waysock-$VU.registry"
VB "$W" run --print-env "$O/env" -- $WESTON >"$O/run.log" 2>&1 &
RP=$!
wait_out "$O/env" $RP
say env; cat "$O/env"
finish $RP
say log; cat "$O/run.log"
"#,
    );
    out.contains("env", "export WAYLAND_DISPLAY=")
        .contains("log", "WARN")
        .contains("log", "registry refusing");
}
