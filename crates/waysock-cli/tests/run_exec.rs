//! `waysock run` with the real weston 10 (and sway 1.7) and `waysock exec` with the real clients
//! `wayland-info` and `weston-simple-shm`, in the environments of issue 3, made for real.
//!
//! Every case is one sandbox: a private mount namespace with its own tmpfs over `/tmp`, `/run`
//! and `/dev/shm` (so no test sees another's registry or directories, and tests run in
//! parallel), a scratch tmpfs at `$M` (logs in `$M/out`, `HOME` in `$M/home`, a copy of the
//! binary in `$M/bin`), and a private pid namespace: when the script ends or the test's time
//! limit kills it, the kernel kills every compositor and client it left behind.
//!
//! The script starts `waysock run … &`, waits (bounded) for its `--print-env` file, runs the
//! clients through `waysock exec`, sends `waysock run` a signal, waits (bounded), and lists
//! what is left. It prints sections (`@@name` lines) that the test asserts on; a failure
//! prints the whole run (argv, environment, status, stdout with weston's log, stderr).

use std::time::Duration;

use serde_json::Value;
use waysock_testkit::script::prelude;
use waysock_testkit::{
    program, relocated, run_command, set_mode, skip, snapshot, test_user, Needs, Out, Sandbox,
    Script, Stage, TEST_USER,
};

/// The binary under test, copied where no sandbox mount hides it (see `relocated`).
fn bin() -> &'static std::path::Path {
    relocated(env!("CARGO_BIN_EXE_waysock"))
}

/// The whole script, compositor and clients included; killed (with everything in its pid
/// namespace) after this.
const LIMIT: Duration = Duration::from_secs(60);

/// Shell functions every script gets after [`prelude::BASE`]. `$W` is waysock, `$M` the
/// scratch tmpfs, `$O` the log dir.
const PRELUDE: &str = r#"
export O WESTON
# waysock run ARGS in the background; waits at most 15 s for its --print-env file.
start_run() {
  "$W" run --print-env "$O/env" "$@" >"$O/run.log" 2>&1 &
  RP=$!
  i=0
  while [ ! -s "$O/env" ] && [ $i -lt 150 ] && alive $RP; do sleep 0.1; i=$((i+1)); done
  say env; cat "$O/env" 2>/dev/null
}
# Signals waysock run (default TERM), waits at most 10 s, prints its status.
stop_run() {
  kill -"${1:-TERM}" $RP
  i=0
  while alive $RP && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  if alive $RP; then echo "waysock run ignored SIG${1:-TERM} for 10 s: killed" >&2; kill -KILL $RP; fi
  wait $RP; rc=$?
  say run_status; echo $rc
}
# What waysock (or the compositor it started) left in the shared places: its private dirs,
# display sockets and locks, not what others make there (Xwayland's /tmp/.X11-unix, mount(8)'s
# /run/mount). The per-user registry stays by design.
leftovers() {
  find /tmp /run /dev/shm -mindepth 1 \( -path '*waysock*' -o -name 'wayland-*' \) \
    ! -name '*.registry' ! -name '*.registry.lock' 2>/dev/null | sort
}
# waysock exec [ARGS] -- wayland-info: "STATUS wl_compositor" when it saw the global.
info() {
  timeout 10 "$W" exec "$@" -- wayland-info >"$O/info.out" 2>"$O/info.err"; rc=$?
  if grep -q "interface: 'wl_compositor'" "$O/info.out"; then echo "$rc wl_compositor"
  else echo "$rc none"; cat "$O/info.err"; fi
}
# waysock exec [ARGS] -- weston-simple-shm for 3 s: 124 means it was still drawing.
shm() {
  timeout 3 "$W" exec "$@" -- weston-simple-shm >/dev/null 2>"$O/shm.err"; rc=$?
  echo $rc; [ $rc = 124 ] || cat "$O/shm.err"
}
# What the client is handed.
handed() { "$W" exec "$@" -- sh -c 'echo "${XDG_RUNTIME_DIR-unset} ${WAYLAND_DISPLAY-unset} ${WAYLAND_SOCKET-unset}"'; }
"#;

const EPILOGUE: &str = r#"
say leftovers; leftovers
say registry; cat /dev/shm/waysock-*.registry 2>/dev/null
say runlog; cat "$O/run.log" 2>/dev/null
"#;

/// What a case needs besides namespaces.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Weston,
    Sway,
    Nothing,
}

/// A prepared stage for one case; `None` after reporting the skip. `user`: run the script as
/// the unprivileged test user.
///
/// Every case is one [`Stage`] with fresh tmpfs over `/tmp`, `/run` and `/dev/shm`,
/// `HOME=$M/home`, the binary at `$W=$M/bin/waysock` (the build dir may not be reachable for
/// another user) and a private pid namespace.
fn case(test: &'static str, user: bool, needs: Want) -> Option<Case> {
    let as_user = user || needs == Want::Sway;
    let programs: &[&str] = match needs {
        Want::Weston => &["weston", "wayland-info", "weston-simple-shm", "timeout"],
        Want::Sway => &["sway", "wayland-info", "timeout"],
        Want::Nothing => &[],
    };
    let mut probe = Needs::new(test).namespaces().programs(programs);
    if as_user {
        probe = probe.test_user();
    }
    if !probe.met() {
        return None;
    }
    let mut stage = Stage::new("run").private_tmp().home().install(bin());
    let w = format!("{}/bin/waysock", stage.m());
    stage = stage.with(|s| s.private_pids().env("W", w));
    if as_user {
        stage = stage.owned_by(TEST_USER).with(|s| s.as_user(TEST_USER));
    }
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(PRELUDE)
        .epilogue(EPILOGUE)
        .limit(LIMIT + Duration::from_secs(5));
    Some(Case {
        test,
        stage,
        script,
    })
}

/// One case: its stage and script template.
struct Case {
    test: &'static str,
    stage: Stage,
    script: Script,
}

impl Case {
    fn with(mut self, f: impl FnOnce(Sandbox) -> Sandbox) -> Self {
        self.stage = self.stage.with(f);
        self
    }

    /// The scratch tmpfs mount point inside the sandbox.
    fn m(&self) -> &str {
        self.stage.m()
    }

    /// Runs `body` between the prelude and the epilogue.
    fn script(&self, body: &str) -> Out {
        self.script.run(self.stage.sandbox(), body)
    }
}

/// The checks these scenarios share.
trait Checks {
    /// The compositor came up at `socket`: the `--print-env` file says so.
    fn up_at(&self, runtime_dir: &str, socket: &str) -> &Self;
    /// `wayland-info` through `waysock exec` saw `wl_compositor`, and `weston-simple-shm` was
    /// still drawing after 3 s.
    fn clients_ok(&self, info: &str, shm: &str) -> &Self;
    /// `waysock run` exited 0 after the signal, and took its directory and record with it.
    fn clean_exit(&self) -> &Self;
}

impl Checks for Out {
    fn up_at(&self, runtime_dir: &str, socket: &str) -> &Self {
        self.eq(
            "env",
            &format!("export XDG_RUNTIME_DIR='{runtime_dir}'\nexport WAYLAND_DISPLAY='{socket}'"),
        )
    }

    fn clients_ok(&self, info: &str, shm: &str) -> &Self {
        self.eq(info, "0 wl_compositor").eq(shm, "124")
    }

    fn clean_exit(&self) -> &Self {
        self.eq("run_status", "0")
            .eq("leftovers", "")
            .eq("registry", "")
    }
}

/// The plainest scenario: weston under `waysock run`, `wayland-info` and `weston-simple-shm`
/// through `waysock exec`, then SIGTERM.
const WESTON_SERVES_CLIENTS: &str = r#"start_run -- $WESTON
say info; info
say shm; shm
stop_run"#;

// ---- where the compositor may bind ---------------------------------------------------------

#[test]
fn runtime_dir_unset_weston_runs_in_private_tmp() {
    let Some(c) = case(
        "runtime_dir_unset_weston_runs_in_private_tmp",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let out = c.script(
        r#"start_run -- $WESTON
           say ls; "$W" ls --json
           say handed; handed
           say info; info
           say shm; shm
           say record; cat /dev/shm/waysock-0.registry
           stop_run"#,
    );
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .eq("handed", "/tmp/waysock-0 /tmp/waysock-0/wayland-1 unset")
        .clients_ok("info", "shm")
        .contains("record", "wayland-1 unix:/tmp/waysock-0/wayland-1 ")
        .contains("record", " private-tmp")
        .contains(
            "runlog",
            "weston is up on unix:/tmp/waysock-0/wayland-1 (private-tmp)",
        )
        .contains("runlog", "caught signal 15")
        .clean_exit();
    let ls = out.json("ls");
    let entries = ls.as_array().unwrap();
    if entries.len() != 1
        || entries[0]["endpoint"] != "unix:/tmp/waysock-0/wayland-1"
        || entries[0]["strategy"] != "private-tmp"
        || entries[0]["published"] != true
        || !entries[0]["command"]
            .as_str()
            .unwrap_or("")
            .contains("weston")
    {
        out.fail("ls --json does not list exactly the published weston");
    }
}

#[test]
fn runtime_dir_missing_and_uncreatable() {
    let Some(c) = case("runtime_dir_missing_and_uncreatable", false, Want::Weston) else {
        return;
    };
    let c = c.with(|s| s.env("XDG_RUNTIME_DIR", "/nonexistent/xdg"));
    let out = c.script(
        r#"start_run -- $WESTON
           say info; info
           say shm; shm
           stop_run
           say created; ls -d /nonexistent 2>&1"#,
    );
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .clients_ok("info", "shm")
        .contains("created", "No such file")
        .clean_exit();
}

#[test]
fn runtime_dir_missing_under_an_empty_run() {
    // The common container case: XDG_RUNTIME_DIR=/run/user/0 but /run is empty.
    let Some(c) = case(
        "runtime_dir_missing_under_an_empty_run",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let c = c.with(|s| s.env("XDG_RUNTIME_DIR", "/run/user/0"));
    let out = c.script(
        r#"start_run -- $WESTON
           say handed; handed
           say info; info
           say shm; shm
           stop_run"#,
    );
    // /run/user is missing, so /run/user/0 cannot be made 0700 inside its parent (SPEC §2:
    // next candidate); nothing is created in /run (clean_exit lists leftovers).
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .eq("handed", "/tmp/waysock-0 /tmp/waysock-0/wayland-1 unset")
        .clients_ok("info", "shm")
        .clean_exit();
}

#[test]
fn runtime_dir_read_only() {
    let Some(c) = case("runtime_dir_read_only", false, Want::Weston) else {
        return;
    };
    let rt = format!("{}/rt", c.m());
    let c = c.with(|s| {
        s.sh(format!(
            "mkdir -m 700 {rt} && mount -t tmpfs -o ro,mode=700 none {rt}"
        ))
        .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(
        r#"start_run -- $WESTON
           say handed; handed
           say info; info
           say shm; shm
           stop_run INT
           say rt_after; ls -A "$XDG_RUNTIME_DIR""#,
    );
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        // The client keeps the runtime dir it had (it is usable for reading), with an
        // absolute WAYLAND_DISPLAY.
        .eq("handed", &format!("{rt} /tmp/waysock-0/wayland-1 unset"))
        .clients_ok("info", "shm")
        .contains("runlog", "caught signal 2")
        .eq("rt_after", "")
        .clean_exit();
}

#[test]
fn tmp_and_run_read_only_choose_private_shm() {
    let Some(c) = case(
        "tmp_and_run_read_only_choose_private_shm",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let c = c.with(|s| s.read_only("/tmp").read_only("/run"));
    let out = c.script(WESTON_SERVES_CLIENTS);
    out.up_at("/dev/shm/waysock-0", "/dev/shm/waysock-0/wayland-1")
        .clients_ok("info", "shm")
        .contains("runlog", "(private-shm)")
        .clean_exit();
}

#[test]
fn runtime_dir_of_another_user() {
    let Some(c) = case("runtime_dir_of_another_user", true, Want::Weston) else {
        return;
    };
    let uid = test_user().unwrap().0;
    let rt = format!("{}/root-rt", c.m());
    let c = c.with(|s| {
        s.sh(format!("mkdir -m 700 {rt}"))
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(
        r#"say id; id -u
           start_run -- $WESTON
           say handed; handed
           say info; info
           say shm; shm
           stop_run"#,
    );
    let dir = format!("/tmp/waysock-{uid}");
    out.eq("id", &uid.to_string())
        .up_at(&dir, &format!("{dir}/wayland-1"))
        // XDG_RUNTIME_DIR is not usable for this user: the client gets the display's dir.
        .eq("handed", &format!("{dir} {dir}/wayland-1 unset"))
        .clients_ok("info", "shm")
        .clean_exit();
}

#[test]
fn runtime_dir_longer_than_sun_path() {
    let Some(c) = case("runtime_dir_longer_than_sun_path", false, Want::Weston) else {
        return;
    };
    let rt = format!("{}/{}/{}", c.m(), "d".repeat(60), "e".repeat(60));
    assert!(rt.len() + "/wayland-1".len() > 107);
    let c = c.with(|s| {
        s.sh(format!("mkdir -p {rt} && chmod 700 {rt}"))
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(WESTON_SERVES_CLIENTS);
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .clients_ok("info", "shm")
        .clean_exit();
}

#[test]
fn stale_sockets_in_runtime_dir() {
    // Stale wayland-0 and wayland-1 (socket files, unlocked lock files) in a good runtime dir on
    // the real filesystem (ext4 reuses inode numbers: weston reclaiming wayland-1 may get the
    // old socket's inode back). A plain client dials wayland-0 and is refused; `waysock run`
    // still sees weston come up, and `waysock exec` finds it.
    let Some(c) = case("stale_sockets_in_runtime_dir", false, Want::Weston) else {
        return;
    };
    if let Err(why) = program("python3") {
        skip(c.test, &why);
        return;
    }
    let rt = c.stage.scratch().join("rt");
    std::fs::create_dir(&rt).unwrap();
    set_mode(&rt, 0o700);
    let rt = rt.display().to_string();
    let c = c.with(|s| {
        s.sh(format!(
            "python3 -c 'import socket,sys\nfor n in sys.argv[1:]:\n s=socket.socket(socket.AF_UNIX); s.bind(n); s.close(); open(n+\".lock\",\"w\").close()' {rt}/wayland-0 {rt}/wayland-1"
        ))
        .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(
        r#"say before; stat -c '%n %F' "$XDG_RUNTIME_DIR"/* | sed "s|$XDG_RUNTIME_DIR/||"
           say plain_before; timeout 10 wayland-info >/dev/null 2>&1; echo $?
           start_run -- $WESTON
           say plain; timeout 10 wayland-info >/dev/null 2>"$O/plain.err"; echo $?; cat "$O/plain.err"
           say handed; handed
           say info; info
           say shm; shm
           stop_run
           say after; stat -c '%n %F' "$XDG_RUNTIME_DIR"/* | sed "s|$XDG_RUNTIME_DIR/||""#,
    );
    let stale = "wayland-0 socket\nwayland-0.lock regular empty file";
    out.contains("before", stale)
        .up_at(&rt, &format!("{rt}/wayland-1"))
        .contains("runlog", "(runtime-dir, observed)")
        .contains("plain", "Connection refused")
        .eq("handed", &format!("{rt} {rt}/wayland-1 unset"))
        .clients_ok("info", "shm")
        .eq("run_status", "0")
        // waysock touched nothing that is not its own: the stale wayland-0 is still there.
        .eq("after", stale)
        .eq("registry", "");
    if out.sec("plain_before").starts_with('0') {
        out.fail("wayland-info should fail against a stale wayland-0");
    }
}

#[test]
fn live_weston_already_on_wayland_1_keeps_answering() {
    let Some(c) = case(
        "live_weston_already_on_wayland_1_keeps_answering",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let rt = format!("{}/rt", c.m());
    let c = c.with(|s| {
        s.sh(format!("mkdir -m 700 {rt}"))
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(
        r#"$WESTON >"$O/first.log" 2>&1 &
           FIRST=$!
           i=0
           until "$W" exec --endpoint "unix:$XDG_RUNTIME_DIR/wayland-1" -- true 2>/dev/null; do
             i=$((i+1)); [ $i -lt 100 ] || { echo "first weston did not come up" >&2; cat "$O/first.log" >&2; break; }
             sleep 0.1
           done
           say first; echo $FIRST
           start_run -- $WESTON
           say ls; "$W" ls --json
           # Both were started by this shell: nothing says which is meant, so exec refuses.
           "$W" exec -- true 2>"$O/tie"; rc=$?; say tie_rc; echo $rc; say tie; cat "$O/tie"
           say handed; handed --display wayland-2
           say info; info --display wayland-2
           say shm; shm --display wayland-2
           say info_first; info --display wayland-1
           stop_run
           say info_first_after; info --endpoint "unix:$XDG_RUNTIME_DIR/wayland-1"
           say shm_first_after; shm --display wayland-1
           kill $FIRST; wait $FIRST"#,
    );
    out.up_at(&rt, &format!("{rt}/wayland-2"))
        .eq("tie_rc", "1")
        .contains("tie", &format!("--display {rt}/wayland-1"))
        .contains("tie", &format!("--display {rt}/wayland-2"))
        .eq("handed", &format!("{rt} {rt}/wayland-2 unset"))
        .clients_ok("info", "shm")
        .eq("info_first", "0 wl_compositor")
        .eq("info_first_after", "0 wl_compositor")
        .eq("shm_first_after", "124")
        .eq("run_status", "0")
        .eq("registry", "");
    let first: u64 = out.sec("first").parse().unwrap();
    let ls = out.json("ls");
    let published: Vec<&Value> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["published"] == true)
        .collect();
    if published.len() != 1
        || published[0]["endpoint"] != format!("unix:{rt}/wayland-2")
        || published[0]["pid"] == first
    {
        out.fail("the second weston (wayland-2), not the first, must be published");
    }
}

#[test]
fn symlink_planted_at_private_tmp_is_never_used() {
    let Some(c) = case(
        "symlink_planted_at_private_tmp_is_never_used",
        true,
        Want::Weston,
    ) else {
        return;
    };
    let uid = test_user().unwrap().0;
    // The attacker's target lives on the real filesystem, visible to this process as well.
    let target = c.stage.scratch().join("attacker");
    std::fs::create_dir(&target).unwrap();
    set_mode(&target, 0o777);
    std::fs::write(target.join("bait"), "x").unwrap();
    let before = snapshot(c.stage.scratch());
    let plant = format!("/tmp/waysock-{uid}");
    let c = c.with(|s| s.sh(format!("ln -s {} {plant}", target.display())));
    let out = c.script(WESTON_SERVES_CLIENTS);
    let dir = format!("/run/waysock-{uid}");
    out.up_at(&dir, &format!("{dir}/wayland-1"))
        .clients_ok("info", "shm")
        .eq("run_status", "0")
        .eq("leftovers", &plant)
        .eq("registry", "");
    let after = snapshot(c.stage.scratch());
    // Only the sandbox's own scratch mount point may differ (it is a tmpfs inside).
    let strip = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| l.starts_with("attacker"))
            .collect()
    };
    if strip(before) != strip(after) {
        out.fail("the symlink's target was changed");
    }
}

#[test]
fn root_owned_0777_dir_planted_at_private_tmp_is_never_used() {
    let Some(c) = case(
        "root_owned_0777_dir_planted_at_private_tmp_is_never_used",
        true,
        Want::Weston,
    ) else {
        return;
    };
    let uid = test_user().unwrap().0;
    let plant = format!("/tmp/waysock-{uid}");
    let c = c.with(|s| s.sh(format!("mkdir -m 777 {plant} && touch {plant}/bait")));
    let body = format!(
        r#"say planted_before; find {plant} -printf '%p %y %m %U %i\n' | sort
           start_run -- $WESTON
           say info; info
           say shm; shm
           stop_run
           say planted_after; find {plant} -printf '%p %y %m %U %i\n' | sort"#
    );
    let out = c.script(&body);
    let dir = format!("/run/waysock-{uid}");
    out.up_at(&dir, &format!("{dir}/wayland-1"))
        .clients_ok("info", "shm")
        .eq("run_status", "0")
        .eq("planted_after", out.sec("planted_before"))
        .contains("planted_after", &format!("{plant} d 777 0 "))
        .eq("leftovers", &format!("{plant}\n{plant}/bait"))
        .eq("registry", "");
}

// ---- how clients find it -------------------------------------------------------------------

#[test]
fn client_with_env_i_finds_the_display_through_the_registry() {
    let Some(c) = case(
        "client_with_env_i_finds_the_display_through_the_registry",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let c = c.with(|s| s.read_only("/tmp"));
    let out = c.script(
        r#"start_run -- $WESTON
           say handed; env -i PATH="$PATH" "$W" exec -- sh -c 'echo "$XDG_RUNTIME_DIR $WAYLAND_DISPLAY"'
           say json; env -i PATH="$PATH" "$W" env --format json
           say info; env -i PATH="$PATH" timeout 10 "$W" exec -- wayland-info | grep -c "interface: 'wl_compositor'"
           say shm; env -i PATH="$PATH" timeout 3 "$W" exec -- weston-simple-shm >/dev/null 2>&1; echo $?
           say eval; env -i PATH="$PATH" W="$W" sh -c 'eval "$("$W" env)" && timeout 10 wayland-info' | grep -c "interface: 'wl_compositor'"
           stop_run"#,
    );
    out.up_at("/run/waysock-0", "/run/waysock-0/wayland-1")
        .eq("handed", "/run/waysock-0 /run/waysock-0/wayland-1")
        .eq("info", "1")
        .eq("shm", "124")
        .eq("eval", "1")
        .clean_exit();
    let v = out.json("json");
    if v["source"] != "registry"
        || v["WAYLAND_DISPLAY"] != "/run/waysock-0/wayland-1"
        || v["XDG_RUNTIME_DIR"] != "/run/waysock-0"
        || v["endpoint"] != "unix:/run/waysock-0/wayland-1"
    {
        out.fail("env --format json");
    }
}

#[test]
fn good_runtime_dir_is_only_observed() {
    let Some(c) = case("good_runtime_dir_is_only_observed", false, Want::Weston) else {
        return;
    };
    let rt = format!("{}/rt", c.m());
    let c = c.with(|s| {
        s.sh(format!("mkdir -m 700 {rt}"))
            .env("XDG_RUNTIME_DIR", &rt)
    });
    let out = c.script(
        r#"start_run -- $WESTON
           say weston_env; for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = weston ] && tr '\0' '\n' <$p/environ; done | grep -E '^(XDG_RUNTIME_DIR|WAYLAND_DISPLAY|WAYLAND_SOCKET|WAYSOCK_STATE_FD)=' | sort
           say ls; "$W" ls
           say info; info
           say shm; shm
           say plain; timeout 10 env WAYLAND_DISPLAY=wayland-1 wayland-info | grep -c "interface: 'wl_compositor'"
           stop_run
           say rt_after; ls -A "$XDG_RUNTIME_DIR"; ls -d "$XDG_RUNTIME_DIR""#,
    );
    out.up_at(&rt, &format!("{rt}/wayland-1"))
        .eq("weston_env", &format!("XDG_RUNTIME_DIR={rt}"))
        .contains("ls", &format!("unix:{rt}/wayland-1"))
        .contains("ls", "runtime-dir")
        .lacks("ls", "not published")
        .contains("runlog", "(runtime-dir, observed)")
        .clients_ok("info", "shm")
        .eq("plain", "1")
        // The runtime dir is not waysock's: it stays.
        .eq("rt_after", &rt)
        .clean_exit();
}

#[test]
fn state_fd_when_dev_shm_is_read_only() {
    // No registry: the compositor's children get the record in a sealed memfd.
    let Some(c) = case("state_fd_when_dev_shm_is_read_only", false, Want::Weston) else {
        return;
    };
    let c = c.with(|s| s.read_only("/dev/shm"));
    let out = c.script(
        r#"cat >"$O/compositor.sh" <<'EOF'
$WESTON &
wp=$!
trap 'kill -TERM $wp; wait $wp; exit 0' TERM
echo "${WAYSOCK_STATE_FD-unset}" >"$O/state_fd"
ls -l "/proc/self/fd/$WAYSOCK_STATE_FD" >"$O/state_fd_link" 2>&1
# run writes --print-env after publishing (sealing) the record.
i=0; while [ ! -s "$O/env" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
WAYSOCK_LOG=debug timeout 10 "$W" exec -- wayland-info >"$O/child.out" 2>"$O/child.err"
echo $? >"$O/child.rc"
wait $wp
EOF
           start_run -- sh "$O/compositor.sh"
           i=0; while [ ! -s "$O/child.rc" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
           say state_fd; cat "$O/state_fd"
           say state_fd_link; cat "$O/state_fd_link"
           say child_rc; cat "$O/child.rc"
           say child_compositor; grep -c "interface: 'wl_compositor'" "$O/child.out"
           say child_log; cat "$O/child.err"
           say ls; "$W" ls --json
           say info; info
           say shm; shm
           stop_run"#,
    );
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .contains("state_fd_link", "memfd:waysock-state")
        .eq("child_rc", "0")
        .eq("child_compositor", "1")
        .contains("child_log", "source=WAYSOCK_STATE_FD")
        // Outside the compositor's process tree there is no registry, but the private dir is
        // found by the directory scan.
        .clients_ok("info", "shm")
        .eq("run_status", "0")
        .eq("leftovers", "");
    if out.sec("state_fd").parse::<u32>().is_err() {
        out.fail("the compositor did not get WAYSOCK_STATE_FD");
    }
    let ls = out.json("ls");
    let e = &ls.as_array().unwrap()[..];
    if e.len() != 1
        || e[0]["endpoint"] != "unix:/tmp/waysock-0/wayland-1"
        || e[0]["published"] != false
    {
        out.fail("ls should list the unpublished display found in /tmp/waysock-0");
    }
}

// ---- status, signals, failures -------------------------------------------------------------

#[test]
fn run_passes_the_exit_status_through() {
    let Some(c) = case("run_passes_the_exit_status_through", false, Want::Nothing) else {
        return;
    };
    let out = c.script(
        r#""$W" run --ready-timeout 5 -- sh -c 'exit 7' 2>"$O/e7"; rc=$?; say exit7; echo $rc
           "$W" run --ready-timeout 5 -- sh -c 'kill -KILL $$' 2>"$O/e9"; rc=$?; say killed; echo $rc
           "$W" run -- /nonexistent/compositor 2>"$O/e127"; rc=$?; say missing; echo $rc
           say e7; cat "$O/e7"; say e9; cat "$O/e9"; say e127; cat "$O/e127""#,
    );
    out.eq("exit7", "7")
        .eq("killed", "137")
        .eq("missing", "127")
        .contains("e7", "exited: status 7")
        .contains("e9", "killed by signal 9")
        .contains("e127", "/nonexistent/compositor")
        // The private dir made for the compositor is gone again.
        .eq("leftovers", "");
}

#[test]
fn sigterm_right_after_start_leaves_nothing_behind() {
    // A service manager may stop `run` the moment it started it. At every moment — before the
    // private dir exists, while it is made, while the compositor starts — SIGTERM must end
    // `run` with 143 and leave nothing behind (before, a signal between making the dir and
    // installing the forwarder killed `run` with the dir left in /tmp).
    let Some(c) = case(
        "sigterm_right_after_start_leaves_nothing_behind",
        false,
        Want::Nothing,
    ) else {
        return;
    };
    let out = c.script(
        r#"say rcs
           for d in 0 0.001 0.002 0.003 0.005 0.007 0.01 0.015 0.02 0.03 0.05 0.1 0.2; do
             "$W" run --ready-timeout 30 -- sleep 30 2>/dev/null & rp=$!
             sleep $d; kill -TERM $rp; wait $rp; rc=$?
             echo "$d $rc"
             left=$(leftovers)
             [ -z "$left" ] || echo "after $d: $left"
           done"#,
    );
    let rcs = out.sec("rcs");
    for line in rcs.lines() {
        if !line.ends_with(" 143") {
            out.fail(&format!(
                "expected status 143 and nothing left; got: {line}"
            ));
        }
    }
    out.eq("leftovers", "");
}

#[test]
fn sighup_is_forwarded_and_the_dead_display_is_cleaned_up() {
    // weston does not handle SIGHUP: it dies of it, leaving its socket and lock behind.
    let Some(c) = case(
        "sighup_is_forwarded_and_the_dead_display_is_cleaned_up",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let out = c.script(
        r#"start_run -- $WESTON
           say info; info
           say record; cat /dev/shm/waysock-0.registry
           stop_run HUP
           say exec_after; "$W" exec -- true 2>&1; echo "status $?""#,
    );
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .eq("info", "0 wl_compositor")
        .contains("record", "wayland-1 unix:/tmp/waysock-0/wayland-1 ")
        .eq("run_status", "129")
        .contains("runlog", "killed by signal 1")
        .contains("exec_after", "status 1")
        .eq("leftovers", "")
        .eq("registry", "");
}

#[test]
fn exec_with_nothing_running_lists_every_place() {
    let Some(c) = case(
        "exec_with_nothing_running_lists_every_place",
        false,
        Want::Nothing,
    ) else {
        return;
    };
    let out = c.script(
        r#""$W" exec -- true 2>"$O/e"; rc=$?; say rc; echo $rc; say tried; cat "$O/e"
           WAYLAND_DISPLAY=wayland-5 "$W" exec -- true 2>"$O/e"; rc=$?; say rc_display; echo $rc; say tried_display; cat "$O/e"
           WAYLAND_SOCKET=abc "$W" exec -- true 2>"$O/e"; rc=$?; say rc_abc; echo $rc; say abc; cat "$O/e"
           WAYLAND_SOCKET=999 "$W" exec -- true 2>"$O/e"; rc=$?; say rc_999; echo $rc; say n999; cat "$O/e"
           WAYLAND_SOCKET=5 "$W" exec -- true 5</etc/passwd 2>"$O/e"; rc=$?; say rc_file; echo $rc; say file; cat "$O/e""#,
    );
    out.eq("rc", "1")
        .contains("tried", "no Wayland display answered")
        .contains("tried", "registry /dev/shm/waysock-0.registry: no records")
        .contains("tried", "private-tmp /tmp/waysock-0: no such file (ENOENT)")
        .contains("tried", "abstract:wayland-0-0..32: nothing listening")
        .eq("rc_display", "1")
        .contains(
            "tried_display",
            "WAYLAND_DISPLAY=wayland-5: XDG_RUNTIME_DIR is not set",
        )
        .eq("rc_abc", "1")
        .contains(
            "abc",
            "WAYLAND_SOCKET=abc: not a decimal descriptor number: ignored (nothing adopted)",
        )
        .eq("rc_999", "1")
        .contains(
            "n999",
            "WAYLAND_SOCKET=999: fd 999 is not an open file descriptor (EBADF)",
        )
        .eq("rc_file", "1")
        .contains(
            "file",
            "WAYLAND_SOCKET=5: fd 5 is a regular file, not a socket: ignored (nothing adopted)",
        )
        .eq("leftovers", "");
}

#[test]
fn garbage_wayland_socket_is_ignored_and_the_real_display_found() {
    let Some(c) = case(
        "garbage_wayland_socket_is_ignored_and_the_real_display_found",
        false,
        Want::Weston,
    ) else {
        return;
    };
    let out = c.script(
        r#"start_run -- $WESTON
           export WAYLAND_SOCKET=abc
           say handed_abc; handed
           say info_abc; info
           export WAYLAND_SOCKET=999
           say handed_999; handed
           say info_999; info
           export WAYLAND_SOCKET=5
           say handed_file; handed 5</etc/passwd
           say info_file; info 5</etc/passwd
           say shm_file; shm 5</etc/passwd
           unset WAYLAND_SOCKET
           stop_run"#,
    );
    let handed = "/tmp/waysock-0 /tmp/waysock-0/wayland-1 unset";
    out.up_at("/tmp/waysock-0", "/tmp/waysock-0/wayland-1")
        .eq("handed_abc", handed)
        .eq("info_abc", "0 wl_compositor")
        .eq("handed_999", handed)
        .eq("info_999", "0 wl_compositor")
        .eq("handed_file", handed)
        .eq("info_file", "0 wl_compositor")
        .eq("shm_file", "124")
        .clean_exit();
}

#[test]
fn exec_with_a_bad_endpoint_is_a_usage_error() {
    // Rejected before anything is looked at: no sandbox needed.
    for (args, needle) in [
        (&["--endpoint", "bogus:x"][..], "--endpoint"),
        (&["--endpoint", "unix:relative/path"][..], "--endpoint"),
        (
            &["--endpoint", "wayland-0", "--display", "wayland-0"][..],
            "cannot be used with",
        ),
    ] {
        let mut cmd = std::process::Command::new(bin());
        cmd.arg("exec").args(args).args(["--", "true"]);
        let run = run_command(cmd, Duration::from_secs(10));
        run.assert_code(2);
        assert!(run.stderr().contains(needle), "{}", run.context());
    }
}

// ---- sway ----------------------------------------------------------------------------------

#[test]
fn sway_without_runtime_dir_as_test_user() {
    let Some(c) = case("sway_without_runtime_dir_as_test_user", true, Want::Sway) else {
        return;
    };
    let uid = test_user().unwrap().0;
    let out = c.script(
        r#"export WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman
           start_run -- sway -c /dev/null
           unset WLR_BACKENDS WLR_LIBINPUT_NO_DEVICES WLR_RENDERER
           say info; info
           say ls; "$W" ls
           stop_run"#,
    );
    let dir = format!("/tmp/waysock-{uid}");
    out.up_at(&dir, &format!("{dir}/wayland-1"))
        .eq("info", "0 wl_compositor")
        .contains("ls", &format!("unix:{dir}/wayland-1"))
        .contains("ls", "sway")
        .clean_exit();
}
