//! The values of a reply that change from run to run (and from one connection to another on
//! the same redis-server), masked in every target's reply before they are compared. Only
//! these, so that nothing else can hide a difference:
//!
//! - `CLIENT ID`: the number, `:<id>`;
//! - `HELLO`: the number after `id`, `:<id>`;
//! - `CLIENT INFO`, `CLIENT LIST` (bulk or verbatim strings): the values of the fields that count connections, time,
//!   addresses and buffer sizes (`VARYING`), `*`; the others (name, db, flags, multi, sub,
//!   cmd, user, resp...) stay.

/// The fields of a CLIENT INFO line whose values vary.
const VARYING: &[&str] = &[
    "id",
    "addr",
    "laddr",
    "fd",
    "age",
    "idle",
    "qbuf",
    "qbuf-free",
    "argv-mem",
    "multi-mem",
    "rbs",
    "rbp",
    "obl",
    "oll",
    "omem",
    "tot-mem",
];

pub fn normalise(args: &[Vec<u8>], reply: Vec<u8>) -> Vec<u8> {
    let name = |i: usize| args.get(i).map(|a| a.to_ascii_uppercase());
    match (name(0).as_deref(), name(1).as_deref()) {
        (Some(b"CLIENT"), Some(b"ID")) if args.len() == 2 && reply.starts_with(b":") => b":<id>\r\n".to_vec(),
        (Some(b"HELLO"), _) => mask_hello_id(reply),
        (Some(b"CLIENT"), Some(b"INFO" | b"LIST")) => mask_client_fields(reply),
        _ => reply,
    }
}

fn mask_hello_id(reply: Vec<u8>) -> Vec<u8> {
    const FIELD: &[u8] = b"$2\r\nid\r\n:";
    let Some(at) = reply.windows(FIELD.len()).position(|w| w == FIELD) else {
        return reply;
    };
    let start = at + FIELD.len();
    let Some(len) = reply[start..].iter().position(|&c| c == b'\r') else {
        return reply;
    };
    let mut out = reply[..start].to_vec();
    out.extend_from_slice(b"<id>");
    out.extend_from_slice(&reply[start + len..]);
    out
}

/// A bulk reply of `k=v` fields, lines of them (in RESP3 a verbatim string, `=n\r\ntxt:...`):
/// the values of `VARYING` fields masked, the length written again.
fn mask_client_fields(reply: Vec<u8>) -> Vec<u8> {
    let (body, kind, format) = match (bulk_body(&reply), verbatim_body(&reply)) {
        (Some(b), _) => (b, '$', ""),
        (None, Some(b)) => (b, '=', "txt:"),
        (None, None) => return reply,
    };
    let text = String::from_utf8_lossy(body);
    let masked: Vec<String> = text
        .split('\n')
        .map(|line| {
            line.split(' ')
                .map(|field| match field.split_once('=') {
                    Some((k, _)) if VARYING.contains(&k) => format!("{k}=*"),
                    _ => field.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let masked = format!("{format}{}", masked.join("\n"));
    format!("{kind}{}\r\n{masked}\r\n", masked.len()).into_bytes()
}

/// The text of a RESP3 verbatim reply in the `txt` format (`=n\r\ntxt:...\r\n`), if it is one.
fn verbatim_body(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"=")?;
    let eol = rest.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    rest.get(eol + 2..eol + 2 + n)?.strip_prefix(b"txt:")
}

/// The payload of a bulk reply (`$n\r\n...\r\n`), if it is one.
fn bulk_body(reply: &[u8]) -> Option<&[u8]> {
    let rest = reply.strip_prefix(b"$")?;
    let eol = rest.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&rest[..eol]).ok()?.parse().ok()?;
    rest.get(eol + 2..eol + 2 + n)
}

#[test]
fn masks_only_what_varies() {
    let args = |s: &str| -> Vec<Vec<u8>> { s.split(' ').map(|a| a.as_bytes().to_vec()).collect() };
    assert_eq!(normalise(&args("client id"), b":17\r\n".to_vec()), b":<id>\r\n");
    assert_eq!(
        normalise(&args("CLIENT ID x"), b"-ERR x\r\n".to_vec()),
        b"-ERR x\r\n"
    );
    let info3 = b"=27\r\ntxt:id=7 name=x db=0 age=3\n\r\n".to_vec();
    assert_eq!(
        normalise(&args("CLIENT INFO"), info3),
        b"=27\r\ntxt:id=* name=x db=0 age=*\n\r\n"
    );
    let hello = b"*4\r\n$2\r\nid\r\n:42\r\n$4\r\nmode\r\n:1\r\n".to_vec();
    assert_eq!(
        normalise(&args("HELLO 2"), hello),
        b"*4\r\n$2\r\nid\r\n:<id>\r\n$4\r\nmode\r\n:1\r\n"
    );
    let info = b"$38\r\nid=7 addr=1.2.3.4:5 name=x db=0 age=3\n\r\n".to_vec();
    assert_eq!(
        normalise(&args("CLIENT INFO"), info),
        b"$30\r\nid=* addr=* name=x db=0 age=*\n\r\n"
    );
    assert_eq!(normalise(&args("GET id"), b":17\r\n".to_vec()), b":17\r\n");
}
