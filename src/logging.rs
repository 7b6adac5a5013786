//! Log setup: readable text or JSON lines on stderr, written by a background thread so a slow
//! stderr never blocks an actor.

use crate::config::LogFormat;
use slog::{o, Drain, Level, Logger};

pub struct LogGuard(#[allow(dead_code)] slog_async::AsyncGuard);

pub fn init(format: LogFormat, debug: bool) -> (Logger, LogGuard) {
    let level = if debug { Level::Debug } else { Level::Info };
    let (drain, guard) = match format {
        LogFormat::Text => {
            let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            async_drain(drain.filter_level(level).fuse())
        }
        LogFormat::Json => {
            let drain = slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse();
            async_drain(drain.filter_level(level).fuse())
        }
    };
    (Logger::root(drain, o!()), LogGuard(guard))
}

fn async_drain<D>(drain: D) -> (slog::Fuse<slog_async::Async>, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(8192)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build_with_guard();
    (drain.fuse(), guard)
}

/// Debug output is on with `-d` or a non-empty DEBUG variable, as in the original.
pub fn debug_requested(flag: bool) -> bool {
    flag || std::env::var_os("DEBUG").is_some_and(|v| !v.is_empty())
}
