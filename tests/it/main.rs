//! One test binary for everything that needs a store or the real service.
//!
//! `store` runs one conformance suite against both stores; `service` starts the real binary and
//! talks to it over HTTP, including kill -9 at the worst moments. PostgreSQL comes from
//! `DATABASE_URL`, else 127.0.0.1:5432, else a private throwaway cluster (see support/postgres.rs).

mod abuse;
mod access;
mod audit;
mod audit_guard;
mod auth;
mod browser;
mod browser_pages;
mod compliance;
mod derived_file;
mod dydx;
mod dydx_faults;
mod dydx_permissioned;
mod embedded_store;
mod failover;
mod faults;
mod fill_mismatch;
mod first_run;
mod global_order;
mod halts;
mod hardening;
mod hostile;
mod metrics;
mod notices;
mod openapi;
mod readside;
mod reconcile;
mod replay;
mod replay_scale;
mod resting;
mod reused_id;
mod risk;
mod saga;
mod saga_failures;
mod scale_out;
mod schemathesis;
mod secrets;
mod service;
mod settings;
mod sign_in;
mod signal_keys;
mod store;
mod strangers;
mod supervision;
mod support;
mod telegram;
mod template;
mod vault;
