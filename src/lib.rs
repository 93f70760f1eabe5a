//! ledgerhook: TradingView alerts in, trades on dYdX v4 out, every step in an event-sourced ledger.
//! See ARCHITECTURE.md for the map.

pub mod app;
pub mod audit;
pub mod catchup;
pub mod cli;
pub mod emergency;
pub mod exchange;
pub mod execution;
pub mod guard;
pub mod http;
pub mod ingest;
pub mod ledger;
pub mod markets;
pub mod notify;
pub mod peer_failures;
pub mod readside;
pub mod reconcile;
pub mod sign_in;
pub mod siwe;
pub mod staff;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod users;
pub mod vault;
