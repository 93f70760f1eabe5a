//! Fake venues on loopback for tests and by hand: `fake-venues --listen 127.0.0.1:PORT` prints
//! `telegram http://ADDR` once it accepts connections. Faults are set with
//! `POST /_fake/faults {"telegram": {...}}` (see `telegram::TelegramFaults`).

mod telegram;

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;

use telegram::{TelegramFake, TelegramFaults};

#[derive(Parser)]
#[command(about = "Fake trading venues and Telegram Bot API on loopback")]
struct Args {
    /// Address to listen on; port 0 picks a free one (printed on standard output).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    #[serde(default)]
    telegram: Option<TelegramFaults>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let telegram = TelegramFake::new();
    let app = Router::new()
        .route("/_fake/faults", post(set_faults))
        .with_state(telegram.clone())
        .merge(telegram.router());
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let address = listener.local_addr()?;
    println!("telegram http://{address}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn set_faults(
    State(telegram): State<TelegramFake>,
    Json(faults): Json<Faults>,
) -> StatusCode {
    if let Some(faults) = faults.telegram {
        telegram.set_faults(faults);
    }
    StatusCode::NO_CONTENT
}
