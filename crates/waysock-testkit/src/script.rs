//! Scripted scenarios: a shell script run in a [`Sandbox`] prints named sections (`@@name`
//! alone on a line, then the section's text), and the test asserts on them through [`Out`],
//! which dumps the whole run (argv, environment, status, stdout, stderr) on any failure.
//!
//! A [`Script`] is prelude pieces (shell functions; the common ones are in [`prelude`]), the
//! test's body, and an epilogue.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::proc::{run_command, Run};
use crate::sandbox::{Sandbox, Stage};

/// Shell pieces scripts share.
pub mod prelude {
    /// `set -u`, `cd /`, `$O` (the log dir `$M/out`), `$WESTON` (a headless weston command
    /// line), `say NAME` (starts section `NAME`) and `alive PID` (running and not a zombie:
    /// `kill -0` succeeds on a zombie).
    pub const BASE: &str = r#"
set -u
cd /
O="$M/out"
WESTON="weston --backend=headless-backend.so --idle-time=0 --no-config"
say() { echo "@@$1"; }
# Running and not a zombie (kill -0 succeeds on a zombie).
alive() { st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ]; }
"#;

    /// After [`BASE`]: `status NAME` (the status of the command just before, as section
    /// `NAME`), bounded waits (`wait_end PID TENTHS`, `wait_for PATH`: 10 s for it to exist,
    /// `wait_file PATH`: 15 s for it to have content) and `finish PID [NAME]` (ends a
    /// background pid: TERM, 5 s, then KILL, said as section `hung`; its status as section
    /// `rc_NAME`, or `rc` without a name, and in `$rc`).
    pub const WAIT: &str = r#"
status() { r=$?; say "$1"; echo $r; }
wait_end() { i=0; while alive "$1" && [ $i -lt "$2" ]; do sleep 0.1; i=$((i+1)); done; }
wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; }
wait_file() { i=0; while [ ! -s "$1" ] && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; }
finish() {
  if alive "$1"; then kill -TERM "$1"; wait_end "$1" 50; fi
  if alive "$1"; then say hung; echo "ignored SIGTERM for 5 s"; kill -KILL "$1"; fi
  wait "$1"; rc=$?; say "rc${2:+_$2}"; echo $rc
}
"#;

    /// Headless sway and `waysock bridge` at both ends of a veth pair between two network
    /// namespaces, for a script run by [`in_pid_namespace`](crate::in_pid_namespace) with `$1`
    /// waysock, `$2` a scratch dir (0755), `$3`/`$4` the namespaces A and B (made here; the
    /// script exits 90 if it cannot), `$5` a number for names and addresses, `$6` the uid sway
    /// runs as (it refuses root). Set before it: `NET` (`10.N`: A is `$NET.$X.1`), `PORT` (the
    /// bridge's on A), `VETH` (a prefix for the veth names) and `BRIDGE` (extra options of both
    /// bridges). After it: `say`, `wait_log LOG TEXT`, `$sock` (sway's display in `$S/rt`),
    /// `direct CMD…` (a client of sway in A), `client CMD…` (a client of the bridge in B, where
    /// neither sway's socket nor A's network is in reach); logs `$S/sway.log`,
    /// `$S/compositor-bridge.log` and `$S/client-bridge.log`.
    pub const SWAY_BRIDGED: &str = r#"
set -u
W=$1; S=$2; A=$3; B=$4; X=$5; U=$6
say() { echo "@@$1"; }
# Waits up to 20 s for a line in a log.
wait_log() { i=0; until grep -q "$2" "$1"; do i=$((i+1)); [ $i -gt 200 ] && return 1; sleep 0.1; done; }
ip netns add $A || exit 90
ip netns add $B || exit 90
ip link add ${VETH}a$X netns $A type veth peer name ${VETH}b$X netns $B
ip -n $A addr add $NET.$X.1/24 dev ${VETH}a$X; ip -n $A link set ${VETH}a$X up; ip -n $A link set lo up
ip -n $B addr add $NET.$X.2/24 dev ${VETH}b$X; ip -n $B link set ${VETH}b$X up; ip -n $B link set lo up
mkdir -m 700 $S/rt $S/c; chown $U:$U $S/rt
head -c 32 /dev/urandom > $S/tok; chmod 600 $S/tok
ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env -u WAYLAND_DISPLAY \
  XDG_RUNTIME_DIR=$S/rt WLR_BACKENDS=headless WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
  sway -c /dev/null >$S/sway.log 2>&1 &
i=0; until ls $S/rt | grep -qE '^wayland-[0-9]+$'; do i=$((i+1)); [ $i -gt 200 ] && break; sleep 0.1; done
sock=$(ls $S/rt | grep -E '^wayland-[0-9]+$' | head -1)
direct() {
  ip netns exec $A setpriv --reuid=$U --regid=$U --init-groups env XDG_RUNTIME_DIR=$S/rt \
    WAYLAND_DISPLAY=$sock "$@"
}
ip netns exec $A env -u WAYSOCK_LOG $W bridge $BRIDGE --listen tcp:$NET.$X.1:$PORT \
  --connect unix:$S/rt/$sock --token-file $S/tok >$S/compositor-bridge.log 2>&1 &
wait_log $S/compositor-bridge.log 'waysock bridge: tcp:'
# B: its own network, and sway's runtime dir hidden under an empty tmpfs.
inb() {
  ip netns exec $B unshare -m sh -c "mount -t tmpfs -o mode=700 none $S/rt; exec \"\$@\"" sh "$@"
}
inb env -u WAYSOCK_LOG $W bridge $BRIDGE --listen unix:$S/c/wayland-9 --connect tcp:$NET.$X.1:$PORT \
  --token-file $S/tok >$S/client-bridge.log 2>&1 &
wait_log $S/client-bridge.log 'waysock bridge: unix:'
client() { inb env XDG_RUNTIME_DIR=$S/c WAYLAND_DISPLAY=wayland-9 "$@"; }
"#;

    /// `V CMD…`: CMD as the user `$VICTIM` (its groups, `HOME=$M/home`); `VB CMD… &` the same
    /// in the background (the subshell becomes the command, so `$!` is its pid).
    pub const VICTIM: &str = r#"
V() { setpriv --reuid="$VICTIM" --regid="$VICTIM" --init-groups env HOME="$M/home" "$@"; }
VB() { exec setpriv --reuid="$VICTIM" --regid="$VICTIM" --init-groups env HOME="$M/home" "$@"; }
"#;
}

/// Splits a script's stdout at its marker lines (`@@name` alone on a line) into named
/// sections, each trimmed. A name printed twice keeps its last section.
pub fn sections(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            current = Some(name.to_string());
            out.insert(name.to_string(), String::new());
        } else if let Some(name) = &current {
            if let Some(s) = out.get_mut(name) {
                s.push_str(line);
                s.push('\n');
            }
        }
    }
    for v in out.values_mut() {
        *v = v.trim().to_string();
    }
    out
}

/// A script template: prelude pieces before the body, an epilogue after it, and a time
/// limit after which the whole script is killed.
#[derive(Debug, Clone)]
pub struct Script {
    test: String,
    prelude: Vec<String>,
    epilogue: String,
    limit: Duration,
}

impl Script {
    /// A script for `test` (the name failure messages carry): no prelude, no epilogue, 60 s.
    pub fn new(test: &str) -> Script {
        Script {
            test: test.to_string(),
            prelude: Vec::new(),
            epilogue: String::new(),
            limit: Duration::from_secs(60),
        }
    }

    /// Adds a prelude piece (after those added before).
    pub fn prelude(mut self, piece: &str) -> Self {
        self.prelude.push(piece.to_string());
        self
    }

    /// What runs after the body (the sections every scenario reports).
    pub fn epilogue(mut self, piece: &str) -> Self {
        self.epilogue = piece.to_string();
        self
    }

    /// The time limit (the script is killed after it).
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// The full text: the prelude pieces, the body, the epilogue.
    pub fn text(&self, body: &str) -> String {
        let mut s = self.prelude.join("\n");
        s.push('\n');
        s.push_str(body);
        s.push('\n');
        s.push_str(&self.epilogue);
        s
    }

    /// Runs `body` with `sh -c` in `sandbox` and splits what it printed.
    pub fn run(&self, sandbox: &Sandbox, body: &str) -> Out {
        let run = run_command(sandbox.command("sh", &["-c", &self.text(body)]), self.limit);
        Out::new(&self.test, run)
    }
}

/// A stage and the script its scenarios run with.
#[derive(Debug)]
pub struct Scenario {
    /// Where the scripts run.
    pub stage: Stage,
    /// The template (prelude, epilogue, limit) each body is run with.
    pub script: Script,
}

impl Scenario {
    /// Runs `body` on the stage with the script's prelude and epilogue.
    pub fn run(&self, body: &str) -> Out {
        self.script.run(self.stage.sandbox(), body)
    }
}

/// A finished script and its `@@` sections. Every check panics with the whole run.
#[derive(Debug)]
pub struct Out {
    test: String,
    run: Run,
    sections: BTreeMap<String, String>,
}

impl Out {
    /// Splits `run`'s stdout into sections; `test` names it in failure messages.
    pub fn new(test: &str, run: Run) -> Out {
        let sections = sections(&run.stdout());
        Out {
            test: test.to_string(),
            run,
            sections,
        }
    }

    /// The run itself.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// Everything about the run, for a failure message.
    pub fn context(&self) -> String {
        self.run.context()
    }

    /// Fails the test: `what`, then the whole run.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{}: {what}\n{}", self.test, self.run.context())
    }

    /// A section, trimmed; fails if the script never printed it.
    pub fn sec(&self, name: &str) -> &str {
        match self.sections.get(name) {
            Some(s) => s,
            None => self.fail(&format!("no @@{name} section")),
        }
    }

    /// Fails unless section `name` is exactly `want`.
    pub fn eq(&self, name: &str, want: &str) -> &Self {
        if self.sec(name) != want {
            self.fail(&format!(
                "@@{name} is {:?}, expected {want:?}",
                self.sec(name)
            ));
        }
        self
    }

    /// Fails unless section `name` contains `needle`.
    pub fn contains(&self, name: &str, needle: &str) -> &Self {
        if !self.sec(name).contains(needle) {
            self.fail(&format!("@@{name} does not contain {needle:?}"));
        }
        self
    }

    /// Fails if section `name` contains `needle` (or is missing).
    pub fn lacks(&self, name: &str, needle: &str) -> &Self {
        if self.sec(name).contains(needle) {
            self.fail(&format!("@@{name} contains {needle:?}"));
        }
        self
    }

    /// Fails if the script printed section `name` at all.
    pub fn absent(&self, name: &str) -> &Self {
        if let Some(s) = self.sections.get(name) {
            self.fail(&format!("@@{name} is present: {s:?}"));
        }
        self
    }

    /// Section `name` parsed as JSON; fails if it is not JSON.
    pub fn json(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(self.sec(name))
            .unwrap_or_else(|e| self.fail(&format!("@@{name} is not JSON: {e}")))
    }
}
