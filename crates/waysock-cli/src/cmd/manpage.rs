//! `waysock manpage`: the manual page (roff) on stdout, from the clap definitions.

use std::io::Write;
use std::process::ExitCode;

/// Arguments of `waysock manpage`.
#[derive(Debug, clap::Args)]
#[command(after_help = "View it with: waysock manpage | man -l -")]
pub struct Args {}

/// Writes the page for `cli` (waysock's whole command tree) on stdout.
pub fn run(_args: Args, cli: clap::Command) -> anyhow::Result<ExitCode> {
    write_stdout(&render(cli)?)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` on stdout; a reader that went away (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The page: clap_mangen's page of the top command (name, synopsis, description, options,
/// the list of subcommands, exit codes and environment), then one section per subcommand
/// with its own synopsis and options.
pub fn render(mut cli: clap::Command) -> std::io::Result<Vec<u8>> {
    cli.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut page)?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        let title = format!("{} {}", cli.get_name(), sub.get_name());
        writeln!(page, ".SH \"{}\"", title.to_uppercase())?;
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(page, "{}", escape(&about.to_string()))?;
        }
        let man = clap_mangen::Man::new(sub.clone().bin_name(&title));
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_options_section(&mut part)?;
        // Their headings become subsections of this subcommand's section.
        let part = String::from_utf8_lossy(&part)
            .replace(".SH SYNOPSIS", ".SS Synopsis")
            .replace(".SH OPTIONS", ".SS Options");
        page.extend_from_slice(part.as_bytes());
    }
    Ok(page)
}

/// Text that starts a line is safe in roff: no leading `.` or `'`, backslashes doubled.
fn escape(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\\\");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_at_line_start_are_escaped() {
        assert_eq!(escape(".x\n'y\na\\b"), "\\&.x\n\\&'y\na\\\\b");
    }
}
