//! The accept loop: one HTTP/1.1 connection task per client, on hyper's connection builder.
//! `axum::serve` would do the same but sets no timer, and without a timer hyper never applies
//! its header-read timeout: a client trickling a request head one byte at a time (slowloris)
//! would hold its connection and task forever. Bodies have their own deadline
//! (`server.body_read_timeout_ms`, read in `http/body.rs`). With `[server.tls]` each connection
//! first completes its TLS handshake (`tls.rs`) within the header-read deadline.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its current request (graceful shutdown) and waits for them.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    tls: Option<super::tls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connections = TaskTracker::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: a pause, not a reason to stop.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Streams are many small writes: without TCP_NODELAY, Nagle plus the client's delayed
        // ACK hold each chunk up to ~40 ms.
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let stop = stop_rx.clone();
        match &tls {
            None => {
                connections.spawn(connection(http.clone(), tcp, app, peer, stop));
            }
            Some(acceptor) => {
                let (acceptor, http) = (acceptor.clone(), http.clone());
                connections.spawn(async move {
                    let mut stop_handshake = stop.clone();
                    // The handshake is part of the request head: bounded by the same
                    // deadline, and abandoned at shutdown.
                    let handshake = tokio::time::timeout(header_read_timeout, acceptor.accept(tcp));
                    let tls = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!("TLS handshake timed out");
                                return;
                            }
                        },
                        _ = stop_handshake.changed() => return,
                    };
                    connection(http, tls, app, peer, stop).await;
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(());
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One connection, plain or TLS: served until it ends, or asked to finish its current request
/// when shutdown begins.
async fn connection<I>(
    http: hyper::server::conn::http1::Builder,
    io: I,
    app: Router,
    peer: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move { app.call(req.map(axum::body::Body::new)).await }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = stop.changed() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}
