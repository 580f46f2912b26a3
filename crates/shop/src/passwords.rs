//! Password hashing with argon2id, off the async threads.
//!
//! A hash costs tens of milliseconds of CPU by design, so every hash and
//! verification runs on tokio's blocking pool; bulk creation spreads its
//! hashes over one blocking task per core.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::config::PasswordsConfig;

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The parameters are out of argon2's range.
    #[error("argon2 parameters: {0}")]
    Params(String),
    /// The system's random source or the hasher failed.
    #[error("hashing a password failed: {0}")]
    Hash(String),
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Clone)]
pub struct Passwords {
    hasher: Arc<Argon2<'static>>,
    /// A hash of a random password, verified against when the user does
    /// not exist so that "no such user" takes as long as "wrong password"
    /// (Django does the same) and response times reveal no usernames.
    decoy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    /// A hasher with the configured cost.
    pub fn new(config: &PasswordsConfig) -> Result<Self, PasswordError> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let hasher = Arc::new(Argon2::new(Algorithm::Argon2id, Version::V0x13, params));
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let decoy = hash_with(&hasher, &random)?.into();
        Ok(Self { hasher, decoy })
    }

    /// Hashes every password, in parallel over the cores.
    pub async fn hash_all(&self, passwords: Vec<String>) -> Result<Vec<String>, PasswordError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per_task = passwords.len().div_ceil(cores).max(1);
        let mut tasks = Vec::new();
        for chunk in passwords.chunks(per_task) {
            let (hasher, chunk) = (Arc::clone(&self.hasher), chunk.to_vec());
            tasks.push(tokio::task::spawn_blocking(move || {
                chunk
                    .iter()
                    .map(|p| hash_with(&hasher, p.as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
            }));
        }
        let mut hashes = Vec::with_capacity(passwords.len());
        for task in tasks {
            let chunk = task
                .await
                .map_err(|e| PasswordError::Hash(e.to_string()))??;
            hashes.extend(chunk);
        }
        Ok(hashes)
    }

    /// Whether `password` matches `hash`; with no hash (no such user) it
    /// checks against the decoy and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let (hasher, decoy) = (Arc::clone(&self.hasher), Arc::clone(&self.decoy));
        let known = hash.is_some();
        let checked = tokio::task::spawn_blocking(move || {
            let hash = hash.as_deref().unwrap_or(&decoy);
            PasswordHash::new(hash)
                .is_ok_and(|parsed| hasher.verify_password(password.as_bytes(), &parsed).is_ok())
        });
        known && checked.await.unwrap_or(false)
    }
}

fn hash_with(hasher: &Argon2<'_>, password: &[u8]) -> Result<String, PasswordError> {
    hasher
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        let config = PasswordsConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Passwords::new(&config).expect("valid parameters")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = cheap();
        let hashes = passwords
            .hash_all(vec!["pw1".into(), "pw2".into()])
            .await
            .expect("hash");
        assert!(hashes[0].starts_with("$argon2id$"), "{}", hashes[0]);
        assert_ne!(hashes[0], hashes[1]);
        assert!(
            passwords
                .verify("pw1".into(), Some(hashes[0].clone()))
                .await
        );
        assert!(
            !passwords
                .verify("pw2".into(), Some(hashes[0].clone()))
                .await
        );
        assert!(
            !passwords.verify("pw1".into(), None).await,
            "no user, no login"
        );
    }
}
