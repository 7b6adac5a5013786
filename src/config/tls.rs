//! The `tls*` keys of a Redis or Redis Cluster entry: only with a `rediss://` url, files read
//! and checked now so that a bad one fails the check (or the reload) instead of every
//! connection.

use super::raw::{normalize, Entry};
use relayer_actors::endpoint::{TargetAddr, TargetKind};
use relayer_actors::tls::{TlsClient, TlsOptions};
use std::path::PathBuf;

/// `target`: where the entry connects, None for an entry that connects nowhere (whose `tls*`
/// keys are then an error, as with a url without TLS).
pub(super) fn client(e: &Entry, target: Option<&TargetAddr>) -> Result<Option<TlsClient>, String> {
    let raw = e.raw;
    let path = |v: &Option<String>, k: &str| -> Result<Option<PathBuf>, String> {
        match v.as_deref() {
            None => Ok(None),
            Some("") => Err(format!("{}: is empty: the path of a PEM file", e.key(k))),
            Some(p) => Ok(Some(PathBuf::from(p))),
        }
    };
    let options = TlsOptions {
        ca_file: path(&raw.tls_ca_file, "tlscafile")?,
        cert_file: path(&raw.tls_cert_file, "tlscertfile")?,
        key_file: path(&raw.tls_key_file, "tlskeyfile")?,
        server_name: raw.tls_server_name.clone(),
    };
    let given = [
        (options.ca_file.is_some(), "tlscafile"),
        (options.cert_file.is_some(), "tlscertfile"),
        (options.key_file.is_some(), "tlskeyfile"),
        (options.server_name.is_some(), "tlsservername"),
    ];
    match target {
        Some(TargetAddr {
            tls: true,
            kind: TargetKind::Tcp { host, .. },
            ..
        }) => TlsClient::load(&options, host).map(Some).map_err(|err| {
            // As written in the file, or as documented when it is not there.
            let k = normalize(err.key);
            let name = if e.table.spelled.contains_key(&k) {
                e.table.spelling(&k)
            } else {
                err.key
            };
            format!("{}: key '{name}': {}", e.ctx, err.message)
        }),
        _ => match given.iter().find(|(set, _)| *set) {
            Some((_, k)) => Err(format!(
                "{}: only used with TLS: the url must start with rediss://",
                e.key(k)
            )),
            None => Ok(None),
        },
    }
}
