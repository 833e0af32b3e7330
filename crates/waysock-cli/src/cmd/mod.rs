//! One module per subcommand.

pub mod doctor;

use waysock::Strategy;

/// Parses `--strategy a,b` (or `WAYSOCK_STRATEGIES`) into a chain.
pub fn strategies(flag: Option<&str>) -> anyhow::Result<Vec<Strategy>> {
    let chain = match flag {
        Some(list) => Strategy::parse_list(list)?,
        None => waysock::Environment::strategies_from_process()
            .map_err(|e| anyhow::anyhow!("WAYSOCK_STRATEGIES: {e}"))?,
    };
    Ok(chain)
}
