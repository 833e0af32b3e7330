//! One command in fresh namespaces ([`Sandbox`]), and a stage for scripted scenarios
//! ([`Stage`]: a sandbox with a scratch tmpfs of its own).

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fs::{set_mode, Scratch};
use crate::proc::{built_shim, relocated, run_command, Run};

/// One command in a fresh mount namespace.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    setup: Vec<String>,
    user: Option<String>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    private_network: bool,
    private_pids: bool,
}

impl Sandbox {
    /// An empty sandbox: a private mount namespace and nothing else.
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// A root-side shell line run inside the namespace before the command (`set -e`).
    pub fn sh(mut self, line: impl Into<String>) -> Self {
        self.setup.push(line.into());
        self
    }

    /// Also a private network namespace (`unshare -n`) with `lo` up. Abstract Unix sockets are
    /// per network namespace: with this, tests binding abstract names cannot collide.
    pub fn private_network(mut self) -> Self {
        self.private_network = true;
        self.sh("ip link set lo up 2>/dev/null || true")
    }

    /// Also a private pid namespace with its own `/proc` (`unshare -p --fork --kill-child
    /// --mount-proc`): when the command (pid 1 there) ends, or the test kills `unshare`, every
    /// process it left behind (a background compositor) is killed by the kernel.
    pub fn private_pids(mut self) -> Self {
        self.private_pids = true;
        self
    }

    /// Mounts an empty read-only tmpfs over `path`.
    pub fn read_only(self, path: &str) -> Self {
        self.sh(format!("mount -t tmpfs -o ro,mode=755 none {path}"))
    }

    /// Mounts an empty writable tmpfs over `path`.
    pub fn tmpfs(self, path: &str) -> Self {
        self.sh(format!("mount -t tmpfs -o mode=1777 none {path}"))
    }

    /// Drops to `user` (with `setpriv`) for the command.
    pub fn as_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Sets a variable for the command.
    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), Some(v.into())));
        self
    }

    /// Removes a variable for the command.
    pub fn env_remove(mut self, k: impl Into<OsString>) -> Self {
        self.env.push((k.into(), None));
        self
    }

    /// Starts from an empty environment (plus `PATH`), like `env -i`.
    pub fn env_clear(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// The full command line, for running or spawning.
    pub fn command(&self, program: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut script = String::from("set -e\n");
        for line in &self.setup {
            script.push_str(line);
            script.push('\n');
        }
        script.push_str("exec \"$@\"\n");
        let mut cmd = Command::new("unshare");
        cmd.arg("-m");
        if self.private_network {
            cmd.arg("-n");
        }
        if self.private_pids {
            cmd.args(["-p", "--fork", "--kill-child", "--mount-proc"]);
        }
        cmd.args(["--propagation", "private", "sh", "-c", &script, "sh"]);
        if let Some(user) = &self.user {
            cmd.args([
                "setpriv",
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
            ]);
        }
        cmd.arg(program.as_ref());
        cmd.args(args);
        if self.clear_env {
            cmd.env_clear();
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs to completion (killed after `timeout`) and captures everything.
    pub fn run(&self, program: impl AsRef<Path>, args: &[&str], timeout: Duration) -> Run {
        run_command(self.command(program, args), timeout)
    }
}

/// A [`Sandbox`] with a scratch tmpfs of its own, the stage of a scripted scenario.
///
/// The scratch dir is made under `/var/tmp` (0755, so an unprivileged user can reach below
/// it); inside the namespace an empty tmpfs (0755) is mounted on its `m/` subdirectory, `$M`
/// names it, and `$M/home`, `$M/bin` and `$M/out` are made there (0755). The environment
/// starts empty (plus `PATH` and `M`). Nothing else is set: each suite adds its own private
/// mounts, variables and user.
#[derive(Debug)]
pub struct Stage {
    scratch: Scratch,
    m: String,
    sandbox: Sandbox,
}

impl Stage {
    /// A stage whose scratch dir is named after `prefix`.
    pub fn new(prefix: &str) -> Stage {
        let scratch = Scratch::new(prefix);
        // An unprivileged user must be able to reach the mount point below it.
        set_mode(scratch.path(), 0o755);
        let m = scratch.path().join("m");
        std::fs::create_dir(&m).expect("create the stage's mount point");
        let m = m.display().to_string();
        let sandbox = Sandbox::new()
            .env_clear()
            .env("M", &m)
            .sh(format!("mount -t tmpfs -o mode=755 none {m}"))
            .sh(format!("mkdir -m 755 {m}/home {m}/bin {m}/out"));
        Stage {
            scratch,
            m,
            sandbox,
        }
    }

    /// A stage for waysock's own scenarios: [`Stage::new`], then `bin` (the waysock under
    /// test, by way of [`relocated`]) and the preload shim built beside it copied to `$M/bin/`,
    /// `$W` naming that copy of waysock, and private pid and network namespaces.
    pub fn waysock(prefix: &str, bin: &str) -> Stage {
        let bin = relocated(bin);
        let mut stage = Stage::new(prefix).install(bin);
        if let Some(shim) = built_shim(bin) {
            stage = stage.install(&shim);
        }
        let w = format!("{}/bin/waysock", stage.m);
        stage.with(|s| s.private_pids().private_network().env("W", w))
    }

    /// The scratch tmpfs mount point (`$M`), as commands inside see it.
    pub fn m(&self) -> &str {
        &self.m
    }

    /// The scratch dir as seen from outside (its `m/` is hidden by the tmpfs inside).
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The sandbox as set up so far.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Changes the sandbox.
    pub fn with(mut self, f: impl FnOnce(Sandbox) -> Sandbox) -> Self {
        self.sandbox = f(self.sandbox);
        self
    }

    /// Fresh writable tmpfs over `/tmp`, `/run` and `/dev/shm`: no test sees another's files
    /// there, so tests run in parallel.
    pub fn private_tmp(self) -> Self {
        self.with(|s| s.tmpfs("/tmp").tmpfs("/run").tmpfs("/dev/shm"))
    }

    /// `HOME=$M/home`.
    pub fn home(self) -> Self {
        let home = format!("{}/home", self.m);
        self.with(|s| s.env("HOME", home))
    }

    /// A copy of `file` in `$M/bin/` (mode 0755): the build dir may not be reachable for
    /// another user, and sandboxes may mask the one it is in.
    pub fn install(self, file: &Path) -> Self {
        let name = file
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        let line = format!(
            "cp {} {m}/bin/{name} && chmod 755 {m}/bin/{name}",
            file.display(),
            m = self.m
        );
        self.with(|s| s.sh(line))
    }

    /// `$M/home` and `$M/out` belong to `user` (who can then write logs and a home there).
    pub fn owned_by(self, user: &str) -> Self {
        let line = format!("chown {user}: {m}/home {m}/out", m = self.m);
        self.with(|s| s.sh(line))
    }
}

/// Network namespaces a test makes (`ip netns add`), deleted on drop (even if the test panics).
#[derive(Debug)]
pub struct Netns(pub Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs `script` with `sh -c` in a private pid namespace (every process it starts dies with
/// it), `args` as `$1`…, without the caller's `WAYLAND_DISPLAY`, `WAYLAND_SOCKET` and
/// `DISPLAY`; killed after `limit`.
pub fn in_pid_namespace(script: &str, args: &[&std::ffi::OsStr], limit: Duration) -> Run {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-p",
        "--fork",
        "--kill-child",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .args(args)
    .env_remove("WAYLAND_DISPLAY")
    .env_remove("WAYLAND_SOCKET")
    .env_remove("DISPLAY");
    run_command(cmd, limit)
}

/// What a [`sway_bridged`] script printed: its sections, and the run's context (with the
/// script's `logs` section) for failure messages.
#[derive(Debug)]
pub struct SwayBridged {
    /// The script's stdout split at its `@@name` markers ([`crate::sections`]).
    pub sections: std::collections::BTreeMap<String, String>,
    /// The run's context followed by the `logs` section.
    pub context: String,
    /// The number the script used for names and addresses (`$X`).
    pub x: String,
}

impl SwayBridged {
    /// Section `name` (empty if the script never printed it).
    pub fn sec(&self, name: &str) -> String {
        self.sections.get(name).cloned().unwrap_or_default()
    }
}

/// Runs `script` after [`crate::script::prelude::SWAY_BRIDGED`] (with `vars`, the line that
/// sets `NET`, `PORT`, `VETH` and `BRIDGE`) in a private pid namespace: waysock `bin`
/// (relocated), the 0755 scratch dir `scratch`, two network namespaces named after `tag` and
/// deleted afterwards, and the test user's uid. Fails the test if the namespaces could not be
/// made (the caller probed root, `ip`, `unshare` and the test user first).
pub fn sway_bridged(
    bin: &str,
    scratch: &Scratch,
    tag: &str,
    vars: &str,
    script: &str,
    limit: Duration,
) -> SwayBridged {
    let (uid, _) = crate::users::test_user().expect("the caller probed the test user");
    let bin = relocated(bin);
    set_mode(scratch.path(), 0o755);
    let pid = std::process::id();
    let x = (pid % 250 + 1).to_string();
    let ns = Netns(vec![format!("{tag}-{pid}-a"), format!("{tag}-{pid}-b")]);
    let script = format!("{vars}\n{}{script}", crate::script::prelude::SWAY_BRIDGED);
    let run = in_pid_namespace(
        &script,
        &[
            bin.as_os_str(),
            scratch.path().as_os_str(),
            ns.0[0].as_ref(),
            ns.0[1].as_ref(),
            x.as_ref(),
            uid.to_string().as_ref(),
        ],
        limit,
    );
    let sections = crate::sections(&run.stdout());
    let logs = sections.get("logs").cloned().unwrap_or_default();
    let context = format!("{}\n--- logs:\n{logs}", run.context());
    assert_ne!(run.code(), Some(90), "cannot make namespaces\n{context}");
    SwayBridged {
        sections,
        context,
        x,
    }
}
