//! `--staff-key` (env `LEDGERHOOK_STAFF_KEY`): the operator an account-changing command is
//! recorded as made by. The key is checked as the HTTP API checks it, and must be an operator's:
//! the ledger names `staff:<staff_id>`, an identity, never free text.

use std::convert::Infallible;
use std::str::FromStr;

use clap::Args;

use crate::staff::{self, StaffRole};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct StaffKeyArgs {
    /// An operator's staff key (`ledgerhook staff create --role operator`); the change is
    /// recorded as made by `staff:<STAFF_ID>`. Prefer the environment variable: arguments show
    /// in `ps` and shell history.
    #[arg(
        long = "staff-key",
        env = "LEDGERHOOK_STAFF_KEY",
        hide_env_values = true
    )]
    pub staff_key: StaffKey,
}

impl StaffKeyArgs {
    pub async fn operator(&self, store: &Store) -> anyhow::Result<String> {
        self.staff_key.operator(store).await
    }
}

/// A staff key as given; redacted in `Debug`.
#[derive(Clone)]
pub struct StaffKey(String);

impl FromStr for StaffKey {
    type Err = Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.trim().to_owned()))
    }
}

// The key must not reach a log line through `{:?}`.
impl std::fmt::Debug for StaffKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl StaffKey {
    /// `staff:<staff_id>` of the operator holding the key; an error for any other key.
    pub async fn operator(&self, store: &Store) -> anyhow::Result<String> {
        let member = staff::authenticate_api_key(store, &self.0)
            .await?
            .ok_or_else(|| anyhow::anyhow!("--staff-key is not an active staff key"))?;
        anyhow::ensure!(
            member.role == StaffRole::Operator,
            "--staff-key belongs to {} staff; only operators halt, resume or change limits",
            member.role.as_str()
        );
        Ok(format!("staff:{}", member.staff_id))
    }
}
