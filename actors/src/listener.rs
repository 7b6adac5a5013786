//! Listener actor: owns one listening socket and starts a session per accepted client.

use crate::endpoint::ListenAddr;
use crate::io::{split_tcp, split_unix, Gate, Gated, ReadHalf, WriteHalf};
use crate::route::Frontend;
use actix::prelude::*;
use slog::{error, warn, Logger};
use std::cell::RefCell;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};

pub const MAX_CLIENTS_REACHED: &[u8] = b"-ERR max number of clients reached\r\n";

/// A bound listening socket, registered with the runtime of the thread that reads it.
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A bound listening socket before any runtime has it: the supervisor binds once, and each
/// worker thread takes a duplicate of the descriptor (`try_clone`).
pub enum StdBound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl StdBound {
    pub fn try_clone(&self) -> io::Result<StdBound> {
        Ok(match self {
            StdBound::Tcp(l) => StdBound::Tcp(l.try_clone()?),
            StdBound::Unix(l) => StdBound::Unix(l.try_clone()?),
        })
    }

    /// Registers the socket with the current thread's runtime.
    pub fn into_bound(self) -> io::Result<Bound> {
        Ok(match self {
            StdBound::Tcp(l) => Bound::Tcp(TcpListener::from_std(l)?),
            StdBound::Unix(l) => Bound::Unix(UnixListener::from_std(l)?),
        })
    }
}

/// Owns a unix socket's file: removes it when dropped.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Who may connect to a unix socket: its permission bits and, optionally, its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixAccess {
    pub mode: u32,
    pub gid: Option<u32>,
}

impl UnixAccess {
    /// Sets the socket file's permission bits and group.
    pub fn apply(&self, path: &std::path::Path) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode))?;
        if let Some(gid) = self.gid {
            std::os::unix::fs::chown(path, None, Some(gid))?;
        }
        Ok(())
    }
}

impl Default for UnixAccess {
    /// Owner and group, not the world (the original made its sockets 0777).
    fn default() -> Self {
        UnixAccess {
            mode: 0o660,
            gid: None,
        }
    }
}

/// Binds `addr`; for a unix socket, also returns the guard that removes its file. A unix socket
/// file left by a dead process is replaced; one a live process answers on, or a file that is
/// not a socket, is an error.
pub fn bind(addr: &ListenAddr, access: UnixAccess) -> io::Result<(StdBound, Option<SocketFile>)> {
    match addr {
        ListenAddr::Tcp { host, port } => {
            let std = std::net::TcpListener::bind((host.as_str(), *port))?;
            std.set_nonblocking(true)?;
            Ok((StdBound::Tcp(std), None))
        }
        ListenAddr::Unix(path) => {
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("{} is in use by a live process", path.display()),
                        ))
                    }
                    Err(_) => std::fs::remove_file(path)?,
                }
            }
            let std = std::os::unix::net::UnixListener::bind(path)?;
            // From here on the file is ours: the guard removes it if the rest fails.
            let file = SocketFile(path.clone());
            std.set_nonblocking(true)?;
            access.apply(path)?;
            Ok((StdBound::Unix(std), Some(file)))
        }
    }
}

/// Client ids, unique in the process (every listener and worker): CLIENT KILL ID and CLIENT
/// UNBLOCK name a client by the id CLIENT ID gave it, wherever it is connected.
static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

pub fn next_client_id() -> u64 {
    NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed)
}

pub struct ListenerSettings {
    pub listen: ListenAddr,
    pub log: Logger,
}

pub struct Listener {
    settings: Arc<ListenerSettings>,
    /// Where sessions start; a reload that changes the protocol replaces it.
    frontend: Rc<RefCell<Rc<dyn Frontend>>>,
    gate: Rc<Gate>,
}

impl Listener {
    pub fn start(
        bound: Bound,
        settings: Arc<ListenerSettings>,
        frontend: Rc<RefCell<Rc<dyn Frontend>>>,
    ) -> Addr<Self> {
        Listener::create(move |ctx| {
            let gate = Gate::new();
            let bound = Rc::new(bound);
            let accepts = futures_util::stream::poll_fn(move |cx| {
                let r = match &*bound {
                    Bound::Tcp(l) => match l.poll_accept(cx) {
                        Poll::Ready(Ok((s, _))) => {
                            let _ = s.set_nodelay(true);
                            Ok(split_tcp(s))
                        }
                        Poll::Ready(Err(e)) => Err(e),
                        Poll::Pending => return Poll::Pending,
                    },
                    Bound::Unix(l) => match l.poll_accept(cx) {
                        Poll::Ready(Ok((s, _))) => Ok(split_unix(s)),
                        Poll::Ready(Err(e)) => Err(e),
                        Poll::Pending => return Poll::Pending,
                    },
                };
                Poll::Ready(Some(r))
            });
            ctx.add_stream(Gated::new(accepts, gate.clone()));
            Listener {
                settings,
                frontend,
                gate,
            }
        })
    }
}

impl Actor for Listener {
    type Context = Context<Self>;
}

/// Closes the listening socket (removing a unix socket file); connected clients stay.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopListening;

impl Handler<StopListening> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl StreamHandler<io::Result<(ReadHalf, WriteHalf)>> for Listener {
    fn handle(&mut self, item: io::Result<(ReadHalf, WriteHalf)>, ctx: &mut Context<Self>) {
        let (read, write) = match item {
            Ok(halves) => halves,
            Err(e) => {
                // Out of descriptors and the like: wait a little instead of spinning.
                error!(self.settings.log, "accept failed"; "listen" => %self.settings.listen, "error" => %e);
                self.gate.pause();
                ctx.run_later(Duration::from_millis(100), |act, _| act.gate.resume());
                return;
            }
        };
        let frontend = self.frontend.borrow().clone();
        let max_clients = frontend.max_clients();
        if frontend.clients() >= max_clients {
            warn!(self.settings.log, "max number of clients reached, refusing a client"; "listen" => %self.settings.listen, "max_clients" => max_clients);
            refuse(write);
            drop(read);
            return;
        }
        frontend.start_session(next_client_id(), read, write);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

/// Tells a client over the limit why, then closes it. Best effort: a client whose socket is
/// already full just sees the close.
fn refuse(write: WriteHalf) {
    actix_rt::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            write.writable().await?;
            match &write {
                WriteHalf::Tcp(w) => w.try_write(MAX_CLIENTS_REACHED),
                WriteHalf::Unix(w) => w.try_write(MAX_CLIENTS_REACHED),
            }
        })
        .await;
    });
}
