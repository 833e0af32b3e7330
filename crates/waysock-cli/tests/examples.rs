//! The examples a user copies (`examples/` at the repository's root, issue 11 item 5), run or
//! checked for what can be checked here:
//!
//! - the systemd user units, run for real without systemd as init: `systemd-socket-activate`
//!   with the `.socket`'s `ListenStream` (`%t` resolved) and `FileDescriptorName`, running the
//!   `.service`'s `ExecStart`, with a `NOTIFY_SOCKET` listener of the test's own;
//! - the Dockerfile's `ENTRYPOINT` + `CMD`, run as a container would run them;
//! - the Kubernetes pod, simulated: each container a mount namespace of its own in one network
//!   namespace, the sidecar's startup probe run until it succeeds, then the tests' command;
//! - the GitHub Actions workflow: its YAML, and its smoke step run;
//! - every `waysock` command line in every example accepted by `waysock` itself.
//!
//! The YAML files are read by a small reader of a strict subset of YAML (block mappings and
//! sequences, plain and quoted scalars, `|` block scalars, flow collections written as JSON),
//! so the examples stay in that subset and need no YAML dependency.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use waysock_testkit::script::prelude;
use waysock_testkit::{test_user, Needs, Out, Script, Stage, TEST_USER};

const LIMIT: Duration = Duration::from_secs(90);

/// Shell functions every script gets after [`prelude::BASE`], [`prelude::WAIT`] and
/// [`prelude::VICTIM`].
const PRELUDE: &str = r#"
# C MODE CMD…: CMD in a container of its own, in the background (`C … &`: $! is CMD): a new
# mount namespace with empty /tmp, /run and /dev/shm (MODE ro: those and $HOME read-only, as
# `docker run --read-only`), the test user, only PATH and HOME set. The network namespace is
# the stage's: the containers of one pod.
C() {
  mode=$1; shift
  exec unshare -m --propagation private sh -c '
    if [ "$0" = ro ]; then o=ro,mode=755; else o=mode=1777; fi
    for d in /tmp /run /dev/shm; do mount -t tmpfs -o "$o" none "$d"; done
    if [ "$0" = ro ]; then mount -t tmpfs -o ro,mode=755 none "$M/home"; fi
    exec "$@"' "$mode" setpriv --reuid="$VICTIM" --regid="$VICTIM" --init-groups \
    env -i PATH="$M/bin:/usr/local/bin:/usr/bin:/bin" HOME="$M/home" "$@"
}
# C in the foreground.
Cf() ( C "$@" )
"#;

/// The repository's `examples/`.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read(name: &str) -> String {
    let p = examples().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A stage for `test`: fresh `/tmp`, `/run`, `/dev/shm`, private pids and network, `waysock`
/// (and the shim) in `$M/bin`, `$M/home` and `$M/out` the test user's; the script and the test
/// user's uid. `None` after a skip.
fn world(test: &'static str, programs: &[&str]) -> Option<(Stage, Script, u32)> {
    let met = Needs::new(test)
        .waysock_stage()
        .programs(programs)
        .programs(&["setpriv", "weston", "wayland-info", "timeout"])
        .test_user()
        .met();
    if !met {
        return None;
    }
    let uid = test_user().expect("probed by Needs").0;
    let stage = Stage::waysock("examples", env!("CARGO_BIN_EXE_waysock"))
        .owned_by(TEST_USER)
        .private_tmp()
        .with(|s| s.env("VICTIM", TEST_USER));
    let script = Script::new(test)
        .prelude(prelude::BASE)
        .prelude(prelude::WAIT)
        .prelude(prelude::VICTIM)
        .prelude(PRELUDE)
        .limit(LIMIT + Duration::from_secs(5));
    Some((stage, script, uid))
}

/// `s` as one shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sh_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| sh_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// systemd units

/// A unit file: section → key → values (a key may repeat), comments and continuation lines
/// handled as systemd does.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn unit(text: &str) -> Unit {
    let mut out = Unit::new();
    let mut section = String::new();
    let mut pending = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with(['#', ';'])) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            out.entry(section.clone()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not KEY=VALUE: {raw:?}", n + 1));
        assert!(!section.is_empty(), "line {}: outside a section", n + 1);
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    assert!(pending.is_empty(), "the file ends in a continuation line");
    out
}

/// The one value of `key` in `section` (`None` when unset; fails when set twice).
fn one<'a>(u: &'a Unit, section: &str, key: &str) -> Option<&'a str> {
    let v = u.get(section)?.get(key)?;
    assert_eq!(v.len(), 1, "[{section}] {key} is set {} times", v.len());
    Some(&v[0])
}

/// Resolves the specifiers a user unit may use here: `%t` (the runtime dir), `%h` (home),
/// `%U` (uid), `%u` (user), `%%`. Any other one fails the test.
fn specifiers(s: &str, runtime: &str, home: &str, uid: u32, user: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push_str(runtime),
            Some('h') => out.push_str(home),
            Some('U') => out.push_str(&uid.to_string()),
            Some('u') => out.push_str(user),
            Some('%') => out.push('%'),
            other => panic!("specifier %{other:?} in {s:?}: not resolved by this test"),
        }
    }
    out
}

/// An `ExecStart=` line split as systemd splits it (whitespace; double or single quotes).
fn exec_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    assert!(quote.is_none(), "unbalanced quote in {line:?}");
    if any || !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The `--ready-timeout` of a `waysock run` argv (its default, 30, when not given).
fn ready_timeout(argv: &[String]) -> u64 {
    let opts = argv.iter().take_while(|a| *a != "--");
    let mut it = opts.peekable();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--ready-timeout=") {
            return v.parse().expect("a number");
        }
        if a == "--ready-timeout" {
            return it.next().and_then(|v| v.parse().ok()).expect("a number");
        }
    }
    30
}

/// The socket unit's `ListenStream` path (unresolved), its descriptor name and the service's
/// `ExecStart` words (unresolved), after checking what makes the pair a `Type=notify`
/// socket-activated `waysock run`.
fn systemd_pair() -> (String, String, Vec<String>, Vec<String>) {
    let socket = unit(&read("waysock-weston.socket"));
    let service = unit(&read("waysock-weston.service"));
    let listen = one(&socket, "Socket", "ListenStream").expect("ListenStream=");
    assert!(
        listen.starts_with("%t/"),
        "ListenStream={listen}: the user's runtime dir"
    );
    let fdname = one(&socket, "Socket", "FileDescriptorName").unwrap_or("wayland");
    assert_eq!(fdname, "wayland", "run takes the descriptor named wayland");
    if let Some(s) = one(&socket, "Socket", "Service") {
        assert_eq!(s, "waysock-weston.service");
    }
    assert_eq!(one(&service, "Service", "Type"), Some("notify"));
    let access = one(&service, "Service", "NotifyAccess").unwrap_or("main");
    assert_eq!(access, "main", "run, the main process, notifies");
    let exec = exec_words(one(&service, "Service", "ExecStart").expect("ExecStart="));
    assert!(
        exec[0] == "waysock" || exec[0].ends_with("/waysock"),
        "ExecStart runs waysock: {exec:?}"
    );
    assert_eq!(exec[1], "run", "ExecStart is waysock run: {exec:?}");
    assert!(
        !exec[0].starts_with(['-', '@', ':', '+', '!']),
        "no ExecStart prefix"
    );
    let start = one(&service, "Service", "TimeoutStartSec")
        .map(|s| s.parse::<u64>().expect("TimeoutStartSec in seconds"))
        .unwrap_or(90);
    assert!(
        start > ready_timeout(&exec),
        "TimeoutStartSec={start} must outlast run's --ready-timeout, so run reports the failure"
    );
    assert_eq!(one(&service, "Service", "KillMode"), Some("mixed"));
    let env: Vec<String> = service
        .get("Service")
        .and_then(|s| s.get("Environment"))
        .into_iter()
        .flatten()
        .flat_map(|e| exec_words(e))
        .collect();
    (listen.to_string(), fdname.to_string(), exec, env)
}

/// The pair run for real, without systemd as init: `systemd-socket-activate` listens where the
/// `.socket` says, the first client connects before anything else runs, and the `.service`'s
/// `ExecStart` (`%t` resolved to `/run/user/UID`, `waysock` the built one) is started with the
/// listener and a `NOTIFY_SOCKET` of the test's own, as systemd's user manager would. The
/// early client is served; `READY=1` arrives once, after `STATUS=starting`, and a client
/// started the moment it arrives (what a unit ordered `After=` the service does) works at the
/// first try; SIGTERM to the main process alone (`KillMode=mixed`) stops weston, sends
/// `STOPPING=1`, exits 0, and leaves the socket for the socket unit.
#[test]
fn systemd_units_serve_an_early_client_and_notify_ready_after_a_roundtrip() {
    let test = "systemd_units_serve_an_early_client_and_notify_ready_after_a_roundtrip";
    let (listen, fdname, exec, env) = systemd_pair();
    let Some((stage, script, uid)) = world(test, &["systemd-socket-activate", "socat"]) else {
        return;
    };
    let runtime = format!("/run/user/{uid}");
    let home = format!("{}/home", stage.m());
    let resolve = |s: &str| specifiers(s, &runtime, &home, uid, TEST_USER);
    let path = resolve(&listen);
    let (dir, display) = path.rsplit_once('/').expect("a path");
    assert_eq!(dir, runtime);
    let mut argv: Vec<String> = exec.iter().map(|w| resolve(w)).collect();
    argv[0] = format!("{}/bin/waysock", stage.m());
    let mut activate = vec![
        "systemd-socket-activate".to_string(),
        "-l".into(),
        path.clone(),
        format!("--fdname={fdname}"),
    ];
    // The user manager's environment reaches the service (XDG_RUNTIME_DIR is %t), and so do
    // Environment= lines; systemd-socket-activate passes on only what -E names.
    for e in std::iter::once(format!("XDG_RUNTIME_DIR={runtime}")).chain(env) {
        activate.push("-E".into());
        activate.push(resolve(&e));
    }
    activate.push("-E".into());
    activate.push("NOTIFY_SOCKET=$O/notify".into());
    let client = format!(
        "V env XDG_RUNTIME_DIR={} WAYLAND_DISPLAY={} timeout 20 wayland-info",
        sh_quote(dir),
        sh_quote(display)
    );
    let body = format!(
        r#"
mkdir -m 700 -p {dir_q}; chown "$VICTIM": {dir_q}
# The NOTIFY_SOCKET listener, and what a unit ordered After= the service does on READY=1:
# start a client at once, no retry.
on_notes() {{
  while IFS= read -r line; do
    echo "$line" >>"$O/notes"
    if [ "$line" = READY=1 ]; then {client} >"$O/after" 2>&1; echo "after_ready $?" >>"$O/notes"; fi
  done
}}
V socat -u UNIX-RECV:"$O/notify" - 2>"$O/socat.err" | on_notes >/dev/null 2>&1 &
wait_for "$O/notify"
touch "$O/notes"
VB {activate} {argv} >"$O/run.out" 2>"$O/run.log" &
RP=$!
wait_for {path_q}
say before; pgrep -x weston || echo none; cat "$O/notes"
{client} >"$O/early" 2>&1
say early; echo $?
say early_compositor; grep -c "interface: 'wl_compositor'" "$O/early"
i=0; while ! grep -q after_ready "$O/notes" && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
say notes_up; cat "$O/notes"
say after_compositor; grep -c "interface: 'wl_compositor'" "$O/after"
finish $RP run
i=0; while ! grep -q STOPPING=1 "$O/notes" && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
say notes_end; cat "$O/notes"
say left; pgrep -x weston || echo none
say dir; ls -A {dir_q}
say log; cat "$O/run.log" "$O/run.out" "$O/socat.err"
"#,
        dir_q = sh_quote(dir),
        path_q = sh_quote(&path),
        activate = activate
            .iter()
            .map(|a| if a.contains("$O") {
                format!("\"{a}\"")
            } else {
                sh_quote(a)
            })
            .collect::<Vec<_>>()
            .join(" "),
        argv = sh_words(&argv),
    );
    let out = script.run(stage.sandbox(), &body);
    let endpoint = format!("unix:{path}");
    out.eq("before", "none")
        .eq("early", "0")
        .eq("early_compositor", "1")
        .contains("notes_up", "READY=1\n")
        .contains("notes_up", &format!("STATUS=weston is up on {endpoint}"))
        .contains("notes_up", "after_ready 0")
        .eq("after_compositor", "1")
        .absent("hung")
        .eq("rc_run", "0")
        .contains("notes_end", "STOPPING=1")
        .eq("left", "none")
        .eq("dir", display);
    let notes = out.sec("notes_end");
    if notes.matches("READY=1").count() != 1 {
        out.fail("READY=1 should be sent exactly once");
    }
    match (notes.find("STATUS=starting"), notes.find("READY=1")) {
        (Some(a), Some(b)) if a < b => {}
        _ => out.fail("STATUS=starting should come before READY=1"),
    }
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// A Dockerfile's instructions: keyword (upper case) and arguments, continuation lines joined.
fn dockerfile(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        let line = format!("{pending}{line}");
        pending.clear();
        let (k, v) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        assert_eq!(k, k.to_uppercase(), "instruction {k:?} in upper case");
        out.push((k.to_string(), v.trim().to_string()));
    }
    assert!(pending.is_empty(), "the Dockerfile ends in a continuation");
    out
}

/// An exec-form instruction's argv (a JSON array of strings).
fn exec_form(what: &str, v: &str) -> Vec<String> {
    serde_json::from_str(v).unwrap_or_else(|e| panic!("{what} {v}: not exec form (JSON): {e}"))
}

/// What the final stage of the Dockerfile runs (`ENTRYPOINT` + `CMD`), its `USER`, and the
/// packages it installs, after checking that both stages are Debian bookworm and that the final
/// one gets `waysock` from the build stage.
fn docker_image() -> (Vec<String>, String, Vec<String>) {
    let ins = dockerfile(&read("Dockerfile"));
    let froms: Vec<&str> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(froms.len(), 2, "a build stage and the image: {froms:?}");
    assert!(froms[0].starts_with("rust:") && froms[0].contains("bookworm"));
    assert!(froms[1].starts_with("debian:bookworm"));
    let last = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let image = &ins[last..];
    let get = |k: &'static str| {
        image
            .iter()
            .filter(move |(x, _)| x == k)
            .map(|(_, v)| v.as_str())
    };
    assert!(
        ins[..last].iter().any(|(k, v)| k == "RUN"
            && v.contains("cargo install")
            && v.contains("crates/waysock-cli")),
        "the build stage installs waysock-cli"
    );
    assert!(
        get("COPY").any(|v| v.starts_with("--from=") && v.ends_with("/usr/local/bin/waysock")),
        "the image gets waysock from the build stage"
    );
    let mut argv = exec_form(
        "ENTRYPOINT",
        get("ENTRYPOINT").next_back().expect("ENTRYPOINT"),
    );
    argv.extend(exec_form("CMD", get("CMD").next_back().expect("CMD")));
    let user = get("USER").next_back().expect("USER: not root").to_string();
    let mut packages = Vec::new();
    for run in get("RUN") {
        if let Some((_, rest)) = run.split_once("apt-get install") {
            let words = rest.split("&&").next().unwrap_or("");
            packages.extend(
                words
                    .split_whitespace()
                    .filter(|w| !w.starts_with('-'))
                    .map(String::from),
            );
        }
    }
    (argv, user, packages)
}

/// The package that provides `program` here (`dpkg -S`).
fn package_of(program: &str) -> Option<String> {
    let path = waysock_testkit::program(program).ok()?;
    let path = path.canonicalize().unwrap_or(path);
    let out = Command::new("dpkg").arg("-S").arg(&path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pkg = text.split(':').next()?.trim();
    (!pkg.is_empty()).then(|| pkg.to_string())
}

/// The image's `ENTRYPOINT` + `CMD` as a container runs them: a non-root user, nothing set but
/// `PATH` and `HOME`, fresh `/tmp`, `/run`, `/dev/shm` — and again with those and `HOME`
/// read-only (`docker run --read-only`). Both times `waysock headless -- wayland-info` sees
/// weston's globals and exits 0, and nothing is left behind. The packages the image installs
/// provide weston and every program it runs.
#[test]
fn dockerfile_entrypoint_runs_a_command_against_its_own_display() {
    let test = "dockerfile_entrypoint_runs_a_command_against_its_own_display";
    let (argv, user, packages) = docker_image();
    assert_ne!(user, "root");
    assert_eq!(argv[..3], ["waysock", "headless", "--"], "{argv:?}");
    if !Needs::new(test).programs(&["dpkg", "weston"]).met() {
        return;
    }
    for p in ["weston", argv[3].as_str()] {
        let pkg = package_of(p).unwrap_or_else(|| panic!("no package provides {p} here"));
        assert!(
            packages.contains(&pkg),
            "{p} comes from {pkg}, which the Dockerfile does not install: {packages:?}"
        );
    }
    let Some((stage, script, _)) = world(test, &[]) else {
        return;
    };
    let body = format!(
        r#"
cd "$M/home"
for mode in rw ro; do
  Cf $mode {argv} >"$O/$mode.out" 2>"$O/$mode.err"
  say rc_$mode; echo $?
  say globals_$mode; grep -c "interface: 'wl_compositor'" "$O/$mode.out"
  say err_$mode; cat "$O/$mode.err"
done
say left; pgrep -x weston || echo none
"#,
        argv = sh_words(&argv)
    );
    let out = script.run(stage.sandbox(), &body);
    out.eq("rc_rw", "0")
        .eq("globals_rw", "1")
        .eq("rc_ro", "0")
        .eq("globals_ro", "1")
        .eq("left", "none");
}

// ---------------------------------------------------------------------------------------------
// YAML (a strict subset)

/// One significant line: its number (1-based), indentation and text.
struct Line {
    n: usize,
    indent: usize,
    text: String,
}

/// Reads the YAML subset the examples are written in: block mappings and sequences (a
/// sequence may sit at its key's indentation), plain, single- and double-quoted scalars
/// (`true`, `false`, `null`, integers typed), `|`/`|-` block scalars, and flow collections
/// written as JSON. Tabs in indentation, duplicate keys, anchors, tags, multiple documents and
/// stray indentation are errors.
fn yaml(text: &str) -> Result<Value, String> {
    let raw: Vec<&str> = text.lines().collect();
    let mut lines = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let r = raw[i];
        let body = r.trim_start_matches(' ');
        if body.starts_with('\t') {
            return Err(format!("line {}: tab in indentation", i + 1));
        }
        let text = strip_comment(body).trim_end().to_string();
        i += 1;
        if text.is_empty() {
            continue;
        }
        if text == "---" || text == "..." || text.starts_with('%') {
            return Err(format!("line {i}: one document, no directives"));
        }
        let indent = r.len() - body.len();
        // A block scalar: the more-indented lines after it, verbatim, become one line's text.
        if text.ends_with(": |") || text.ends_with(": |-") || text == "|" {
            let mut block = Vec::new();
            while i < raw.len() {
                let b = raw[i];
                let ind = b.len() - b.trim_start_matches(' ').len();
                if !b.trim().is_empty() && ind <= indent {
                    break;
                }
                block.push(b);
                i += 1;
            }
            while block.last().is_some_and(|b| b.trim().is_empty()) {
                block.pop();
            }
            let strip = block
                .iter()
                .filter(|b| !b.trim().is_empty())
                .map(|b| b.len() - b.trim_start_matches(' ').len())
                .min()
                .unwrap_or(0);
            let mut s: String = block
                .iter()
                .map(|b| b.get(strip..).unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            if !text.ends_with('-') {
                s.push('\n');
            }
            let key = text.trim_end_matches(['|', '-']).to_string();
            lines.push(Line {
                n: i,
                indent,
                text: format!("{key}{}", Value::String(s)),
            });
            continue;
        }
        lines.push(Line { n: i, indent, text });
    }
    let mut at = 0;
    let v = node(&mut lines, &mut at, 0)?;
    if let Some(l) = lines.get(at) {
        return Err(format!("line {}: unexpected indentation", l.n));
    }
    Ok(v)
}

/// `line` without its comment (a `#` at the start or after a space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if prev == ' ' || prev == '[' || prev == ',' => quote = Some(c),
            (None, '#') if prev == ' ' => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The block at `lines[*at]` (indented at least `min`).
fn node(lines: &mut [Line], at: &mut usize, min: usize) -> Result<Value, String> {
    let Some(first) = lines.get(*at) else {
        return Ok(Value::Null);
    };
    if first.indent < min {
        return Ok(Value::Null);
    }
    let indent = first.indent;
    if is_item(&first.text) {
        sequence(lines, at, indent)
    } else {
        mapping(lines, at, indent)
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn sequence(lines: &mut [Line], at: &mut usize, indent: usize) -> Result<Value, String> {
    let mut items = Vec::new();
    while let Some(l) = lines.get_mut(*at) {
        if l.indent != indent || !is_item(&l.text) {
            break;
        }
        let rest = l.text[1..].trim_start().to_string();
        if rest.is_empty() {
            *at += 1;
            items.push(node(lines, at, indent + 1)?);
        } else if key_of(&rest).is_some() {
            // `- key: value`: a mapping whose keys sit where `key` is.
            l.indent = indent + (l.text.len() - rest.len());
            l.text = rest;
            let inner = l.indent;
            items.push(mapping(lines, at, inner)?);
        } else {
            let n = l.n;
            *at += 1;
            items.push(scalar(&rest).map_err(|e| format!("line {n}: {e}"))?);
        }
    }
    Ok(Value::Array(items))
}

/// `key` of `key: value` or `key:`; `None` when the text is not a mapping entry.
fn key_of(text: &str) -> Option<(String, String)> {
    if text.starts_with(['[', '{']) {
        return None;
    }
    let (k, v) = if let Some(q) = text.strip_prefix('"') {
        let end = q.find('"')?;
        let k: String = serde_json::from_str(&text[..end + 2]).ok()?;
        let v = text[end + 2..].strip_prefix(':')?;
        (k, v)
    } else {
        let i = text
            .find(": ")
            .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
        (text[..i].to_string(), &text[i + 1..])
    };
    if !v.is_empty() && !v.starts_with(' ') {
        return None;
    }
    Some((k, v.trim().to_string()))
}

fn mapping(lines: &mut [Line], at: &mut usize, indent: usize) -> Result<Value, String> {
    let mut map = serde_json::Map::new();
    while let Some(l) = lines.get(*at) {
        if l.indent != indent || is_item(&l.text) {
            break;
        }
        let n = l.n;
        let (k, v) = key_of(&l.text).ok_or_else(|| format!("line {n}: not `key: value`"))?;
        if k.contains(['&', '*', '!', '?']) {
            return Err(format!(
                "line {n}: no anchors, aliases, tags or complex keys"
            ));
        }
        *at += 1;
        let value = if !v.is_empty() {
            scalar(&v).map_err(|e| format!("line {n}: {e}"))?
        } else {
            match lines.get(*at) {
                Some(next) if next.indent > indent => node(lines, at, indent + 1)?,
                Some(next) if next.indent == indent && is_item(&next.text) => {
                    sequence(lines, at, indent)?
                }
                _ => Value::Null,
            }
        };
        if map.insert(k.clone(), value).is_some() {
            return Err(format!("line {n}: key {k:?} twice"));
        }
    }
    Ok(Value::Object(map))
}

fn scalar(text: &str) -> Result<Value, String> {
    if text.starts_with(['[', '{', '"']) {
        return serde_json::from_str(text).map_err(|e| format!("{text}: not JSON: {e}"));
    }
    if let Some(q) = text.strip_prefix('\'') {
        let q = q.strip_suffix('\'').ok_or("unterminated '…'")?;
        return Ok(Value::String(q.replace("''", "'")));
    }
    if text.starts_with(['&', '*', '!', '|', '>', '%', '@', '`']) {
        return Err(format!("{text}: outside the subset"));
    }
    Ok(match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" | "~" => Value::Null,
        t => match t.parse::<i64>() {
            Ok(i) => Value::from(i),
            Err(_) => Value::String(t.to_string()),
        },
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .into()
        })
        .collect()
}

#[test]
fn the_yaml_reader_rejects_what_it_does_not_understand() {
    let ok = "a:\n  b: [\"x\", \"y\"]  # c\n  c:\n  - d: 1\n    e: 'it''s'\n  - f\nt: |\n  one\n   two\n";
    let v = yaml(ok).unwrap();
    assert_eq!(v["a"]["b"], serde_json::json!(["x", "y"]));
    assert_eq!(v["a"]["c"][0]["d"], 1);
    assert_eq!(v["a"]["c"][0]["e"], "it's");
    assert_eq!(v["a"]["c"][1], "f");
    assert_eq!(v["t"], "one\n two\n");
    for bad in [
        "a: 1\na: 2\n",
        "a:\n\tb: 1\n",
        "a: 1\n  b: 2\n",
        "a: [x, y]\n",
        "a: &x 1\n",
        "---\na: 1\n",
        "a\n",
    ] {
        assert!(yaml(bad).is_err(), "{bad:?} was accepted");
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// A startup probe: its command, `periodSeconds`, `failureThreshold`.
type Probe = (Vec<String>, u64, u64);

/// The pod's sidecar command, its startup probe (command, period, failure threshold) and the
/// tests' command, after checking what makes the pattern work: one uid for the pod, no host
/// network, a native sidecar (init container with `restartPolicy: Always`).
fn pod() -> (Vec<String>, Probe, Vec<String>) {
    let v =
        yaml(&read("kubernetes-pod.yaml")).unwrap_or_else(|e| panic!("kubernetes-pod.yaml: {e}"));
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["kind"], "Pod");
    let spec = &v["spec"];
    assert!(
        spec["securityContext"]["runAsUser"].is_i64(),
        "one uid for the pod"
    );
    assert_ne!(spec["hostNetwork"], true, "the pod's own network namespace");
    let init = spec["initContainers"].as_array().expect("initContainers");
    assert_eq!(init.len(), 1);
    let side = &init[0];
    assert_eq!(side["restartPolicy"], "Always", "a native sidecar");
    let probe = &side["startupProbe"];
    let probe_cmd = strings(&probe["exec"]["command"]);
    let period = probe["periodSeconds"].as_u64().unwrap_or(10);
    let threshold = probe["failureThreshold"].as_u64().unwrap_or(3);
    let tests = spec["containers"].as_array().expect("containers");
    assert_eq!(tests.len(), 1);
    for c in init.iter().chain(tests) {
        assert!(
            c["securityContext"]["runAsUser"].is_null(),
            "no container of its own uid"
        );
    }
    (
        strings(&side["command"]),
        (probe_cmd, period, threshold),
        strings(&tests[0]["command"]),
    )
}

/// The pod simulated: each container a mount namespace of its own (empty `/tmp`, `/run`,
/// `/dev/shm`), all in one network namespace and as one uid, as in a pod. The sidecar's
/// command starts; its startup probe is run in its mount namespace (`nsenter`) every
/// `periodSeconds` until it succeeds, within `failureThreshold`; only then the tests' command
/// runs (its `npm test` replaced by two clients in a row, as a test suite starts them), and
/// both clients reach the sidecar's display. Stopping the sidecar (SIGTERM) stops weston.
#[test]
fn kubernetes_pod_sidecar_probe_and_tests_share_the_display() {
    let test = "kubernetes_pod_sidecar_probe_and_tests_share_the_display";
    let (side, (probe, period, threshold), tests) = pod();
    let Some((stage, script, uid)) = world(test, &["nsenter"]) else {
        return;
    };
    // The user's test suite, a program that starts clients, stands in as two clients in a row.
    assert_eq!(tests[tests.len() - 2..], ["npm", "test"], "{tests:?}");
    let mut tests = tests[..tests.len() - 2].to_vec();
    tests.extend(["sh", "-c", "wayland-info >/dev/null && wayland-info"].map(String::from));
    let body = format!(
        r#"
C rw {side} >"$O/side.out" 2>"$O/side.log" &
SP=$!
tries=0
while :; do
  tries=$((tries+1))
  nsenter -t $SP -m -- setpriv --reuid="$VICTIM" --regid="$VICTIM" --init-groups \
    env -i PATH="$M/bin:/usr/bin:/bin" HOME="$M/home" {probe} >"$O/probe" 2>&1 && break
  [ $tries -ge {threshold} ] && break
  sleep {period}
done
say probe; cat "$O/probe"
say tries_ok; [ $tries -lt {threshold} ] && echo yes
Cf rw {tests} >"$O/tests.out" 2>"$O/tests.err"
say tests; echo $?
say globals; grep -c "interface: 'wl_compositor'" "$O/tests.out"
finish $SP side
say left; pgrep -x weston || echo none
say log; cat "$O/side.log" "$O/tests.err"
"#,
        side = sh_words(&side),
        probe = sh_words(&probe),
        tests = sh_words(&tests),
    );
    let out = script.run(stage.sandbox(), &body);
    out.eq("probe", &format!("abstract:wayland-{uid}-1"))
        .eq("tries_ok", "yes")
        .eq("tests", "0")
        .eq("globals", "1")
        .absent("hung")
        .eq("left", "none");
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions

/// The workflow's steps' `run:` scripts, after checking its shape (triggers, one job on an
/// Ubuntu runner, steps each with `uses:` or `run:`).
fn workflow_runs() -> Vec<String> {
    let v = yaml(&read("github-actions.yml")).unwrap_or_else(|e| panic!("github-actions.yml: {e}"));
    assert!(v["on"].is_object(), "triggers");
    let jobs = v["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    assert!(job["runs-on"]
        .as_str()
        .is_some_and(|r| r.starts_with("ubuntu-")));
    let steps = job["steps"].as_array().expect("steps");
    let mut runs = Vec::new();
    for s in steps {
        match (s["uses"].as_str(), s["run"].as_str()) {
            (Some(_), None) => {}
            (None, Some(r)) => runs.push(r.to_string()),
            _ => panic!("a step has `uses:` or `run:`: {s}"),
        }
    }
    runs
}

/// The workflow's smoke step (`waysock headless -- wayland-info`) run as the runner runs it
/// (`bash -e`, a non-root user, fresh `/tmp`): it succeeds and exits 0.
#[test]
fn github_actions_smoke_step_runs() {
    let test = "github_actions_smoke_step_runs";
    let runs = workflow_runs();
    let smoke: Vec<&String> = runs
        .iter()
        .filter(|r| {
            r.trim().starts_with("waysock headless") && r.trim().ends_with("-- wayland-info")
        })
        .collect();
    assert_eq!(smoke.len(), 1, "one smoke step: {runs:?}");
    assert!(
        runs.iter()
            .any(|r| r.contains("waysock headless") && r.contains("--screenshot")),
        "the tests' step keeps a screenshot"
    );
    let Some((stage, script, _)) = world(test, &["bash"]) else {
        return;
    };
    let body = format!(
        r#"
Cf rw bash -e -c {step} >"$O/out" 2>"$O/err"
say rc; echo $?
say globals; grep -c "interface: 'wl_compositor'" "$O/out"
say err; cat "$O/err"
"#,
        step = sh_quote(smoke[0])
    );
    let out: Out = script.run(stage.sandbox(), &body);
    out.eq("rc", "0").eq("globals", "1");
}

// ---------------------------------------------------------------------------------------------
// Every waysock command line

/// Every `waysock …` argv in the examples, with where it was found.
fn waysock_argvs() -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    let (_, _, exec, _) = systemd_pair();
    let mut exec = exec;
    exec[0] = "waysock".into();
    all.push(("waysock-weston.service ExecStart".to_string(), exec));
    all.push(("Dockerfile ENTRYPOINT + CMD".into(), docker_image().0));
    let (side, (probe, _, _), tests) = pod();
    all.push(("kubernetes-pod.yaml sidecar".into(), side));
    all.push(("kubernetes-pod.yaml startupProbe".into(), probe));
    all.push(("kubernetes-pod.yaml tests".into(), tests));
    let lines = |what: &str, text: &str, all: &mut Vec<(String, Vec<String>)>| {
        for l in text.lines() {
            let l = strip_comment(l.trim());
            if l.starts_with("waysock ") {
                all.push((
                    what.to_string(),
                    l.split_whitespace().map(String::from).collect(),
                ));
            }
        }
    };
    for r in workflow_runs() {
        lines("github-actions.yml run:", &r, &mut all);
    }
    let readme = read("README.md");
    let code: String = readme
        .lines()
        .filter(|l| l.starts_with("    "))
        .collect::<Vec<_>>()
        .join("\n");
    lines("README.md", &code, &mut all);
    all
}

/// The long and short options `waysock SUB --help` lists, each with whether it takes a value.
fn options(bin: &str, sub: &str) -> BTreeMap<String, bool> {
    let out = Command::new(bin)
        .args([sub, "--help"])
        .output()
        .expect("run waysock");
    assert!(out.status.success(), "waysock {sub} --help failed");
    let mut opts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if !line.starts_with('-') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            let w = w.trim_end_matches(',');
            if w.starts_with('-') && w.len() > 1 {
                let value = words.get(i + 1).is_some_and(|n| n.starts_with('<'));
                opts.insert(w.to_string(), value);
            } else if !w.starts_with('<') {
                break;
            }
        }
    }
    opts
}

/// Why `argv` (`waysock SUB OPTIONS… [-- CMD…]`) is not a command line `waysock` accepts, as
/// far as its options go: every word before `--` must be an option SUB lists (with its value),
/// since `run`, `headless` and `exec` would take an unknown one for the command itself.
fn bad_options(bin: &str, argv: &[String]) -> Option<String> {
    let sub = argv.get(1)?;
    let opts = options(bin, sub);
    let mut words = argv[2..].iter().take_while(|a| *a != "--");
    while let Some(w) = words.next() {
        let name = w.split('=').next().unwrap_or(w);
        match opts.get(name) {
            None => return Some(format!("{w}: not an option of waysock {sub}")),
            Some(true) if !w.contains('=') && words.next().is_none() => {
                return Some(format!("{w}: its value is missing"))
            }
            _ => {}
        }
    }
    None
}

/// Every `waysock` command line in the examples names a real subcommand with options it
/// lists (an unknown option would be taken for the command by `run`, `headless` and `exec`),
/// and `waysock` parses it: the argv up to `--` with `--help` appended exits 0 (a bad value,
/// such as `--strategy nope`, fails before `--help` is reached). `run`, `headless` and `exec`
/// have a command after `--`; every subcommand the examples are about is used.
#[test]
fn every_waysock_command_line_in_the_examples_is_accepted() {
    let bin = env!("CARGO_BIN_EXE_waysock");
    let parse = |argv: &[String]| {
        let opts: Vec<&String> = argv[1..].iter().take_while(|a| *a != "--").collect();
        let out = Command::new(bin)
            .args(&opts)
            .arg("--help")
            .env_remove("WAYSOCK_LOG")
            .output()
            .expect("run waysock");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    // The checks catch what they are meant to.
    assert!(bad_options(bin, &words("waysock run --bogus -- weston")).is_some());
    assert!(bad_options(bin, &words("waysock wait --display")).is_some());
    assert!(bad_options(bin, &words("waysock run --ready-fd 3 -v -- weston")).is_none());
    assert_eq!(parse(&words("waysock run --strategy nope")).0, Some(2));
    let mut subs: Vec<String> = Vec::new();
    for (what, argv) in &waysock_argvs() {
        assert_eq!(argv[0], "waysock", "{what}: {argv:?}");
        let sub = argv.get(1).cloned().unwrap_or_default();
        if let Some(why) = bad_options(bin, argv) {
            panic!("{what}: {argv:?}: {why}");
        }
        let (code, stdout) = parse(argv);
        assert_eq!(code, Some(0), "{what}: {argv:?} is not accepted by waysock");
        assert!(
            stdout.contains(&format!("Usage: waysock {sub} ")),
            "{what}: {argv:?}: {sub} is not a subcommand:\n{stdout}"
        );
        if ["run", "headless", "exec"].contains(&sub.as_str()) {
            let cut = argv.iter().position(|a| a == "--");
            assert!(
                cut.is_some_and(|c| c + 1 < argv.len()),
                "{what}: {argv:?}: no command after --"
            );
        }
        subs.push(sub);
    }
    for sub in ["run", "headless", "wait", "exec"] {
        assert!(
            subs.iter().any(|s| s == sub),
            "no example uses waysock {sub}"
        );
    }
}
