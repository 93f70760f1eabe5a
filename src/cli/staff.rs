//! `ledgerhook staff create|disable`: staff identities for the compliance and operator endpoints.

use chrono::Utc;
use clap::Subcommand;

use super::{print_fields, GlobalArgs};
use crate::app::open_store;
use crate::staff::{self, StaffRole};

#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// Create a staff member with a fresh API key (shown once: only its SHA-256 is kept).
    Create {
        /// The staff member's display name.
        #[arg(long)]
        name: String,
        /// compliance: reads every account's audit trail; operator: runs the service.
        #[arg(long, value_parser = ["compliance", "operator"])]
        role: String,
        /// Print {"staff_id","api_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the staff member's credentials from working; what they read stays recorded.
    Disable {
        /// The staff id, as printed by `staff create`.
        staff_id: String,
    },
}

pub async fn run(global: &GlobalArgs, command: StaffCommand) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    match command {
        StaffCommand::Create { name, role, json } => {
            let role = StaffRole::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role must be compliance or operator"))?;
            let issued = staff::create_staff(&store, &name, role, Utc::now()).await?;
            print_fields(
                &[("staff_id", issued.staff_id), ("api_key", issued.api_key)],
                json,
            );
        }
        StaffCommand::Disable { staff_id } => {
            staff::disable_staff(&store, &staff_id, Utc::now()).await?;
            println!("staff member {staff_id} is disabled: their credentials no longer work");
        }
    }
    Ok(())
}
