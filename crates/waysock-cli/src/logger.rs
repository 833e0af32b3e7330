//! The stderr log sink: `WAYSOCK_LOG` or `-v` pick the level; the library only emits.

use tracing::level_filters::LevelFilter;

/// Installs the global subscriber. `WAYSOCK_LOG` wins over `-v`.
pub fn init(verbose: u8) {
    let from_env = std::env::var("WAYSOCK_LOG").ok().and_then(|v| parse(&v));
    let level = from_env.unwrap_or(match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    });
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn parse(v: &str) -> Option<LevelFilter> {
    match v.trim().to_ascii_lowercase().as_str() {
        "off" => Some(LevelFilter::OFF),
        "error" => Some(LevelFilter::ERROR),
        "warn" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}
