//! Opening a ready connection to the backend: the socket, TLS for `rediss://`, and AUTH with
//! the url's credentials. Everything that can make a backend unusable (refused, bad certificate,
//! wrong password) fails here, as one failed attempt that the target retries with backoff.

use crate::endpoint::{TargetAddr, TargetKind};
use crate::io::{split_tcp, split_unix, ReadHalf, WriteHalf};
use crate::resp::request::Command;
use crate::tls::{self, TlsClient};
use bytes::Bytes;
use slog::Logger;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Longest first reply read (an AUTH error is one line).
const MAX_GREETING_REPLY: usize = 4096;

/// Connects to `addr`, over TLS when `tls` is given, and authenticates when the url has a
/// password, all within `limit`.
pub async fn open(
    addr: TargetAddr,
    tls: Option<TlsClient>,
    log: Logger,
    limit: Duration,
) -> io::Result<(ReadHalf, WriteHalf)> {
    match tokio::time::timeout(limit, open_unbounded(addr, tls, log)).await {
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
) -> io::Result<(ReadHalf, WriteHalf)> {
    let auth = addr.password.as_ref().map(|pw| {
        let mut args = vec![&b"AUTH"[..]];
        if let Some(user) = &addr.user {
            args.push(user.as_bytes());
        }
        args.push(pw.as_bytes());
        Command::from_args(&args).into_frame()
    });
    match (addr.kind, tls) {
        (TargetKind::Tcp { host, port }, None) => {
            let mut s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            if let Some(auth) = auth {
                greet(&mut s, Greeting::Auth(auth)).await?;
            }
            Ok(split_tcp(s))
        }
        (TargetKind::Tcp { host, port }, Some(client)) => {
            let s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            let mut s = client.handshake(s).await?;
            // With TLS 1.3 the server checks a client certificate after the handshake is done
            // on our side: one round trip shows whether it accepted the connection.
            let greeting = auth.map_or(Greeting::Ping, Greeting::Auth);
            greet(&mut s, greeting).await.map_err(|e| client.explain(e))?;
            Ok(split_unix(tls::bridge(s, client, log)?))
        }
        (TargetKind::Unix(path), _) => {
            let mut s = UnixStream::connect(path).await?;
            if let Some(auth) = auth {
                greet(&mut s, Greeting::Auth(auth)).await?;
            }
            Ok(split_unix(s))
        }
    }
}

enum Greeting {
    /// The url's credentials: an error reply fails the connection.
    Auth(Bytes),
    /// Any reply will do (NOAUTH included: clients see it as they would without TLS).
    Ping,
}

/// Sends the greeting and reads its reply, a single line, before anything else is written.
async fn greet<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, greeting: Greeting) -> io::Result<()> {
    let (frame, what) = match &greeting {
        Greeting::Auth(f) => (&f[..], "AUTH"),
        Greeting::Ping => (&b"*1\r\n$4\r\nPING\r\n"[..], "PING"),
    };
    s.write_all(frame).await?;
    s.flush().await?;
    let mut reply = Vec::with_capacity(64);
    let mut chunk = [0u8; 512];
    while !reply.ends_with(b"\r\n") {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("closed by the backend before it answered {what}"),
            ));
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > MAX_GREETING_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the backend's answer to {what} is not a Redis reply"),
            ));
        }
    }
    if let (Greeting::Auth(_), Some(b'-')) = (greeting, reply.first()) {
        let text = String::from_utf8_lossy(&reply[1..reply.len() - 2]);
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("AUTH refused: {text}"),
        ));
    }
    Ok(())
}
