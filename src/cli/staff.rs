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
        /// Also let them sign in to the dashboard as LOGIN, with the password read from
        /// standard input (argon2id; at least 12 characters).
        #[arg(long)]
        login: Option<String>,
        /// Print {"staff_id","api_key"} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a staff member a dashboard login and password (read from standard input), or a new
    /// password; their API key is unchanged.
    SetPassword {
        /// The staff id, as printed by `staff create`.
        staff_id: String,
        #[arg(long)]
        login: String,
    },
    /// Stop the staff member's credentials from working; what they read stays recorded.
    Disable {
        /// The staff id, as printed by `staff create`.
        staff_id: String,
    },
}

fn checked_password(login: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    anyhow::ensure!(
        staff::is_valid_login(login),
        "--login must be 1 to 64 of a-z, 0-9, '.', '_' and '-'"
    );
    let password = super::credentials::read_value()?;
    staff::password::check_new_password(&password)?;
    Ok(password)
}

pub async fn run(global: &GlobalArgs, command: StaffCommand) -> anyhow::Result<()> {
    let store = open_store(&global.database_url).await?;
    match command {
        StaffCommand::Create {
            name,
            role,
            login,
            json,
        } => {
            let role = StaffRole::parse(&role)
                .ok_or_else(|| anyhow::anyhow!("--role must be compliance or operator"))?;
            // Read and checked before anything is created: a bad password creates no one.
            let password = match &login {
                Some(login) => Some(checked_password(login)?),
                None => None,
            };
            let sign_in = login
                .as_deref()
                .zip(password.as_deref().map(String::as_str));
            let issued = staff::create_staff(&store, &name, role, sign_in, Utc::now()).await?;
            print_fields(
                &[("staff_id", issued.staff_id), ("api_key", issued.api_key)],
                json,
            );
        }
        StaffCommand::SetPassword { staff_id, login } => {
            let password = checked_password(&login)?;
            staff::set_password(&store, &staff_id, &login, &password).await?;
            println!("staff member {staff_id} signs in as {login} with the new password");
        }
        StaffCommand::Disable { staff_id } => {
            staff::disable_staff(&store, &staff_id, Utc::now()).await?;
            println!("staff member {staff_id} is disabled: their credentials no longer work");
        }
    }
    Ok(())
}
