//! Per-relayer counters and gauges, labelled with the relayer's `listen`. They cost an atomic
//! add when a Prometheus recorder is installed (`metricsListen`), and nothing otherwise.

use metrics::{counter, gauge, Counter, Gauge};

#[derive(Clone)]
pub struct RelayerMetrics {
    /// Commands sent to the backend and waited on.
    pub forwarded: Counter,
    /// Commands the relayer answered itself.
    pub local: Counter,
    /// Writes acknowledged at once and sent in the background (smart mode).
    pub acknowledged: Counter,
    /// Background writes the backend refused.
    pub background_errors: Counter,
    /// Upstream connections opened again after a loss.
    pub reconnects: Counter,
    /// AUTH attempts from clients with a wrong password.
    pub auth_failures: Counter,
    pub clients: Gauge,
    /// Bytes acknowledged early and not yet confirmed.
    pub pending_bytes: Gauge,
}

impl RelayerMetrics {
    pub fn new(listen: &str) -> Self {
        let commands = |outcome: &'static str| counter!("smart_relayer_commands_total", "listen" => listen.to_string(), "outcome" => outcome);
        RelayerMetrics {
            forwarded: commands("forwarded"),
            local: commands("local"),
            acknowledged: commands("acknowledged"),
            background_errors: counter!("smart_relayer_background_errors_total", "listen" => listen.to_string()),
            reconnects: counter!("smart_relayer_reconnects_total", "listen" => listen.to_string()),
            auth_failures: counter!("smart_relayer_auth_failures_total", "listen" => listen.to_string()),
            clients: gauge!("smart_relayer_clients_connected", "listen" => listen.to_string()),
            pending_bytes: gauge!("smart_relayer_pending_bytes", "listen" => listen.to_string()),
        }
    }
}
