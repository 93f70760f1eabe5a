//! `ledgerhook keys generate|rotate`: a new master key line, and moving every sealed value to the
//! newest key (safe while the service runs; afterwards the older keys can leave the file).

use clap::Subcommand;

use super::GlobalArgs;
use crate::vault::{generate_line, rotate, Keyring};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new random key line, VERSION:BASE64, to append to the vault key file.
    Generate {
        /// The line's version (default: one above the highest in --vault-key-file, else 1).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        version: Option<u32>,
    },
    /// Re-encrypt every stored credential under the highest key version, one row at a time (the
    /// service may keep running). Prints how many moved.
    Rotate,
}

pub async fn run(global: &GlobalArgs, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { version } => {
            let version = match (version, &global.vault_key_file) {
                (Some(version), _) => version,
                (None, Some(path)) => {
                    let highest = Keyring::load(path)?.current().0;
                    highest.checked_add(1).ok_or_else(|| {
                        anyhow::anyhow!("the key file's highest version is the last")
                    })?
                }
                (None, None) => 1,
            };
            // The operator's own terminal or file: the one place a key is printed.
            println!("{}", generate_line(version).as_str());
            Ok(())
        }
        KeysCommand::Rotate => {
            let (store, vault) = super::open_vault(global).await?;
            let rotation = rotate(&vault).await?;
            println!(
                "moved {} values to key version {}",
                rotation.moved, rotation.version
            );
            if rotation.skipped > 0 {
                println!(
                    "{} values were sealed again while rotating (already under the new key)",
                    rotation.skipped
                );
            }
            let counts = store.vault().count_by_version().await?;
            let older: i64 = counts
                .iter()
                .filter(|(version, _)| *version < rotation.version)
                .map(|(_, count)| count)
                .sum();
            let newer: i64 = counts
                .iter()
                .filter(|(version, _)| *version > rotation.version)
                .map(|(_, count)| count)
                .sum();
            anyhow::ensure!(
                newer == 0,
                "{newer} values are sealed under key versions above {} that this key file lacks: \
                 use the key file the service uses",
                rotation.version
            );
            if older == 0 {
                println!(
                    "no value uses a key older than version {}: older keys can be removed from \
                     the key file once every process uses this one",
                    rotation.version
                );
            } else {
                println!("{older} values still use older keys: run `keys rotate` again");
            }
            Ok(())
        }
    }
}
