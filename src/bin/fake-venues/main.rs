//! Fake venues on loopback, for tests and for trying the service by hand without the internet:
//! a dYdX v4 Indexer (REST) and validator node (gRPC), and the Telegram Bot API's `sendMessage`,
//! with control endpoints to inspect what they received and to inject faults.
//!
//! ```text
//! cargo run --release --bin fake-venues -- --listen 127.0.0.1:8090
//! indexer http://127.0.0.1:8090
//! node http://127.0.0.1:41237
//! telegram http://127.0.0.1:8090
//! ```
//!
//! One line per service on stdout, then it serves until killed. The Indexer, Telegram and the
//! control endpoints (`GET /_fake/orders`, `GET /_fake/messages`, `GET|POST /_fake/faults`,
//! `GET|POST /_fake/prices`, `GET|POST /_fake/authenticators`,
//! `DELETE /_fake/authenticators/{owner}/{id}`) share the `--listen` address; the node (HTTP/2)
//! listens on its own port of the same interface. `POST /_fake/faults {"telegram": {...}}` sets
//! Telegram's faults (`telegram::TelegramFaults`). Long-term orders rest on the book (OPEN) until
//! the oracle price crosses them (`POST /_fake/prices`: FILLED at the taker price), they are
//! cancelled, or their good-til time passes (CANCELED, as the Indexer shows an expired order).

mod accountplus;
mod control;
mod indexer;
mod node;
mod telegram;
mod venue;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::Service as _;

use venue::{Service, Venue};

#[derive(Parser)]
#[command(about = "Fake dYdX v4 venue (Indexer and node) on loopback")]
struct Args {
    /// Address of the Indexer and control endpoints; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Address of the node's gRPC service; by default a free port on the --listen interface.
    #[arg(long)]
    node_listen: Option<SocketAddr>,
    /// Milliseconds per block: the fake chain's height advances at this pace.
    #[arg(long, default_value_t = 500)]
    block_ms: u64,
    /// The chain id the node reports.
    #[arg(long, default_value = "dydx-testnet-4")]
    chain_id: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let venue = Arc::new(Venue::new(args.block_ms, args.chain_id));

    let indexer_listener = TcpListener::bind(args.listen).await?;
    let node_address = args
        .node_listen
        .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 0));
    let node_listener = TcpListener::bind(node_address).await?;

    let telegram = telegram::TelegramFake::new();
    let faulty = telegram.clone();
    let telegram_faults: control::TelegramFaults = Some(Arc::new(move |faults| {
        serde_json::from_value(faults)
            .map(|faults| faulty.set_faults(faults))
            .map_err(|error| error.to_string())
    }));

    let indexer = indexer::router(venue.clone())
        .merge(control::router(venue.clone(), telegram_faults))
        .merge(telegram.router());
    let node = node::router(venue.clone());

    println!("indexer http://{}", indexer_listener.local_addr()?);
    println!("node http://{}", node_listener.local_addr()?);
    println!("telegram http://{}", indexer_listener.local_addr()?);

    // The Indexer shares its port with the control endpoints, so "down" answers 503 there
    // rather than refusing connections; the node refuses new connections while down.
    let indexer = serve(indexer_listener, indexer, Protocol::Http1, || false);
    let node = serve(node_listener, node, Protocol::Http2, move || {
        venue.is_down(Service::Node)
    });
    tokio::select! {
        result = indexer => result,
        result = node => result,
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// Accepts connections and serves `router` on each; while `refuse()` holds, a new connection is
/// closed at once, as a venue that is down.
async fn serve(
    listener: TcpListener,
    router: Router,
    protocol: Protocol,
    refuse: impl Fn() -> bool + Send + 'static,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                eprintln!("fake-venues: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        if refuse() {
            drop(stream);
            continue;
        }
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                router.clone().call(request)
            });
            let io = TokioIo::new(stream);
            let served = match protocol {
                Protocol::Http1 => {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                }
                Protocol::Http2 => {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                }
            };
            // A client that goes away mid-request is normal for a fake under faults.
            let _ = served;
        });
    }
}
