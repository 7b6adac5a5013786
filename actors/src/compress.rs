//! Compression compatible with the original Go relayer, both ways (what it stored reads back
//! through this relayer, and the other way round; `compress_tests.rs` checks both against
//! vectors made with its libraries):
//! forwarded arguments are compressed with snappy or gzip, and string replies that carry a
//! snappy or gzip marker are decoded, at any depth of nesting.
//!
//! Stored formats, as the original wrote them:
//! - snappy: the 4 bytes `$sy$`, then snappy's block format (not the framed one) of the value,
//!   for arguments longer than 256 bytes (`compress = true`);
//! - gzip: an RFC 1952 member (magic 1f 8b) at the configured level, for arguments of 256 bytes
//!   or more (`gzip = <level>`).
//!
//! Which arguments: every argument of a forwarded command, the command name and keys included,
//! as the original did. A compressed key is part of the key's name in Redis, so data the
//! original wrote is only found again under the same rule. Commands whose arguments a script
//! or function sees or is made of are never compressed: names starting with EVAL (as in the
//! original) or FCALL, and SCRIPT and FUNCTION (whose compressed code Redis could not load).
//!
//! Replies go to the client unchanged unless they contain a marker (one memmem pass); only then
//! is the reply walked and rebuilt. Decoded sizes are bounded per reply, so a zip bomb stored
//! in Redis cannot exhaust memory: what would pass the bound is passed through as stored.

use crate::command::Spec;
use crate::log_limit::LogLimit;
use crate::resp::request::Command;
use crate::resp::write;
use bytes::{Bytes, BytesMut};
use memchr::memmem;
use slog::{warn, Logger};
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Read;
use std::sync::LazyLock;

pub const SNAPPY_MARKER: &[u8] = b"$sy$";
pub const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// The original's threshold: snappy compresses longer arguments, gzip this long and longer.
pub const MIN_SIZE: usize = 256;

/// How forwarded arguments are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Snappy,
    /// gzip at a level 1..=9.
    Gzip(u32),
}

impl Codec {
    /// Whether an argument of `len` bytes is compressed: `>` for snappy (the original's
    /// `compress`), `>=` for gzip (its later `gzip` key).
    pub fn applies(self, len: usize) -> bool {
        match self {
            Codec::Snappy => len > MIN_SIZE,
            Codec::Gzip(_) => len >= MIN_SIZE,
        }
    }

    pub fn encode(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::Snappy => snappy(data),
            Codec::Gzip(level) => gzip(level, data),
        }
    }
}

/// A relayer's compression: on when any of compress, uncompress, gzip or gunzip is set, and
/// then every reply is checked for markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// None: replies are decoded, requests go as sent (`uncompress`, `gunzip`).
    pub writes: Option<Codec>,
}

impl Compression {
    /// The command with its long arguments compressed; the same command, untouched, when
    /// nothing is to be compressed.
    /// `cmd` with its long arguments compressed, unless its entry in the command table (`spec`)
    /// says they are kept as sent.
    pub fn compress_command(&self, cmd: Command, spec: &'static Spec) -> Command {
        let Some(codec) = self.writes else {
            return cmd;
        };
        let keeps = cmd.argc() == 0 || spec.resolve((cmd.argc() > 1).then(|| cmd.arg(1))).keeps_arguments;
        if keeps || !cmd.args().any(|a| codec.applies(a.len())) {
            return cmd;
        }
        let args: Vec<Cow<[u8]>> = cmd
            .args()
            .map(|a| {
                if codec.applies(a.len()) {
                    Cow::Owned(codec.encode(a))
                } else {
                    Cow::Borrowed(a)
                }
            })
            .collect();
        Command::from_args(&args)
    }
}

/// `$sy$` and the snappy block encoding of `data`.
pub fn snappy(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; SNAPPY_MARKER.len() + snap::raw::max_compress_len(data.len())];
    out[..SNAPPY_MARKER.len()].copy_from_slice(SNAPPY_MARKER);
    let n = snap::raw::Encoder::new()
        .compress(data, &mut out[SNAPPY_MARKER.len()..])
        .expect("the buffer has snappy's maximum size");
    out.truncate(SNAPPY_MARKER.len() + n);
    out
}

/// One gzip member of `data` at `level` (1..=9).
pub fn gzip(level: u32, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2 + 64),
        flate2::Compression::new(level),
    );
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// Why a value was left as stored.
#[derive(Debug, PartialEq, Eq)]
enum Undecoded {
    /// Not compressed, or not valid after its marker.
    Plain,
    /// Decoding it would pass the reply's bound.
    OverCap,
}

/// The value as the client wrote it, from a stored value with a marker; at most `cap` bytes.
fn decode_value(v: &[u8], cap: usize) -> Result<Vec<u8>, Undecoded> {
    if let Some(rest) = v.strip_prefix(SNAPPY_MARKER) {
        let len = snap::raw::decompress_len(rest).map_err(|_| Undecoded::Plain)?;
        if len > cap {
            return Err(Undecoded::OverCap);
        }
        return snap::raw::Decoder::new()
            .decompress_vec(rest)
            .map_err(|_| Undecoded::Plain);
    }
    if v.starts_with(GZIP_MAGIC) {
        // Multi-member, as Go's reader: bytes after a member must be another valid member.
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(v)
            .take((cap as u64).saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|_| Undecoded::Plain)?;
        if out.len() > cap {
            return Err(Undecoded::OverCap);
        }
        return Ok(out);
    }
    Err(Undecoded::Plain)
}

/// Whether the reply may hold a compressed value: the cheap test before any decoding. The
/// searchers are built once (building one per reply cost more than searching 100 bytes).
pub fn has_marker(reply: &[u8]) -> bool {
    static SNAPPY: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(SNAPPY_MARKER));
    static GZIP: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(GZIP_MAGIC));
    SNAPPY.find(reply).is_some() || GZIP.find(reply).is_some()
}

/// What `decode_reply` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub values: usize,
    /// Values passed through as stored because decoding them would pass the bound.
    pub over_cap: usize,
}

/// The reply with every compressed bulk string, at any depth, replaced by its decoded bytes,
/// `cap` decoded bytes at most in all. `reply` is one complete reply (as the reply scanner
/// cuts them); anything it cannot follow leaves the reply unchanged.
pub fn decode_reply(reply: Bytes, cap: usize) -> (Bytes, Decoded) {
    let mut done = Decoded::default();
    if !has_marker(&reply) {
        return (reply, done);
    }
    match rewrite(&reply, cap, &mut done) {
        Some(out) => (out.freeze(), done),
        None => (reply, done),
    }
}

/// Walks the reply; returns the rebuilt one when a value was decoded.
fn rewrite(data: &[u8], cap: usize, done: &mut Decoded) -> Option<BytesMut> {
    let mut out: Option<BytesMut> = None;
    let mut budget = cap;
    // data[..copied] is in `out` already, changed or not.
    let mut copied = 0;
    let mut pos = 0;
    let mut owed: u64 = 1;
    while owed > 0 {
        owed -= 1;
        let kind = *data.get(pos)?;
        let eol = pos + 1 + memmem::find(&data[pos + 1..], b"\r\n")?;
        let line = &data[pos + 1..eol];
        let after = eol + 2;
        match kind {
            b'$' | b'!' | b'=' => {
                let n = parse_int(line)?;
                if n < 0 {
                    pos = after;
                    continue;
                }
                let end = after.checked_add(usize::try_from(n).ok()?)?;
                let body = data.get(after..end)?;
                if kind == b'$' {
                    match decode_value(body, budget) {
                        Ok(plain) => {
                            budget -= plain.len();
                            done.values += 1;
                            let o =
                                out.get_or_insert_with(|| BytesMut::with_capacity(data.len() + plain.len()));
                            o.extend_from_slice(&data[copied..pos]);
                            write::put_bulk(o, &plain);
                            copied = end + 2;
                        }
                        Err(Undecoded::OverCap) => done.over_cap += 1,
                        Err(Undecoded::Plain) => {}
                    }
                }
                pos = end + 2;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = parse_int(line)?;
                let per = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                owed += n.max(0) as u64 * per;
                pos = after;
            }
            _ => pos = after,
        }
    }
    let mut out = out?;
    out.extend_from_slice(data.get(copied..)?);
    Some(out)
}

fn parse_int(line: &[u8]) -> Option<i64> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

thread_local! {
    static OVER_CAP_LOG: RefCell<LogLimit> = RefCell::default();
}

/// `decode_reply` for a session: values left compressed because of the bound are logged.
pub fn decode_reply_logged(reply: Bytes, cap: usize, log: &Logger) -> Bytes {
    let (out, done) = decode_reply(reply, cap);
    if done.over_cap > 0 && OVER_CAP_LOG.with(|l| l.borrow_mut().allow()) {
        warn!(log, "compressed values in a reply left as stored: decoding them would pass the limit (maxBulkLength)";
            "values" => done.over_cap, "limit" => cap);
    }
    out
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
