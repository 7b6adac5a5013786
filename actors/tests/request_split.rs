//! The request parser gives the same commands however the byte stream is cut into reads, and
//! never allocates from a length a client declared.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use relayer_actors::resp::request::{Command, Limits, ProtocolError, RequestParser};

// ---------------------------------------------------------------------------------------------
// An allocator that remembers, per thread, the largest single allocation asked for.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| {
        if size > c.get() {
            c.set(size)
        }
    });
}

fn reset_largest() {
    LARGEST.with(|c| c.set(0));
}

fn largest() -> usize {
    LARGEST.with(Cell::get)
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

// ---------------------------------------------------------------------------------------------
// Encoding the generated requests, independently of the parser's own encoder.

#[derive(Debug, Clone)]
enum Req {
    /// A multibulk request: its args.
    Multi(Vec<Vec<u8>>),
    /// An inline request: its args, and how to write them.
    Inline {
        args: Vec<Vec<u8>>,
        style: Vec<u8>,
        sep: &'static str,
        crlf: bool,
    },
    /// A request that yields nothing.
    Empty(&'static str),
}

fn multibulk(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn quote_double(arg: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02X}").as_bytes()),
        }
    }
    out.push(b'"');
}

fn inline(args: &[Vec<u8>], style: &[u8], sep: &str, crlf: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep.as_bytes());
        }
        let bare = !a.is_empty() && a.iter().all(u8::is_ascii_alphanumeric);
        let single_ok = !a.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\0'));
        match style.get(i).copied().unwrap_or(0) % 3 {
            0 if bare => out.extend_from_slice(a),
            1 if single_ok => {
                out.push(b'\'');
                for &b in a {
                    if b == b'\'' {
                        out.extend_from_slice(b"\\'");
                    } else {
                        out.push(b);
                    }
                }
                out.push(b'\'');
            }
            _ => quote_double(a, &mut out),
        }
    }
    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    out
}

fn encode(req: &Req) -> Vec<u8> {
    match req {
        Req::Multi(args) => multibulk(args),
        Req::Inline {
            args,
            style,
            sep,
            crlf,
        } => inline(args, style, sep, *crlf),
        Req::Empty(s) => s.as_bytes().to_vec(),
    }
}

fn arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        3 => proptest::collection::vec(any::<u8>(), 0..24),
        3 => "[a-zA-Z0-9]{1,10}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(
            proptest::sample::select(&b"\r\n\t \"'\\*$x"[..]),
            1..6
        ),
    ]
}

fn args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(arg(), 1..=6)
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        5 => args().prop_map(Req::Multi),
        4 => (
            args(),
            proptest::collection::vec(any::<u8>(), 6),
            proptest::sample::select(vec![" ", "  ", "\t", " \t "]),
            any::<bool>()
        )
            .prop_map(|(args, style, sep, crlf)| Req::Inline {
                args,
                style,
                sep,
                crlf
            }),
        1 => proptest::sample::select(vec!["*0\r\n", "*-1\r\n", "\r\n", "\n", "  \t\r\n"])
            .prop_map(Req::Empty),
    ]
}

/// Cuts `stream` at the given points.
fn chunks<'a>(stream: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

/// What parsing a stream gives: the commands, the error that stopped it, and the bytes left.
type Outcome = (Vec<Command>, Option<ProtocolError>, Vec<u8>);

fn parse_chunked(limits: Limits, pieces: &[&[u8]]) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut cmds = Vec::new();
    for piece in pieces {
        buf.put_slice(piece);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(cmd)) => cmds.push(cmd),
                Ok(None) => break,
                // What is left after an error depends on what had arrived: not compared.
                Err(e) => return (cmds, Some(e), Vec::new()),
            }
        }
    }
    (cmds, None, buf.to_vec())
}

fn args_of(cmd: &Command) -> Vec<Vec<u8>> {
    cmd.args().map(<[u8]>::to_vec).collect()
}

proptest! {
    #[test]
    fn split_stream_gives_the_sent_commands(
        reqs in proptest::collection::vec(req(), 1..16),
        cuts in proptest::collection::vec(any::<Index>(), 0..24),
    ) {
        let mut stream = Vec::new();
        for r in &reqs {
            stream.extend_from_slice(&encode(r));
        }
        let (cmds, err, rest) = parse_chunked(Limits::default(), &chunks(&stream, &cuts));
        prop_assert_eq!(err, None);
        prop_assert!(rest.is_empty());
        let expected: Vec<&Req> = reqs.iter().filter(|r| !matches!(r, Req::Empty(_))).collect();
        prop_assert_eq!(cmds.len(), expected.len());
        for (cmd, req) in cmds.iter().zip(expected) {
            match req {
                Req::Multi(args) => {
                    prop_assert_eq!(&args_of(cmd), args);
                    prop_assert_eq!(cmd.frame().as_ref(), &multibulk(args)[..]);
                }
                Req::Inline { args, .. } => {
                    prop_assert_eq!(&args_of(cmd), args);
                    prop_assert_eq!(cmd.frame().as_ref(), &multibulk(args)[..]);
                    prop_assert_eq!(cmd, &Command::from_args(&args[..]));
                }
                Req::Empty(_) => unreachable!(),
            }
        }
    }

    /// On any input, RESP-like or not, the outcome does not depend on the chunking.
    #[test]
    fn outcome_does_not_depend_on_chunking(
        pieces in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(vec![
                    "*", "$", "\r\n", "\r", "\n", "0", "1", "2", "3", "-1", "9", "99999999999",
                    "abc", " ", "\"", "'", "\\", "\\x4", "1", "+", ":", "*1\r\n$1\r\nx\r\n",
                    "*2\r\n$3\r\nGET\r\n", "$3\r\nkey\r\n", "PING\r\n", "SET \"a b\" 'c'\n",
                ]).prop_map(|s| s.as_bytes().to_vec()),
                proptest::collection::vec(any::<u8>(), 1..4),
            ],
            0..40,
        ),
        cuts in proptest::collection::vec(any::<Index>(), 0..24),
        small in any::<bool>(),
    ) {
        let stream: Vec<u8> = pieces.concat();
        let limits = if small {
            Limits { max_bulk_len: 16, max_args: 4, max_inline_len: 12, ..Limits::default() }
        } else {
            Limits::default()
        };
        let at_once = parse_chunked(limits, &[&stream[..]]);
        let split = parse_chunked(limits, &chunks(&stream, &cuts));
        let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
        let one_by_one = parse_chunked(limits, &bytewise);
        prop_assert_eq!(&at_once, &split);
        prop_assert_eq!(&at_once, &one_by_one);
        for cmd in &at_once.0 {
            let again = parse_chunked(limits, &[&cmd.frame()[..]]);
            prop_assert_eq!(&again.0, &vec![cmd.clone()]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Declared lengths never drive allocation.

fn parse_once(input: &[u8]) -> Result<Option<Command>, ProtocolError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_slice(input);
    let mut parser = RequestParser::new(Limits::default());
    let r = parser.parse(&mut buf);
    assert!(buf.capacity() <= 256);
    r
}

#[test]
fn declared_lengths_do_not_allocate() {
    // Warm up whatever the first parse might allocate lazily.
    let _ = parse_once(b"*1\r\n$4\r\nPING\r\n");
    reset_largest();
    assert_eq!(
        parse_once(b"*1000000000\r\n"),
        Err(ProtocolError::InvalidMultibulkLength)
    );
    assert_eq!(
        parse_once(b"*2\r\n$600000000\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(
        parse_once(b"*1048576\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n0123456789"),
        Ok(None)
    );
    assert_eq!(
        parse_once(b"*2\r\n$3\r\nSET\r\n$100000000\r\n0123456789"),
        Ok(None)
    );
    assert!(largest() <= 1024, "largest allocation {} bytes", largest());
}

#[test]
fn max_args_request_grows_table_with_the_data() {
    // 1000 arguments announced as the maximum: memory follows what arrived.
    let mut input = b"*1048576\r\n".to_vec();
    for _ in 0..1000 {
        input.extend_from_slice(b"$1\r\nx\r\n");
    }
    let mut buf = BytesMut::from(&input[..]);
    let mut parser = RequestParser::new(Limits::default());
    reset_largest();
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert!(largest() < 64 * 1024, "largest allocation {}", largest());
}

#[test]
fn framed_read_drops_a_truncated_tail() {
    use futures_util::StreamExt;
    use tokio_util::codec::FramedRead;

    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let input: &[u8] = b"*1\r\n$4\r\nPING\r\nECHO hi\r\n*2\r\n$3\r\nGET\r\n$3\r\nke";
        let mut frames = FramedRead::new(input, RequestParser::new(Limits::default()));
        let a = frames.next().await.unwrap().unwrap();
        assert!(a.name_is(b"PING"));
        let b = frames.next().await.unwrap().unwrap();
        assert_eq!(args_of(&b), vec![b"ECHO".to_vec(), b"hi".to_vec()]);
        assert!(frames.next().await.is_none());

        let bad: &[u8] = b"PING\r\n*1\r\n$x\r\n";
        let mut frames = FramedRead::new(bad, RequestParser::new(Limits::default()));
        assert!(frames.next().await.unwrap().is_ok());
        let err = frames.next().await.unwrap().unwrap_err();
        assert_eq!(err.to_string(), "Protocol error: invalid bulk length");
    });
}
