//! Passwords and session tokens.
//!
//! - Passwords are hashed with argon2id (the `argon2` crate's defaults) into
//!   PHC strings. Hashing and verifying are deliberately slow (tens of ms of
//!   CPU), so callers run them on the blocking pool, never on an actor thread
//!   or the HTTP worker ([`hash_password_blocking`], [`verify_password_blocking`]),
//!   at most one per core at a time.
//! - A session token is 32 random bytes, base64url. Only its SHA-256 is
//!   stored: a stolen database does not yield usable tokens, and a plain hash
//!   (not argon2) is right here because the token has 256 bits of entropy.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("background task failed: {0}")]
    Task(String),
}

/// Hash a password into an argon2id PHC string.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// True when `password` matches the PHC string. A malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Check that a configured `password_hash` is a PHC string argon2 can verify.
pub fn check_phc(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!("`{}` is not an argon2 hash", parsed.algorithm));
    }
    Ok(())
}

/// At most one argon2 computation per core at a time, process-wide.
///
/// Why: each one allocates its memory cost (19 MiB with the defaults) on a
/// blocking-pool thread, and the blocking pool grows to hundreds of threads.
/// A login storm at shift start (thousands of agents within a minute) would
/// otherwise run hundreds at once: no faster — the cores are the limit —
/// but with hundreds of 19 MiB blocks live, which glibc's per-thread arenas
/// then keep (docs/performance.md, 10,000 agents). Queued logins wait on the
/// async semaphore, holding no thread and no argon2 memory.
fn argon2_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

async fn run_argon2<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    // The semaphore is never closed, so acquiring only waits. The permit
    // moves into the blocking task: a login whose client gave up still
    // holds it until its computation ends, so the bound is exact.
    let permit = argon2_permits()
        .acquire()
        .await
        .map_err(|e| AuthError::Task(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let out = work();
        drop(permit);
        out
    })
    .await
    .map_err(|e| AuthError::Task(e.to_string()))
}

pub async fn hash_password_blocking(password: Secret) -> Result<String, AuthError> {
    run_argon2(move || hash_password(password.expose())).await?
}

pub async fn verify_password_blocking(password: Secret, phc: String) -> Result<bool, AuthError> {
    run_argon2(move || verify_password(password.expose(), &phc)).await
}

/// A PHC string that no password matches, verified when a username is
/// unknown so that a login takes as long for an unknown user as for a known
/// one (no user enumeration by timing).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("mailroom-dummy-password").unwrap_or_default())
}

/// A new random session token and the hash to store.
pub fn new_token() -> (Secret, Vec<u8>) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = token_hash(&token);
    (Secret::new(token), hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A random password for the bootstrap admin.
pub fn random_password() -> Secret {
    let mut raw = [0u8; 18];
    rand::rng().fill_bytes(&mut raw);
    Secret::new(URL_SAFE_NO_PAD.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert!(check_phc(&h).is_ok());
        assert!(check_phc("$pbkdf2$x").is_err());
        assert!(check_phc("plain").is_err());
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(ha.len(), 32);
        assert_ne!(ha, hb);
        assert_eq!(token_hash(a.expose()), ha);
        assert!(a.expose().len() >= 43);
    }
}
