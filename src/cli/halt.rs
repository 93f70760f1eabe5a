//! `ledgerhook halt [USER_ID]` / `ledgerhook resume [USER_ID]`: stop or restart trading for one
//! account or, without a user, for everyone (the emergency stop). Each is an event in the ledger
//! with why and who: the operator whose `--staff-key` it is (`staff:<staff_id>`).

use chrono::Utc;
use clap::Args;
use tokio::task::JoinSet;

use aggregates::{AccountCommand, AccountError, AUTOMATIC_HALT_BY};

use super::GlobalArgs;
use crate::app::{open_store, start_ledger};
use crate::emergency::{EmergencySwitch, REFRESH_INTERVAL};
use crate::ledger::{EventContext, LedgerError};

#[derive(Debug, Args)]
pub struct HaltArgs {
    /// The account to halt or resume; without it, the global emergency stop.
    pub user_id: Option<String>,
    /// Why (recorded in the ledger).
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub staff: super::staff_key::StaffKeyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Halt,
    Resume,
}

pub async fn run(global: &GlobalArgs, switch: Switch, args: HaltArgs) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    let by = args.staff.operator(&store).await?;
    let now = Utc::now();
    let Some(user_id) = args.user_id else {
        let emergency = EmergencySwitch::load(store).await?;
        let changed = match switch {
            Switch::Halt => emergency.engage(&by, &args.reason, now).await?,
            Switch::Resume => emergency.release(&by, &args.reason, now).await?,
        };
        let state = match (switch, changed) {
            (Switch::Halt, true) => "engaged",
            (Switch::Halt, false) => "was already engaged",
            (Switch::Resume, true) => "released",
            (Switch::Resume, false) => "was not engaged",
        };
        println!(
            "emergency stop {state}; running instances see it within {} ms",
            REFRESH_INTERVAL.as_millis()
        );
        return Ok(());
    };
    // An operator's halt names `staff:<id>`, never the automatic halts' `execution`, so the
    // trader is told of it as an operator's.
    debug_assert_ne!(by, AUTOMATIC_HALT_BY);
    let command = match switch {
        Switch::Halt => AccountCommand::HaltTrading {
            by: by.clone(),
            reason: args.reason,
            at: now,
        },
        Switch::Resume => AccountCommand::ResumeTrading {
            by: by.clone(),
            reason: args.reason,
            at: now,
        },
    };
    let mut committers = JoinSet::new();
    let ledger = start_ledger(store, &mut committers);
    let context = EventContext::new(&format!("cli:{by}"), now);
    let result = ledger.execute(&user_id, command, &context).await;
    drop(ledger);
    while committers.join_next().await.is_some() {}
    match result {
        Ok(committed) if committed.events.is_empty() => {
            println!("account {user_id}: nothing to change");
        }
        Ok(_) => {
            let state = match switch {
                Switch::Halt => "halted",
                Switch::Resume => "resumed",
            };
            println!("account {user_id}: trading {state}");
        }
        Err(LedgerError::Rejected(AccountError::NotOpened)) => {
            anyhow::bail!("no account {user_id}");
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}
