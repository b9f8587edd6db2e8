//! `sextant key rotate`: re-encrypt every stored secret under a new master key.

use clap::Subcommand;

use super::Context;
use crate::connection::crypto::{MASTER_KEY_ENV, MASTER_KEY_FILE};
use crate::connection::{KeySource, MasterKey, service};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Re-encrypt every connection's secrets under a new master key, in one
    /// transaction. With a key file, a new key is generated and replaces the
    /// file; with $SEXTANT_MASTER_KEY, the new key is read from --new-key-env.
    Rotate {
        /// Environment variable holding the new key (base64 of 32 bytes);
        /// required when the key comes from $SEXTANT_MASTER_KEY.
        #[arg(long, value_name = "VAR")]
        new_key_env: Option<String>,
    },
}

pub fn run(cx: &Context, cmd: KeyCommand) -> anyhow::Result<i32> {
    let KeyCommand::Rotate { new_key_env } = cmd;
    let (old, source) = MasterKey::load(&cx.home)?;
    let mut store = cx.store()?;
    match source {
        KeySource::Env => {
            let Some(var) = new_key_env else {
                anyhow::bail!(
                    "the master key comes from {MASTER_KEY_ENV}: put a new key (e.g. `openssl rand -base64 32`) in another variable and pass --new-key-env VAR"
                );
            };
            let text = std::env::var(&var)
                .map_err(|_| anyhow::anyhow!("environment variable {var} is not set"))?;
            let new = MasterKey::from_base64(&text).ok_or_else(|| {
                anyhow::anyhow!(
                    "{var} is not a valid master key: it must be the standard base64 of 32 bytes"
                )
            })?;
            let n = service::rotate_key(&mut store, &old, &new)?;
            println!(
                "re-encrypted the secrets of {n} connection(s) under the key in {var}.\n\
                 Now set {MASTER_KEY_ENV} to the value of {var} wherever sextant runs; the old key no longer decrypts anything."
            );
        }
        KeySource::File(path) => {
            if new_key_env.is_some() {
                anyhow::bail!(
                    "--new-key-env is only for keys given in {MASTER_KEY_ENV}; the key file {} gets a freshly generated key",
                    path.display()
                );
            }
            let new = MasterKey::generate()?;
            // The new key is on disk before any row uses it; it replaces the
            // old file only after the transaction committed.
            let pending = cx.home.join(format!("{MASTER_KEY_FILE}.new"));
            // A leftover may be the only key that decrypts the secrets (a
            // rotation that committed but stopped before the rename): never
            // delete it here.
            if pending.exists() {
                anyhow::bail!(
                    "{} exists: an earlier key rotation was interrupted. If `sextant connection show NAME` fails with \"cannot decrypt\", the rotation committed: move {} to {}; otherwise delete it. Then run key rotate again",
                    pending.display(),
                    pending.display(),
                    path.display()
                );
            }
            new.write_new(&pending)?;
            let n = match service::rotate_key(&mut store, &old, &new) {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&pending);
                    return Err(e.into());
                }
            };
            std::fs::rename(&pending, &path).map_err(|source| {
                anyhow::anyhow!(
                    "the secrets were re-encrypted under the key in {}, but it could not replace {}: {source}; move it there by hand",
                    pending.display(),
                    path.display()
                )
            })?;
            println!(
                "re-encrypted the secrets of {n} connection(s); the new key is in {}",
                path.display()
            );
        }
    }
    Ok(0)
}
