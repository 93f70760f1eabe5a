//! `ledgerhook credentials set OWNER FIELD`: seals a value read from standard input into the
//! vault (never from an argument: those show in `ps` and shell history). The value is checked for
//! shape first and never echoed.

use std::io::Read;

use clap::Subcommand;
use zeroize::Zeroizing;

use aggregates::SERVICE_OWNER_ID;

use super::GlobalArgs;
use crate::vault::{Field, Ownership};

/// A value longer than this is no credential (a mnemonic is ~200 bytes).
const LONGEST_VALUE: u64 = 4096;

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Store a credential, read from standard input (one trailing newline is dropped). FIELD is
    /// one of dydx_mnemonic (24 words), dydx_subaccount (0..=127), the permissioned key's three
    /// (dydx_owner_address, dydx_trading_mnemonic, dydx_authenticator_id; used instead of
    /// dydx_mnemonic when set), telegram_chat_id (an integer), webhook_token, webhook_secret,
    /// or, with OWNER `service`, telegram_bot_token.
    Set {
        /// A user's id, or `service` for the service-wide telegram_bot_token.
        owner: String,
        field: Field,
    },
}

pub async fn run(global: &GlobalArgs, command: CredentialsCommand) -> anyhow::Result<()> {
    match command {
        CredentialsCommand::Set { owner, field } => {
            let value = read_value()?;
            field
                .validate(&value)
                .map_err(|rule| anyhow::anyhow!("refused: {rule}"))?;
            let (store, vault) = super::open_vault(global).await?;
            match field.ownership() {
                Ownership::Service => anyhow::ensure!(
                    owner == SERVICE_OWNER_ID,
                    "{field} is the service's: use `ledgerhook credentials set {SERVICE_OWNER_ID} {field}`"
                ),
                Ownership::User => {
                    anyhow::ensure!(
                        owner != SERVICE_OWNER_ID,
                        "{field} belongs to a user, not to the service"
                    );
                    anyhow::ensure!(
                        store.credentials().user_profile(&owner).await?.is_some(),
                        "no user {owner}"
                    );
                }
            }
            vault.seal(&owner, field, &value).await?;
            println!(
                "{field} of {owner} stored, encrypted under vault key version {}",
                vault.keys().current().0
            );
            Ok(())
        }
    }
}

/// Standard input, without one trailing newline; refused when empty.
pub(super) fn read_value() -> anyhow::Result<Zeroizing<String>> {
    // Room for the longest value up front: no reallocation leaves a copy behind unwiped.
    let mut value = Zeroizing::new(String::with_capacity(LONGEST_VALUE as usize + 1));
    std::io::stdin()
        .take(LONGEST_VALUE + 1)
        .read_to_string(&mut value)
        .map_err(|_| anyhow::anyhow!("standard input is not UTF-8 text"))?;
    anyhow::ensure!(
        value.len() as u64 <= LONGEST_VALUE,
        "refused: the value is longer than {LONGEST_VALUE} bytes"
    );
    for ending in ["\r\n", "\n"] {
        if value.ends_with(ending) {
            let keep = value.len() - ending.len();
            value.truncate(keep);
            break;
        }
    }
    anyhow::ensure!(
        !value.is_empty(),
        "refused: the value is empty (pipe it on standard input)"
    );
    Ok(value)
}
