//! `ledgerhook store recreate-derived`: an embedded store's lost derived file made again, empty, for
//! the next `serve` to rebuild from the ledger (see `store/derived.rs`).

use clap::Subcommand;

use super::GlobalArgs;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// SQLite: give a missing derived file (read models, readers' checkpoints, the audit trail)
    /// its empty tables again; the next `serve` derives them from the ledger. Its audit trail is
    /// then recomputed from the ledger's events: the signed checkpoints of the lost file are gone.
    RecreateDerived,
}

pub async fn run(global: &GlobalArgs, command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::RecreateDerived => recreate_derived(global).await,
    }
}

async fn recreate_derived(global: &GlobalArgs) -> anyhow::Result<()> {
    let store = Store::connect(&global.database_url).await?;
    let Store::Sqlite(sqlite) = &store else {
        anyhow::bail!("nothing to recreate: a PostgreSQL store keeps everything in one database");
    };
    // Not beside a running service, whose readers would fail on the missing tables meanwhile.
    let _service = store.lock_for_service()?;
    let recreated = sqlite.recreate_derived_file().await?;
    store.migrate().await?;
    println!(
        "recreated {} ({} tables, indexes and triggers). The next `ledgerhook serve` derives the \
         read models and the audit trail from the ledger's {} events; until it has, they lag. \
         The audit trail is recomputed from the ledger: compare its chain head with a checkpoint \
         kept elsewhere (`ledgerhook audit verify`).",
        recreated.path.display(),
        recreated.objects,
        recreated.events
    );
    Ok(())
}
