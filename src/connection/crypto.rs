//! Encryption at rest of connection secrets: AES-256-GCM under a master key,
//! a fresh random 96-bit nonce per write, and the connection key as
//! associated data so a ciphertext cannot be moved to another row.
//!
//! The master key is 32 bytes, written as **standard base64** (44 characters),
//! either in `$SEXTANT_MASTER_KEY` or in `<home>/master.key` (created on first
//! use with mode 0600).
//!
//! Stored layout: `version (1 byte, = 1) || nonce (12 bytes) || ciphertext+tag`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The environment variable that supplies the master key (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "SEXTANT_MASTER_KEY";
/// The key file's name in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "{MASTER_KEY_ENV} is not a valid master key: it must be the standard base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    BadEnvKey,
    #[error(
        "master key file {0} is not valid: it must hold the standard base64 of 32 bytes; restore it from a backup"
    )]
    BadKeyFile(PathBuf),
    #[error("cannot read or create the master key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot get random bytes from the operating system: {0}")]
    Random(String),
    #[error("encrypting secrets failed")]
    Encrypt,
    #[error(
        "cannot decrypt the secrets of connection {0:?}: wrong master key or tampered data; check {MASTER_KEY_ENV} or the master.key file in the data directory, or set the secrets again with: sextant connection update NAME --secrets-file -"
    )]
    Decrypt(String),
}

/// A 32-byte AES-256 key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(**redacted**)")
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random(e.to_string()))?;
        Ok(MasterKey(bytes))
    }

    /// Parses standard base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Option<MasterKey> {
        let bytes = STANDARD.decode(text.trim()).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(MasterKey)
    }

    /// The key as standard base64, to write to the key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// `$SEXTANT_MASTER_KEY` if set, else `<home>/master.key`, created (mode
    /// 0600) with a fresh key when absent.
    pub fn load(home: &Path) -> Result<(MasterKey, KeySource), CryptoError> {
        if let Some(text) = std::env::var_os(MASTER_KEY_ENV).filter(|v| !v.is_empty()) {
            let text = text.to_str().ok_or(CryptoError::BadEnvKey)?;
            let key = MasterKey::from_base64(text).ok_or(CryptoError::BadEnvKey)?;
            return Ok((key, KeySource::Env));
        }
        let path = home.join(MASTER_KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => MasterKey::from_base64(&text)
                .ok_or_else(|| CryptoError::BadKeyFile(path.clone()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate()?;
                if key.create_atomically(&path)? {
                    key
                } else {
                    // Another process created it first: use theirs.
                    let text =
                        std::fs::read_to_string(&path).map_err(|source| CryptoError::KeyFile {
                            path: path.clone(),
                            source,
                        })?;
                    MasterKey::from_base64(&text)
                        .ok_or_else(|| CryptoError::BadKeyFile(path.clone()))?
                }
            }
            Err(source) => return Err(CryptoError::KeyFile { path, source }),
        };
        Ok((key, KeySource::File(path)))
    }

    /// Creates `path` holding the key, complete or not at all: written to a
    /// private temporary file (mode 0600) first, then hard-linked into place,
    /// which fails if another process got there first. Returns false then.
    fn create_atomically(&self, path: &Path) -> Result<bool, CryptoError> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| CryptoError::Random(e.to_string()))?;
        let tmp = path.with_extension(format!(
            "tmp-{}-{}",
            std::process::id(),
            u64::from_le_bytes(suffix)
        ));
        self.write_new(&tmp)?;
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(CryptoError::KeyFile {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the key to a file that must not exist yet, mode 0600.
    pub fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let io = |source| CryptoError::KeyFile {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(format!("{}\n", self.to_base64()).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)
    }

    fn cipher(&self) -> Result<Aes256Gcm, CryptoError> {
        Aes256Gcm::new_from_slice(&self.0).map_err(|_| CryptoError::Encrypt)
    }

    /// Encrypts `plaintext` bound to `aad` (the connection key).
    pub fn encrypt(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Random(e.to_string()))?;
        let ciphertext = self
            .cipher()?
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts what [`encrypt`](Self::encrypt) wrote for the same `aad`.
    pub fn decrypt(&self, aad: &str, blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let fail = || CryptoError::Decrypt(aad.to_owned());
        if blob.len() < 1 + NONCE_LEN || blob[0] != VERSION {
            return Err(fail());
        }
        let nonce: [u8; NONCE_LEN] = blob[1..1 + NONCE_LEN].try_into().map_err(|_| fail())?;
        self.cipher()?
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_and_swap() {
        let key = MasterKey::generate().expect("key");
        let blob = key
            .encrypt("ci_prod", b"{\"api_token\":\"x\"}")
            .expect("enc");
        assert_eq!(
            key.decrypt("ci_prod", &blob).expect("dec"),
            b"{\"api_token\":\"x\"}"
        );
        assert!(key.decrypt("other", &blob).is_err(), "bound to its row");
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(key.decrypt("ci_prod", &bad).is_err());
        let other = MasterKey::generate().expect("key");
        assert!(other.decrypt("ci_prod", &blob).is_err());
        let again = key
            .encrypt("ci_prod", b"{\"api_token\":\"x\"}")
            .expect("enc");
        assert_ne!(blob, again, "fresh nonce per write");
        assert_eq!(MasterKey::from_base64(&key.to_base64()), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        // The env var would take precedence; this test needs the file path.
        if std::env::var_os(MASTER_KEY_ENV).is_some() {
            return;
        }
        let (first, source) = MasterKey::load(dir.path()).expect("create");
        assert_eq!(source, KeySource::File(dir.path().join(MASTER_KEY_FILE)));
        let (again, _) = MasterKey::load(dir.path()).expect("read");
        assert_eq!(first, again);
        let meta = std::fs::metadata(dir.path().join(MASTER_KEY_FILE)).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        assert!(
            !first
                .create_atomically(&dir.path().join(MASTER_KEY_FILE))
                .expect("link")
        );
    }
}
