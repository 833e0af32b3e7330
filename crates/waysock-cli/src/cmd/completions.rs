//! `waysock completions SHELL`: a completion script for the shell, from the clap definitions.

use std::process::ExitCode;

/// Arguments of `waysock completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Install, for example:
  bash: waysock completions bash > ~/.local/share/bash-completion/completions/waysock
  zsh:  waysock completions zsh > ~/.zfunc/_waysock   (with fpath+=~/.zfunc before compinit)
  fish: waysock completions fish > ~/.config/fish/completions/waysock.fish")]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `args.shell` on stdout; `cli` is waysock's whole command tree.
pub fn run(args: Args, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let name = cli.get_name().to_owned();
    // Made in memory first: clap_complete panics on a write error such as a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    super::manpage::write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}
