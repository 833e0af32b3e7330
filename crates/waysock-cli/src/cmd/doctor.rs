//! `waysock doctor`: every candidate, its verdict, errno, cause and remedy; the choice; and
//! what a stock compositor and client would do without waysock.

use std::fmt::Write as _;
use std::process::ExitCode;

use serde::Serialize;
use waysock::{Binder, Environment, Report};

/// Arguments of `waysock doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Strategy order to diagnose (comma-separated); default: WAYSOCK_STRATEGIES or the full chain.
    #[arg(long, value_name = "S,..", value_parser = super::parse_chain)]
    strategy: Option<super::Chain>,
    /// Diagnose this display name instead of the first free wayland-N.
    #[arg(long, value_name = "NAME")]
    display: Option<String>,
}

#[derive(Serialize)]
struct Json<'a> {
    uid: u32,
    choice: &'a Option<waysock::Choice>,
    /// Where `waysock run` would start a stock compositor (it tries wayland-1..32 itself).
    run_choice: &'a Option<waysock::Choice>,
    attempts: &'a [waysock::Attempt],
    stock: waysock::stock::Stock,
    preload: Preload,
}

/// Whether `run` could put a stock compositor on an abstract socket here.
#[derive(Serialize)]
struct Preload {
    /// The shim, if found.
    shim: Option<std::path::PathBuf>,
    /// Why it cannot be used, if it cannot.
    problem: Option<String>,
}

fn preload() -> Preload {
    match super::preload::shim_path() {
        Ok(p) => Preload {
            shim: Some(p),
            problem: None,
        },
        Err(e) => Preload {
            shim: None,
            problem: Some(e),
        },
    }
}

/// Runs the diagnosis. Exit 0 when some strategy works, 1 when none does.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let chain = match super::strategies(args.strategy) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let env = Environment::from_process();
    let binder = Binder::new(env.clone())
        .strategies(chain)
        .display(args.display);
    // What `run` would do with a stock compositor, which never tries wayland-0: a directory
    // whose wayland-1..32 are all taken is full for it even when the library could still bind.
    let run_choice = binder
        .clone()
        .for_stock_compositor(true)
        .diagnose()
        .ok()
        .and_then(|r| r.choice);
    let report = match binder.diagnose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("waysock: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let stock = waysock::stock::predict(&env);
    let code = if report.choice.is_some() { 0 } else { 1 };
    if args.json {
        let json = Json {
            uid: report.uid,
            choice: &report.choice,
            run_choice: &run_choice,
            attempts: &report.attempts,
            stock,
            preload: preload(),
        };
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        crate::output::print(&text)?;
    } else {
        crate::output::print(&human(&env, &report, &run_choice, &stock))?;
    }
    Ok(ExitCode::from(code))
}

fn show(v: &Option<std::ffi::OsString>) -> String {
    match v {
        Some(v) => format!("{:?}", v),
        None => "unset".to_string(),
    }
}

fn human(
    env: &Environment,
    report: &Report,
    run_choice: &Option<waysock::Choice>,
    stock: &waysock::stock::Stock,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "waysock doctor — uid {}, XDG_RUNTIME_DIR {}, WAYLAND_DISPLAY {}, HOME {}\n",
        env.uid,
        show(&env.xdg_runtime_dir),
        show(&env.wayland_display),
        show(&env.home)
    );
    let _ = writeln!(s, "Strategies, in order (probe: nothing is left behind):");
    let _ = write!(s, "{report}");
    let warnings: Vec<_> = report.security_warnings().collect();
    if !warnings.is_empty() {
        let _ = writeln!(s, "\nSecurity warnings ({}):", warnings.len());
        for (a, f) in warnings {
            let _ = writeln!(s, "  {}: {}", a.strategy, f.cause);
        }
    }
    let _ = writeln!(s, "\nWithout waysock:");
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    let _ = writeln!(
        s,
        "  compositor {} {}",
        mark(stock.compositor.works),
        stock.compositor.verdict
    );
    let _ = writeln!(
        s,
        "  client     {} {}",
        mark(stock.client.works),
        stock.client.verdict
    );
    let p = preload();
    let _ = match (&p.shim, &p.problem) {
        (Some(shim), _) => writeln!(
            s,
            "\nAbstract fallback for stock compositors: preload shim {} (not for static, \
             setuid/file-capability, or pure-Rust-socket compositors: `waysock run` checks)",
            if shim.starts_with("/proc/self/fd") {
                "built into waysock (handed over as a sealed memfd)".to_string()
            } else {
                shim.display().to_string()
            }
        ),
        (None, Some(why)) => writeln!(
            s,
            "\nAbstract fallback for stock compositors: unavailable: {why}"
        ),
        (None, None) => Ok(()),
    };
    match &report.choice {
        Some(c) => {
            let _ = writeln!(s, "\nwaysock would use {} ({}).", c.endpoint, c.strategy);
            if let Some(r) = run_choice.as_ref().filter(|r| r.strategy != c.strategy) {
                let _ = writeln!(
                    s,
                    "`waysock run` would start a stock compositor on {} ({}): it tries \
                     wayland-1..{} itself, and those are taken in {}.",
                    r.endpoint,
                    r.strategy,
                    waysock::MAX_DISPLAY_NUMBER,
                    c.strategy
                );
            }
        }
        None => {
            let _ = writeln!(
                s,
                "\nNo strategy works here: fix one of the causes above (each FAILED line has a fix)."
            );
        }
    }
    s
}
