//! Opening a ready connection to the backend: the socket, TLS for `rediss://`, and AUTH with
//! the url's credentials (or, for a connection that speaks RESP3, `HELLO 3` with them).
//! Everything that can make a backend unusable (refused, bad certificate, wrong password, a
//! server without RESP3) fails here, as one failed attempt that the target retries with backoff.

use crate::endpoint::{TargetAddr, TargetKind};
use crate::io::{split_tcp, split_unix, ReadHalf, WriteHalf};
use crate::resp::reply::ReplyScanner;
use crate::resp::request::Command;
use crate::tls::{self, TlsClient};
use bytes::{Bytes, BytesMut};
use slog::Logger;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Longest first reply read (an AUTH error is one line, HELLO's map a few hundred bytes).
const MAX_GREETING_REPLY: usize = 16 * 1024;

/// Connects to `addr`, over TLS when `tls` is given, and authenticates when the url has a
/// password, all within `limit`. `resp3`: the connection speaks RESP3 (`HELLO 3`, with the
/// url's credentials).
pub async fn open(
    addr: TargetAddr,
    tls: Option<TlsClient>,
    log: Logger,
    limit: Duration,
    resp3: bool,
) -> io::Result<(ReadHalf, WriteHalf)> {
    match tokio::time::timeout(limit, open_unbounded(addr, tls, log, resp3)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect timed out after {}s", limit.as_secs_f64()),
        )),
    }
}

async fn open_unbounded(
    addr: TargetAddr,
    tls: Option<TlsClient>,
    log: Logger,
    resp3: bool,
) -> io::Result<(ReadHalf, WriteHalf)> {
    let auth = if resp3 {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(pw) = &addr.password {
            let user = addr.user.as_deref().unwrap_or("default");
            args.extend([&b"AUTH"[..], user.as_bytes(), pw.as_bytes()]);
        }
        Some(Greeting::Hello(Command::from_args(&args).into_frame()))
    } else {
        addr.password.as_ref().map(|pw| {
            let mut args = vec![&b"AUTH"[..]];
            if let Some(user) = &addr.user {
                args.push(user.as_bytes());
            }
            args.push(pw.as_bytes());
            Greeting::Auth(Command::from_args(&args).into_frame())
        })
    };
    match (addr.kind, tls) {
        (TargetKind::Tcp { host, port }, None) => {
            let mut s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            if let Some(greeting) = auth {
                greet(&mut s, greeting).await?;
            }
            Ok(split_tcp(s))
        }
        (TargetKind::Tcp { host, port }, Some(client)) => {
            let s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            let mut s = client.handshake(s).await?;
            // With TLS 1.3 the server checks a client certificate after the handshake is done
            // on our side: one round trip shows whether it accepted the connection.
            let greeting = auth.unwrap_or(Greeting::Ping);
            greet(&mut s, greeting).await.map_err(|e| client.explain(e))?;
            Ok(split_unix(tls::bridge(s, client, log)?))
        }
        (TargetKind::Unix(path), _) => {
            let mut s = UnixStream::connect(path).await?;
            if let Some(greeting) = auth {
                greet(&mut s, greeting).await?;
            }
            Ok(split_unix(s))
        }
    }
}

enum Greeting {
    /// The url's credentials: an error reply fails the connection.
    Auth(Bytes),
    /// `HELLO 3`, with the url's credentials: an error reply fails the connection.
    Hello(Bytes),
    /// Any reply will do (NOAUTH included: clients see it as they would without TLS).
    Ping,
}

/// Sends the greeting and reads its reply, a whole one, before anything else is written.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, greeting: Greeting) -> io::Result<()> {
    let (frame, what) = match &greeting {
        Greeting::Auth(f) => (&f[..], "AUTH"),
        Greeting::Hello(f) => (&f[..], "HELLO 3"),
        Greeting::Ping => (&b"*1\r\n$4\r\nPING\r\n"[..], "PING"),
    };
    s.write_all(frame).await?;
    s.flush().await?;
    let mut buf = BytesMut::with_capacity(512);
    let mut scanner = ReplyScanner::new(MAX_GREETING_REPLY);
    let mut chunk = [0u8; 512];
    let reply = loop {
        if let Some(reply) = scanner.scan(&mut buf)? {
            break reply;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed by the backend before it answered {what}"),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_GREETING_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the backend's answer to {what} is not a Redis reply"),
            ));
        }
    };
    if let (Greeting::Auth(_) | Greeting::Hello(_), Some(b'-')) = (&greeting, reply.first()) {
        let text = String::from_utf8_lossy(&reply[1..reply.len() - 2]);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{what} refused: {text}"),
        ));
    }
    Ok(())
}
