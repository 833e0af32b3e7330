//! `waysock`: diagnose, bring up and connect Wayland displays where the standard path fails.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod cmd;
mod logger;
mod output;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  nothing could be bound or connected (the report says why)
  2  usage error
  run, exec: otherwise the child's own status (128+N if killed by signal N);
  126/127 if the program cannot be executed / is not found

Environment:
  WAYSOCK_LOG=error|warn|info|debug|trace   log verbosity (default: warn)
  WAYSOCK_STRATEGIES=a,b,c                  strategy order (same as --strategy)";

/// Bring Wayland display sockets up, and let clients find them, where the standard path fails.
#[derive(Debug, Parser)]
#[command(name = "waysock", version, after_help = EXIT_CODES)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); WAYSOCK_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Diagnose every candidate place for a display socket, and predict what a stock
    /// compositor and a stock client would do here.
    Doctor(cmd::doctor::Args),
    /// Start an unmodified compositor where it can bind, wait until it answers, publish it.
    Run(cmd::run::Args),
    /// Find the display and start an unmodified client connected to it.
    Exec(cmd::exec::Args),
    /// Run a command against a headless compositor of its own (Wayland's xvfb-run): started,
    /// ready, handed over, stopped and cleaned up; the command's status is ours.
    Headless(cmd::headless::Args),
    /// Print the variables that reach the display (`eval "$(waysock env)"`).
    Env(cmd::env::Args),
    /// List this user's live displays.
    Ls(cmd::ls::Args),
    /// Wait until the display answers a Wayland roundtrip (exit 0), or time out (exit 1).
    Wait(cmd::wait::Args),
    /// Carry Wayland over TCP between hosts or network namespaces, descriptors translated,
    /// both ends authenticated with a shared token file, the traffic encrypted and
    /// authenticated (AES-256-GCM where both hosts have AES in hardware, else
    /// ChaCha20-Poly1305).
    Bridge(cmd::bridge::Args),
    /// Run a client on another host with its display bridged to this one's compositor,
    /// carried by your own ssh (`waysock ssh [SSH-OPTIONS] HOST -- CLIENT`); the client's
    /// status is ours.
    Ssh(cmd::ssh::Args),
    /// The far side of `waysock ssh`, started by it on the remote host.
    #[command(name = "ssh-remote", hide = true)]
    SshRemote(cmd::ssh::RemoteArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions(cmd::completions::Args),
    /// Print the manual page (roff) on stdout: `waysock manpage | man -l -`.
    Manpage(cmd::manpage::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // A value our own parsers refused (`--strategy`, `--endpoint`, …): said the way
            // waysock says usage errors, naming the flag.
            if let Some(refused) =
                std::error::Error::source(&e).and_then(|s| s.downcast_ref::<cmd::Usage>())
            {
                return cmd::usage(refused);
            }
            // --help and --version are not errors; everything else is a usage error (2).
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    logger::init(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("waysock: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Exec(args) => cmd::exec::run(args),
        Command::Headless(args) => cmd::headless::run(args),
        Command::Env(args) => cmd::env::run(args),
        Command::Ls(args) => cmd::ls::run(args),
        Command::Wait(args) => cmd::wait::run(args),
        Command::Bridge(args) => cmd::bridge::run(args),
        Command::Ssh(args) => cmd::ssh::run(args),
        Command::SshRemote(args) => cmd::ssh::run_remote(args),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Manpage(args) => cmd::manpage::run(args, Cli::command()),
    }
}
