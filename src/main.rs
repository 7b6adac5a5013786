//! smart-relayer: reads the command line and hands over to the configuration and supervisor.

mod config;
mod logging;
mod reload;
mod rlimit;
mod supervisor;
mod worker;

use clap::{ArgAction, Parser};
use slog::{info, warn};
use std::path::PathBuf;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about, disable_version_flag = true)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(short = 'c', long = "config", default_value = "relayer.conf")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Debug log messages (also with a non-empty DEBUG variable).
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Print the version and exit.
    #[arg(short = 'v', short_alias = 'V', long = "version", action = ArgAction::Version)]
    version: (),
}

fn main() {
    let cli = Cli::parse();
    let config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smart-relayer: configuration error: {e}");
            std::process::exit(2);
        }
    };
    if cli.check {
        for w in &config.warnings {
            eprintln!("smart-relayer: warning: {w}");
        }
        println!(
            "{}: configuration OK, {} relayer(s)",
            cli.config.display(),
            config.relayers.len() + config.not_relayed.len()
        );
        return;
    }
    let (log, guard) = logging::init(config.log_format, logging::debug_requested(cli.debug));
    for w in &config.warnings {
        warn!(log, "{}", w);
    }
    match rlimit::raise_nofile() {
        Ok((soft, hard)) => info!(log, "open files limit"; "soft" => soft, "hard" => hard),
        Err(e) => warn!(log, "cannot raise the open files limit"; "error" => %e),
    }
    let code = supervisor::run(config, log);
    drop(guard);
    std::process::exit(code);
}
