//! `waysock ssh [SSH-OPTIONS] [USER@]HOST -- CLIENT ARGS…`: runs CLIENT on HOST with its
//! display bridged to the local compositor, carried by the user's own `ssh`.
//!
//! ```text
//!  HOST                                              here
//!  CLIENT ─ display (the chain) ─ waysock ssh-remote          waysock ssh ─ compositor
//!                                   │ encodes, dials                ▲ decodes
//!                                   ▼                               │
//!                         /tmp/waysock-ssh-R.sock ══ ssh -R ══ PRIVATE/s (0700 dir)
//! ```
//!
//! - Here: the compositor is found by the usual discovery; a private 0700 directory holds the
//!   encoded listener; `ssh -R REMOTE:LOCAL … HOST 'waysock ssh-remote …'` forwards a Unix
//!   socket on HOST to it (one ssh channel per Wayland connection: several clients per
//!   session). ssh authenticates the hosts and the user (options and `~/.ssh/config` apply).
//! - The bridge still runs its own handshake and sealed channel over each forwarded
//!   connection, keyed by a fresh random token written on ssh's stdin (never on a command
//!   line, which `ps` shows). Our end of that stdin stays open until ssh ends: the remote side
//!   takes the end of its stdin as the end of the session.
//! - On HOST, `ssh-remote` binds a display with the strategy chain (no `XDG_RUNTIME_DIR`
//!   needed), runs CLIENT (in a process group of its own, stdin from `/dev/null`) with an
//!   environment that reaches exactly that display, and exits with its status, which ssh
//!   passes on as ours. When CLIENT ends or the session goes (^C here, a lost connection),
//!   what is left of its process group is stopped, and the display's socket, lock and
//!   directories and the forwarded socket are removed.
//! - SIGINT/SIGTERM/SIGHUP sent to us go to ssh, which ends the session (a ^C from the
//!   terminal reaches both already); ours is then 128+N.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use waysock::{Binder, Discovery, Endpoint, Environment};
use waysock_bridge::auth::Token;
use waysock_bridge::stream::Sessions;

use super::run::launch;

/// The ssh options every session needs, before the user's own (ssh keeps the first value of
/// an option, so these cannot be undone by accident): no terminal (stdin is our control
/// pipe), fail at once when the forward cannot be set up, replace a stale socket at the
/// forwarded path, and no connection sharing (a shared master would keep our forward after
/// the session).
const SSH_OPTIONS: &[&str] = &[
    "-T",
    "-o",
    "ExitOnForwardFailure=yes",
    "-o",
    "StreamLocalBindUnlink=yes",
    "-o",
    "ControlPath=none",
    "-o",
    "ControlMaster=no",
];

/// ssh's options that take an argument (`ssh -p 22`, `-p22`), for finding the destination.
const SSH_OPTS_WITH_ARG: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Bytes of the per-session token; it crosses ssh's stdin as hex and a newline.
const TOKEN_BYTES: usize = 32;

/// How long the remote side waits for the client's connections to close after it exited.
const DRAIN: Duration = Duration::from_secs(2);

/// Status of `ssh-remote` when the bridge could not be set up there (CLIENT never ran).
pub const REMOTE_FAILED: u8 = 125;

/// Arguments of `waysock ssh`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The waysock program on HOST (a name looked up in its PATH, or a path).
    #[arg(long, value_name = "PATH", default_value = "waysock")]
    remote_bin: String,
    /// The local display to bridge to (default: discovery, as `waysock exec` finds it).
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
    /// The ssh program here.
    #[arg(long, value_name = "PATH", default_value = "ssh")]
    ssh_bin: OsString,
    #[command(flatten)]
    busy_poll: super::BusyPoll,
    /// ssh's options and destination, then `--`, then the client and its arguments. waysock's
    /// own flags come first; the first argument it does not know starts ssh's.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "[SSH-OPTIONS] [USER@]HOST -- CLIENT"
    )]
    rest: Vec<OsString>,
}

/// The command line split: ssh's options with the destination, and the client.
#[derive(Debug, PartialEq, Eq)]
struct Split {
    ssh: Vec<OsString>,
    destination: String,
    client: Vec<OsString>,
}

/// Splits `[SSH-OPTIONS] DESTINATION -- CLIENT ARGS…`, finding the destination the way ssh's
/// option parser does. Anything else that is not an option before `--` would become part of
/// the remote command: refused.
fn split(rest: &[OsString]) -> Result<Split, String> {
    let Some(dash) = rest.iter().position(|a| a == "--") else {
        return Err("no `--` before the client: waysock ssh [SSH-OPTIONS] HOST -- CLIENT".into());
    };
    let (ssh, client) = (&rest[..dash], &rest[dash + 1..]);
    if client.is_empty() {
        return Err("no client after `--`".into());
    }
    let mut destination = None;
    let mut i = 0;
    while i < ssh.len() {
        let a = ssh[i].to_string_lossy();
        if let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) {
            for (at, c) in flags.char_indices() {
                if SSH_OPTS_WITH_ARG.contains(c) {
                    if at + c.len_utf8() == flags.len() {
                        i += 1; // the argument is the next word
                        if i == ssh.len() {
                            return Err(format!("ssh option -{c} needs an argument"));
                        }
                    }
                    break;
                }
            }
        } else if let Some(d) = &destination {
            return Err(format!(
                "{a:?} after the destination {d:?} and before `--`: ssh would run it as the \
                 command; put the client after `--`"
            ));
        } else {
            destination = Some(a.into_owned());
        }
        i += 1;
    }
    let destination = destination.ok_or("no destination ([USER@]HOST) before `--`")?;
    Ok(Split {
        ssh: ssh.to_vec(),
        destination,
        client: client.to_vec(),
    })
}

/// A directory of ours, 0700, made fresh (so nobody else's), removed with what is in it.
struct PrivateDir(PathBuf);

impl PrivateDir {
    /// `waysock-ssh-RANDOM` in our runtime dir if it is usable, else in the temporary dir.
    fn create(env: &Environment) -> anyhow::Result<PrivateDir> {
        let base = env
            .xdg_runtime_dir
            .as_ref()
            .map(PathBuf::from)
            .filter(|x| x.is_absolute() && waysock::discover::usable_runtime_dir(x, env.uid))
            .unwrap_or_else(std::env::temp_dir);
        let mut last = None;
        for _ in 0..8 {
            let dir = base.join(format!("waysock-ssh-{}", hex(&random::<8>()?)));
            // mkdir fails on anything already there, a planted symlink included.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    let m = std::fs::symlink_metadata(&dir)?;
                    anyhow::ensure!(
                        m.is_dir() && m.uid() == env.uid && m.mode() & 0o077 == 0,
                        "{}: not the private directory just made",
                        dir.display()
                    );
                    return Ok(PrivateDir(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    anyhow::bail!("cannot make a private directory in {}: {e}", base.display())
                }
            }
        }
        anyhow::bail!(
            "cannot make a private directory in {}: {}",
            base.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `N` bytes from the kernel's random source (`getrandom`, as the library's registry names
/// use; no file to open, and no fallback: a token must be random).
fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        got += rustix::rand::getrandom(&mut b[got..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| match p {
            [a, b] => Some(digit(*a)? << 4 | digit(*b)?),
            _ => None,
        })
        .collect()
}

/// `-v` as many times as our own log level asks, for the remote side.
fn verbosity() -> Vec<&'static str> {
    use tracing::level_filters::LevelFilter;
    let n = match LevelFilter::current() {
        LevelFilter::TRACE => 3,
        LevelFilter::DEBUG => 2,
        LevelFilter::INFO => 1,
        _ => 0,
    };
    vec!["-v"; n]
}

/// The remote command line, quoted for HOST's login shell. It runs `sh` (any Unix has it),
/// which runs waysock and then removes the forwarded socket whatever happened: when waysock
/// is missing there, nothing else would (sshd never removes the sockets it made).
fn remote_command(
    remote_bin: &str,
    socket: &Path,
    busy_poll_us: u64,
    client: &[OsString],
) -> String {
    let sock = super::quote(socket.as_os_str());
    let script = format!(r#""$@"; s=$?; [ -S {sock} ] && rm -f {sock}; exit $s"#);
    let mut words: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        super::quote(OsStr::new(&script)),
        "sh".into(),
        super::quote(OsStr::new(remote_bin)),
    ];
    words.extend(verbosity().into_iter().map(String::from));
    words.push("ssh-remote".into());
    words.push("--socket".into());
    words.push(sock);
    words.push(format!("--busy-poll-us={busy_poll_us}"));
    words.push("--".into());
    words.extend(client.iter().map(|a| super::quote(a)));
    words.join(" ")
}

/// Runs `waysock ssh`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let signals = launch::watch_signals();
    let split = match split(&args.rest) {
        Ok(s) => s,
        Err(e) => return Ok(super::usage(format!("ssh: {e}"))),
    };
    let env = Environment::from_process();
    let uid = env.uid;

    // The local compositor, found the way `exec` finds it; each forwarded connection dials it.
    let (found, _) = match Discovery::new(env.clone()).display(args.display).find() {
        Ok(x) => x,
        Err(e @ waysock::discover::DiscoverError::BadDisplay { .. }) => {
            return Ok(super::usage(format!("ssh: {e}")))
        }
        Err(e) => {
            eprintln!("waysock ssh: no local display to bridge to: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let compositor = found.endpoint.clone();
    if !matches!(compositor, Endpoint::Unix(_) | Endpoint::Abstract(_)) {
        eprintln!(
            "waysock ssh: the local display is {compositor}, one connection that cannot be \
             dialled again; name one with --display"
        );
        return Ok(ExitCode::from(1));
    }
    drop(found);
    tracing::info!(endpoint = %compositor, "local compositor");

    let secret = random::<TOKEN_BYTES>()?;
    let token = Arc::new(
        Token::from_bytes(&secret).ok_or_else(|| anyhow::anyhow!("a token of 32 bytes refused"))?,
    );
    let dir = PrivateDir::create(&env)?;
    let local = dir.0.join("s");
    let listener = UnixListener::bind(&local)
        .map_err(|e| anyhow::anyhow!("cannot listen on unix:{}: {e}", local.display()))?;
    let remote = PathBuf::from(format!("/tmp/waysock-ssh-{}.sock", hex(&random::<12>()?)));

    let busy_poll = args.busy_poll.duration();
    std::thread::spawn(move || {
        let served = waysock_bridge::stream::serve_compositor_unix(
            listener,
            token,
            busy_poll,
            // ssh runs as us; the directory already keeps everyone else out.
            move |s| {
                waysock::peer::check(s, uid, &[])
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
            move || waysock::discover::accepts(&compositor).map_err(std::io::Error::other),
        );
        if let Err(e) = served {
            tracing::warn!("the forwarded listener failed: {e}");
        }
    });

    // ssh's stdin: the token, then nothing until ssh ends (our end stays open).
    let (mut control, theirs) = UnixStream::pair()?;
    let mut cmd = Command::new(&args.ssh_bin);
    cmd.args(SSH_OPTIONS)
        .arg("-R")
        .arg(format!("{}:{}", remote.display(), local.display()))
        .args(&split.ssh)
        .arg(remote_command(
            &args.remote_bin,
            &remote,
            args.busy_poll.busy_poll_us,
            &split.client,
        ))
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    tracing::debug!(?cmd, "starting ssh");
    let ssh_name = args.ssh_bin.to_string_lossy().into_owned();
    let mut ssh = match launch::spawn(cmd, &ssh_name, signals, "waysock ssh") {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let mut line = hex(&secret).into_bytes();
    line.push(b'\n');
    if let Err(e) = control.write_all(&line) {
        // ssh is gone already: its status says why.
        tracing::debug!("writing the token to ssh: {e}");
    }
    let status = ssh.wait_in_place()?;
    drop(control);
    drop(dir);
    if let Some(sig) = ssh.signal() {
        return Ok(ExitCode::from((128 + sig).clamp(0, 255) as u8));
    }
    match status.code() {
        Some(255) => eprintln!(
            "waysock ssh: ssh to {} failed (status 255): it could not connect, log in or set up \
             the forward (ssh said why above), or the client exited 255",
            split.destination
        ),
        Some(127) => eprintln!(
            "waysock ssh: status 127 from {}: the client, or `{}` itself, was not found there \
             (the remote side needs waysock on its PATH, or pass --remote-bin PATH)",
            split.destination, args.remote_bin
        ),
        _ => {}
    }
    Ok(launch::exit_code(status))
}

/// Arguments of `waysock ssh-remote`, the side `waysock ssh` starts on HOST (not for people).
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// The socket ssh forwards to the compositor's host.
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Strategy order (comma-separated); default: WAYSOCK_STRATEGIES or the full chain.
    #[arg(long, value_name = "S,..", value_parser = super::parse_chain)]
    strategy: Option<super::Chain>,
    #[command(flatten)]
    busy_poll: super::BusyPoll,
    /// The client and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CLIENT"
    )]
    command: Vec<OsString>,
}

/// Removes the forwarded socket on drop (if it is still a socket: never anything else).
struct Forwarded(PathBuf);

impl Drop for Forwarded {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.0).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Reads the session token: exactly one line of hex from stdin (nothing more is read).
fn read_token() -> Result<Token, String> {
    let mut line = [0u8; 2 * TOKEN_BYTES + 1];
    std::io::stdin()
        .lock()
        .read_exact(&mut line)
        .map_err(|e| format!("no session token on stdin ({e}); `waysock ssh` starts this side"))?;
    let secret = match line.split_last() {
        Some((b'\n', hex)) => unhex(hex),
        _ => None,
    }
    .ok_or("the session token on stdin is not one line of hex")?;
    Token::from_bytes(&secret).ok_or_else(|| "the session token is too short".into())
}

/// Sends `sig` to the process group `pgid`.
fn signal_group(pgid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

/// Runs `waysock ssh-remote`: the far side of `waysock ssh`.
pub fn run_remote(args: RemoteArgs) -> anyhow::Result<ExitCode> {
    let chain = match super::strategies(args.strategy) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let forwarded = Forwarded(args.socket.clone());
    let token = match read_token() {
        Ok(t) => Arc::new(t),
        Err(e) => return Ok(super::usage(format!("ssh-remote: {e}"))),
    };
    let env = Environment::from_process();
    let bound = match Binder::new(env.clone()).strategies(chain).bind() {
        Ok(b) => b,
        Err(e) => {
            let report = e.report().map(|r| r.to_string()).unwrap_or_default();
            eprintln!("waysock ssh (remote side): cannot bind a display here: {e}\n{report}");
            return Ok(ExitCode::from(REMOTE_FAILED));
        }
    };
    let endpoint = bound.client_endpoint().clone();
    tracing::info!(%endpoint, "remote display");
    let listener = bound.listener().try_clone()?;
    let uid = env.uid;
    let is_abstract = matches!(endpoint, Endpoint::Abstract(_));
    let busy_poll = args.busy_poll.duration();
    let target = args.socket.clone();
    let sessions = Sessions::default();
    let counted = sessions.clone();
    std::thread::spawn(move || {
        let served = waysock_bridge::stream::serve_clients_unix(
            listener,
            target,
            token,
            busy_poll,
            counted,
            move |s| {
                if !is_abstract {
                    return Ok(()); // the socket's private directory keeps others out
                }
                waysock::peer::check(s, uid, &[])
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        );
        if let Err(e) = served {
            tracing::warn!("the display's listener failed: {e}");
        }
    });

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no client given"))?;
    let mut cmd = Command::new(program);
    cmd.args(rest).stdin(Stdio::null()).process_group(0);
    super::display_env(&mut cmd, &endpoint, None, &env);
    let signals = launch::watch_signals();
    let mut client = match launch::spawn(cmd, &program.to_string_lossy(), signals, "waysock ssh") {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let pgid = client.pid();

    // The end of our stdin is the end of the session (ssh is gone): stop the client.
    let hung_up = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&hung_up);
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        flag.store(true, Ordering::SeqCst);
        tracing::info!("the ssh session ended: stopping the client");
        signal_group(pgid, rustix::process::Signal::TERM);
        std::thread::sleep(Duration::from_secs(3));
        signal_group(pgid, rustix::process::Signal::KILL);
    });

    let status = client.wait_in_place()?;
    // What the client left running in its group (a clipboard owner, a helper) loses its
    // display now: stop it with the session. Its connections then close, and each relayed
    // one is given a moment to say so to the other end (instead of being cut).
    signal_group(pgid, rustix::process::Signal::TERM);
    if !sessions.wait_idle(DRAIN) {
        tracing::info!("{} connection(s) still open: cut", sessions.active());
    }
    drop(bound);
    drop(forwarded);
    if hung_up.load(Ordering::SeqCst) {
        tracing::info!("session ended before the client");
    }
    Ok(launch::exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_destination_is_found_the_way_ssh_finds_it() {
        let s = split(&os(&[
            "-p", "2222", "-i", "k", "-oX=y", "-4", "me@h", "--", "foot", "-e",
        ]))
        .unwrap();
        assert_eq!(s.destination, "me@h");
        assert_eq!(s.ssh, os(&["-p", "2222", "-i", "k", "-oX=y", "-4", "me@h"]));
        assert_eq!(s.client, os(&["foot", "-e"]));
        // Options after the destination are ssh's too; -vp22 is -v with -p 22.
        let s = split(&os(&["h", "-vp22", "-l", "u", "--", "x"])).unwrap();
        assert_eq!(s.destination, "h");
        assert_eq!(s.client, os(&["x"]));
    }

    #[test]
    fn what_ssh_would_misread_is_refused() {
        assert!(split(&os(&["h", "x"])).unwrap_err().contains("no `--`"));
        assert!(split(&os(&["h", "--"])).unwrap_err().contains("no client"));
        assert!(split(&os(&["-p", "22", "--", "x"]))
            .unwrap_err()
            .contains("no destination"));
        assert!(split(&os(&["h", "cmd", "--", "x"]))
            .unwrap_err()
            .contains("as the command"));
        assert!(split(&os(&["h", "-p"])).is_err());
    }

    #[test]
    fn the_remote_command_is_quoted_for_its_shell() {
        let c = remote_command(
            "/opt/way sock",
            Path::new("/tmp/waysock-ssh-ab.sock"),
            150,
            &os(&["sh", "-c", "echo 'hi'; exit 7"]),
        );
        assert!(
            c.starts_with("sh -c '\"$@\"; s=$?; [ -S '\\''/tmp/waysock-ssh-ab.sock'\\'' ] && rm -f '\\''/tmp/waysock-ssh-ab.sock'\\''; exit $s' sh '/opt/way sock' "),
            "{c}"
        );
        assert!(
            c.contains(" ssh-remote --socket '/tmp/waysock-ssh-ab.sock' --busy-poll-us=150 -- 'sh' '-c' 'echo '\\''hi'\\''; exit 7'"),
            "{c}"
        );
    }

    #[test]
    fn the_token_line_round_trips() {
        let b = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(hex(&b).as_bytes()), Some(b.to_vec()));
        assert_eq!(unhex(b"0g"), None);
        assert_eq!(unhex(b"abc"), None);
    }
}
