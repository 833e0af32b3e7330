//! `waysock completions` and `waysock manpage`: generated from the clap definitions, and
//! accepted by the tools that read them.

use std::io::Write;
use std::process::{Command, Stdio};

fn waysock(args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_waysock"))
        .args(args)
        .output()
        .expect("running waysock");
    assert!(
        out.status.success(),
        "waysock {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `program args…` with `input` on stdin; `None` if the program is not installed.
fn feed(program: &str, args: &[&str], input: &[u8]) -> Option<std::process::Output> {
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("{program}: {e}"),
    };
    let mut stdin = child.stdin.take()?;
    if let Err(e) = stdin.write_all(input) {
        panic!("writing to {program}: {e}");
    }
    drop(stdin);
    match child.wait_with_output() {
        Ok(out) => Some(out),
        Err(e) => panic!("{program}: {e}"),
    }
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let script = waysock(&["completions", "bash"]);
    let text = String::from_utf8_lossy(&script);
    for sub in [
        "doctor",
        "run",
        "exec",
        "env",
        "ls",
        "bridge",
        "completions",
        "manpage",
    ] {
        assert!(text.contains(sub), "{sub} missing from the bash script");
    }
    let check = feed("bash", &["-n"], &script).expect("bash is installed");
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Loaded for real: completing `waysock do` offers doctor.
    let probe = format!(
        "{}\nCOMP_WORDS=(waysock do); COMP_CWORD=1; COMP_LINE='waysock do'; COMP_POINT=10\n\
         _waysock waysock do waysock\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        text
    );
    let run = feed("bash", &[], probe.as_bytes()).unwrap();
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .any(|l| l == "doctor"),
        "completing `waysock do`: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let text = String::from_utf8(waysock(&["completions", shell])).unwrap();
        for sub in ["doctor", "run", "exec", "env", "ls", "bridge"] {
            assert!(text.contains(sub), "{sub} missing from the {shell} script");
        }
        // Syntax-checked where the shell is installed (CI installs neither; bash is the one
        // the issue asks for).
        let check = if shell == "zsh" {
            feed("zsh", &["-n"], text.as_bytes())
        } else {
            feed("fish", &["--no-execute"], text.as_bytes())
        };
        if let Some(check) = check {
            assert!(
                check.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_waysock"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn manpage_renders_with_man() {
    let page = waysock(&["manpage"]);
    let text = String::from_utf8_lossy(&page);
    assert!(
        text.starts_with(".ie") || text.contains(".TH waysock"),
        "{text}"
    );
    let Some(man) = feed("man", &["-l", "-P", "cat", "-"], &page) else {
        waysock_testkit::skip("manpage_renders_with_man", "man is not installed (man-db)");
        return;
    };
    let rendered = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.status.success(),
        "man -l: {}",
        String::from_utf8_lossy(&man.stderr)
    );
    // Overstriking (bold) is stripped before looking at the words.
    let plain: String = {
        let mut out = String::new();
        for c in rendered.chars() {
            if c == '\u{8}' {
                out.pop();
            } else {
                out.push(c);
            }
        }
        out
    };
    for want in [
        "NAME",
        "SYNOPSIS",
        "waysock",
        "WAYSOCK RUN",
        "--strategy",
        "Exit codes",
    ] {
        assert!(
            plain.contains(want),
            "{want:?} not in the rendered page:\n{plain}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&man.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
}
