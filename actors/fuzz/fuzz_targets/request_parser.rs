//! Feeds arbitrary bytes, cut into 1 to 3 reads, through the request parser with small limits.
//! It must never panic; the outcome must not depend on the cuts; and every command must be the
//! canonical multibulk encoding of its arguments, which parses back to the same command.
#![no_main]

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use relayer_actors::resp::request::{Command, Limits, ProtocolError, RequestParser};

const LIMITS: Limits = Limits {
    max_bulk_len: 64,
    max_args: 8,
    max_inline_len: 32,
    query_buffer_limit: 1 << 20,
};

fn run(pieces: &[&[u8]]) -> (Vec<Command>, Option<ProtocolError>) {
    let mut parser = RequestParser::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut cmds = Vec::new();
    for piece in pieces {
        buf.put_slice(piece);
        loop {
            match parser.parse(&mut buf) {
                Ok(Some(cmd)) => cmds.push(cmd),
                Ok(None) => break,
                Err(e) => {
                    // The error sticks.
                    assert_eq!(parser.parse(&mut buf), Err(e.clone()));
                    return (cmds, Some(e));
                }
            }
        }
    }
    (cmds, None)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (cut, input) = data.split_at(2);
    let mut a = usize::from(cut[0]) * input.len() / 255;
    let mut b = usize::from(cut[1]) * input.len() / 255;
    if a > b {
        std::mem::swap(&mut a, &mut b);
    }
    let chunked = run(&[&input[..a], &input[a..b], &input[b..]]);
    let whole = run(&[input]);
    assert_eq!(chunked, whole);

    for cmd in &chunked.0 {
        assert!(cmd.argc() >= 1);
        let args: Vec<&[u8]> = cmd.args().collect();
        let again = Command::from_args(&args);
        assert_eq!(cmd, &again);
        let mut buf = BytesMut::from(&again.frame()[..]);
        let back = RequestParser::new(Limits::default())
            .parse(&mut buf)
            .expect("a re-encoded command parses")
            .expect("a re-encoded command is complete");
        assert!(buf.is_empty());
        assert_eq!(back.args().collect::<Vec<_>>(), args);
        assert_eq!(back, again);
    }
});
