//! Join tokens `ID.SECRET` (kubeadm style): 6 + 16 characters of `[a-z0-9]`. The cluster keeps
//! only the SHA-256 of the secret and compares in constant time.

use std::collections::BTreeMap;
use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::pki::hex;
use crate::types::{NodeId, TokenRecord};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The message every refused token gets (unknown, expired and wrong secret look the same).
pub const REFUSED: &str = "token unknown or expired";

/// A join token, as handed to the operator.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public id.
    pub id: String,
    /// Secret part.
    pub secret: String,
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}.****)", self.id)
    }
}

fn random(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn well_formed(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

impl JoinToken {
    /// A fresh random token.
    pub fn generate() -> JoinToken {
        JoinToken {
            id: random(6),
            secret: random(16),
        }
    }

    /// Parses `ID.SECRET`.
    pub fn parse(s: &str) -> Result<JoinToken, String> {
        let (id, secret) = s
            .trim()
            .split_once('.')
            .ok_or("token must look like ID.SECRET")?;
        if !well_formed(id, 6) || !well_formed(secret, 16) {
            return Err("token must look like ID.SECRET ([a-z0-9]{6}.[a-z0-9]{16})".into());
        }
        Ok(JoinToken {
            id: id.into(),
            secret: secret.into(),
        })
    }

    /// What the state machine stores for this token.
    pub(crate) fn record(
        &self,
        expires_at_ms: u64,
        created_by: Option<NodeId>,
        single_use: bool,
    ) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            secret_sha256: hex(&Sha256::digest(self.secret.as_bytes())),
            expires_at_ms,
            created_by,
            single_use,
        }
    }
}

/// Checks a presented token against the committed tokens (by id); gives back its record.
pub(crate) fn verify<'s>(
    tokens: &'s BTreeMap<String, TokenRecord>,
    presented: &str,
    now_ms: u64,
) -> Result<&'s TokenRecord, String> {
    let token = JoinToken::parse(presented).map_err(|_| REFUSED.to_string())?;
    let Some(rec) = tokens.get(&token.id) else {
        return Err(REFUSED.into());
    };
    let digest = hex(&Sha256::digest(token.secret.as_bytes()));
    let same: bool = digest.as_bytes().ct_eq(rec.secret_sha256.as_bytes()).into();
    if !same || rec.expires_at_ms <= now_ms {
        return Err(REFUSED.into());
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ClusterState, Command};

    #[test]
    fn verify_accepts_only_the_live_exact_token() {
        let t = JoinToken::generate();
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t.clone()));
        let mut s = ClusterState::default();
        s.apply(
            1,
            &Command::CreateToken {
                token: t.record(1000, None, false),
                now_ms: 0,
            },
        );
        assert!(verify(&s.tokens, &t.to_string(), 999).is_ok());
        assert_eq!(verify(&s.tokens, &t.to_string(), 1000), Err(REFUSED.into()));
        let wrong = format!("{}.{}", t.id, "a".repeat(16));
        assert_eq!(verify(&s.tokens, &wrong, 1), Err(REFUSED.into()));
        assert_eq!(verify(&s.tokens, "garbage", 1), Err(REFUSED.into()));
        assert!(!format!("{t:?}").contains(&t.secret));
    }
}
