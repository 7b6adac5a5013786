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
    /// Background writes the backend refused for good (by code in
    /// `smart_relayer_background_writes_total`).
    pub background_errors: Counter,
    /// Background writes confirmed by the backend.
    pub background_delivered: Counter,
    /// Background writes cut off unconfirmed with their connection and not safe to send twice.
    pub background_unknown: Counter,
    /// Background writes not confirmed when the drain's time limit ran out.
    pub background_lost: Counter,
    /// Times a connection stopped writing because the backend refused a command with an
    /// error that may pass (LOADING, BUSY...).
    pub stalls: Counter,
    /// Upstream connections opened again after a loss.
    pub reconnects: Counter,
    /// AUTH attempts from clients with a wrong password.
    pub auth_failures: Counter,
    pub clients: Gauge,
    /// Bytes acknowledged early and not yet confirmed.
    pub pending_bytes: Gauge,
    listen: String,
}

impl RelayerMetrics {
    pub fn new(listen: &str) -> Self {
        let commands = |outcome: &'static str| counter!("smart_relayer_commands_total", "listen" => listen.to_string(), "outcome" => outcome);
        let background = |outcome: &'static str| counter!("smart_relayer_background_writes_total", "listen" => listen.to_string(), "outcome" => outcome);
        RelayerMetrics {
            forwarded: commands("forwarded"),
            local: commands("local"),
            acknowledged: commands("acknowledged"),
            background_errors: counter!("smart_relayer_background_errors_total", "listen" => listen.to_string()),
            background_delivered: background("delivered"),
            background_unknown: background("unknown"),
            background_lost: background("lost"),
            stalls: counter!("smart_relayer_stalls_total", "listen" => listen.to_string()),
            reconnects: counter!("smart_relayer_reconnects_total", "listen" => listen.to_string()),
            auth_failures: counter!("smart_relayer_auth_failures_total", "listen" => listen.to_string()),
            clients: gauge!("smart_relayer_clients_connected", "listen" => listen.to_string()),
            pending_bytes: gauge!("smart_relayer_pending_bytes", "listen" => listen.to_string()),
            listen: listen.to_string(),
        }
    }

    /// A background write refused for good, with the error's code (WRONGTYPE...). Looked up
    /// per refusal: codes are not known in advance, and refusals are not the common path.
    pub fn refused(&self, code: &str) {
        counter!("smart_relayer_background_writes_total", "listen" => self.listen.clone(), "outcome" => "refused", "code" => code.to_string()).increment(1);
    }

    /// A background write given up at `retryTimeout`, with the last refusal's code.
    pub fn expired(&self, code: &str) {
        counter!("smart_relayer_background_writes_total", "listen" => self.listen.clone(), "outcome" => "expired", "code" => code.to_string()).increment(1);
    }

    /// A background write refused with an error that may pass, to be sent again.
    pub fn retried(&self, code: &str) {
        counter!("smart_relayer_background_retries_total", "listen" => self.listen.clone(), "code" => code.to_string()).increment(1);
    }
}
