//! `strata serve`: Strata's snapshotters as a containerd proxy snapshotter.
//!
//! containerd talks to a proxy snapshotter over its snapshots gRPC API on a
//! unix socket (`[proxy_plugins.strata] type = "snapshot"` in its config).
//! [`serve`] answers that API with any [`Snapshotter`] (normally a
//! `Snapshots<D>` over one driver); [`serve_blocking`] is what the CLI calls
//! and returns on SIGTERM/SIGINT. [`spawn`] runs a server on a thread (tests,
//! benches) and [`GrpcSnapshotter`] is the client side, itself a
//! [`Snapshotter`], so the conformance suite can run through the socket.
//!
//! Where to look: `adapter` maps each gRPC call to the trait (on the
//! blocking pool), `convert` maps types and error codes, `socket` owns the
//! socket file (0600, stale files replaced, live servers not displaced).

mod accept;
mod adapter;
mod client;
mod convert;
mod socket;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::snapshotter::Snapshotter;
use containerd_snapshots::tonic::transport::Server;
use tokio::net::UnixListener;
use tokio::sync::oneshot;

pub use accept::raise_nofile_limit;
pub use adapter::Adapter;
pub use client::GrpcSnapshotter;
pub use socket::BoundSocket;

/// Errors of the proxy server and its client.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A filesystem call on the socket path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another server answers on the socket.
    #[error("{0} is in use by a running server")]
    InUse(PathBuf),
    /// The socket path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The async runtime could not be built.
    #[error("start runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// gRPC transport failure (serving or connecting).
    #[error("grpc transport on {path}: {source}")]
    Transport {
        /// The socket.
        path: PathBuf,
        /// The transport error.
        #[source]
        source: containerd_snapshots::tonic::transport::Error,
    },
    /// A containerd namespace that cannot travel in a gRPC header.
    #[error("containerd namespace {0:?} is not a valid header value")]
    BadNamespace(String),
    /// The server thread panicked.
    #[error("server thread for {0} panicked")]
    Panicked(PathBuf),
}

impl ServeError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        ServeError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;

/// Serves `snapshotter` on `socket` until `shutdown` completes. In-flight
/// calls finish; snapshots and their mounts are left as they are.
pub async fn serve(
    snapshotter: Arc<dyn Snapshotter>,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let bound = BoundSocket::bind(socket)?;
    serve_bound(snapshotter, bound, shutdown).await
}

/// Like [`serve`] on an already bound socket (its file is removed at the end).
pub async fn serve_bound(
    snapshotter: Arc<dyn Snapshotter>,
    mut bound: BoundSocket,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let path = bound.path().to_owned();
    let std_listener = bound
        .take_listener()
        .ok_or_else(|| ServeError::io("listen", &path, std::io::ErrorKind::NotConnected.into()))?;
    let listener =
        UnixListener::from_std(std_listener).map_err(|e| ServeError::io("listen", &path, e))?;
    tracing::info!(socket = %path.display(), "serving containerd snapshots API");
    let service = containerd_snapshots::server(Arc::new(Adapter::new(snapshotter)));
    Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(accept::Incoming::new(listener), shutdown)
        .await
        .map_err(|source| ServeError::Transport {
            path: path.clone(),
            source,
        })?;
    tracing::info!(socket = %path.display(), "server stopped");
    drop(bound);
    Ok(())
}

/// Serves on `socket` until SIGTERM or SIGINT: what `strata serve` runs.
/// The signal handlers are installed before the socket is bound, so a
/// SIGTERM that follows the socket's appearance always shuts down cleanly.
pub fn serve_blocking(snapshotter: Arc<dyn Snapshotter>, socket: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    match raise_nofile_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!(old, new, "raised the soft limit on open files")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the limit on open files"),
    }
    runtime.block_on(async move {
        let signals = shutdown_signal().map_err(ServeError::Runtime)?;
        let bound = BoundSocket::bind(socket)?;
        serve_bound(snapshotter, bound, signals).await
    })
}

/// Completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

/// A server running on its own thread; see [`spawn`].
#[derive(Debug)]
pub struct ServerHandle {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Starts a server on a thread. The socket is bound (connectable) when this
/// returns. Stop it with [`ServerHandle::stop`] or by dropping the handle.
pub fn spawn(snapshotter: Arc<dyn Snapshotter>, socket: &Path) -> Result<ServerHandle> {
    let bound = BoundSocket::bind(socket)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("strata-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("strata-serve".into())
        .spawn(move || {
            runtime.block_on(serve_bound(snapshotter, bound, async {
                // A dropped sender also means stop.
                let _ = stopped.await;
            }))
        })
        .map_err(ServeError::Runtime)?;
    Ok(ServerHandle {
        path: socket.to_owned(),
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl ServerHandle {
    /// The socket the server listens on.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            // The server may have exited on its own already.
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| ServeError::Panicked(self.path.clone()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "stopping server");
        }
    }
}
