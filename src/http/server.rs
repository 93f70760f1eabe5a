//! The connection loop. `axum::serve` offers no header limits or header read timeout, so each
//! connection is served by hyper's HTTP/1.1 builder directly, with the limits below; shutdown is
//! graceful (stop accepting, finish in-flight requests, close idle connections).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::Service;

/// From the moment a connection waits for a request until its headers are complete: a client
/// that trickles headers (slowloris), or idles on a kept-alive connection, is cut off after it.
/// TradingView sends a whole alert in well under a second and gives up after 3 s.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request line and headers together; larger is answered 431 by hyper.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Header fields per request; more is answered 431 by hyper.
pub const MAX_HEADERS: usize = 64;
/// Open connections at once; past it, new ones wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 4_096;
/// Pause after an accept error that is about this process (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` until `shutdown` completes, then waits for open connections to finish their
/// requests. Handlers see the TCP peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        // Answers are small and latency-bound: never hold one back waiting for an ACK (Nagle).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().call(request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Clients hanging up and header timeouts land here: routine, not the service's fault.
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    // A peer that gave up before we accepted it is not a problem of ours.
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; pausing");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}
