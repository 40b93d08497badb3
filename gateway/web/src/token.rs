//! Bearer tokens: HS256 JWTs issued at login for a gateway account, short-lived.
//!
//! Claims: `sub` (login), `role` (`user`/`operator`), `id` (user or operator id), `acct` (the
//! account's index, which keys its rate limit), `iat`, `exp` (seconds since the epoch), `iat_ms`
//! (issued at, milliseconds). A token is checked for signature, algorithm, expiry (no leeway) and
//! revocation on every request: `POST /api/v1/auth/logout` ends every token of its login issued
//! until then (a per-account watermark in memory, one word per configured account; a restart
//! forgets it, see docs/http-api.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ringbook_gateway::server::Role;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, WebCode};

/// A token's claims.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The login name.
    pub sub: String,
    /// `user` or `operator`.
    pub role: String,
    /// The user or operator id.
    pub id: u32,
    /// The account's index in the gateway's account table.
    pub acct: usize,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Issued at (milliseconds since the epoch), what a logout compares against; tokens issued
    /// before this claim existed have none and count as issued at `iat` seconds.
    #[serde(default)]
    pub iat_ms: u64,
}

impl Claims {
    /// The role the token acts as.
    pub fn role(&self) -> Option<Role> {
        match self.role.as_str() {
            "user" => Some(Role::User(self.id)),
            "operator" => Some(Role::Operator(self.id)),
            "market_data" => Some(Role::MarketData),
            _ => None,
        }
    }
}

/// Issues and verifies tokens.
pub struct Tokens {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
    /// Per account index: tokens issued at or before this time (ms) are revoked; 0 = none.
    revoked: Box<[AtomicU64]>,
    /// Per account index: the latest `iat_ms` issued, so that a logout within the millisecond
    /// of a login, or after the clock stepped back, still covers every token issued before it.
    issued: Box<[AtomicU64]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Tokens {
    /// With this secret and lifetime, for `accounts` gateway accounts (token `acct` below it).
    pub fn new(secret: &[u8], ttl_secs: u64, accounts: usize) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl_secs.max(1),
            revoked: (0..accounts).map(|_| AtomicU64::new(0)).collect(),
            issued: (0..accounts).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A token for `role` (account `acct`, login `login`): the token and its expiry.
    pub fn issue(&self, login: &str, acct: usize, role: Role) -> Result<(String, u64), ApiError> {
        // Strictly after the account's last logout, even within its millisecond: a login right
        // after a logout must not be revoked by it.
        let after = self
            .revoked
            .get(acct)
            .map_or(0, |r| r.load(Ordering::SeqCst));
        let iat_ms = now_ms().max(after.saturating_add(1));
        if let Some(i) = self.issued.get(acct) {
            i.fetch_max(iat_ms, Ordering::SeqCst);
        }
        let iat = iat_ms / 1000;
        let exp = now_secs().max(iat) + self.ttl_secs;
        let (role, id) = match role {
            Role::User(u) => ("user", u),
            Role::Operator(o) => ("operator", o),
            Role::MarketData => ("market_data", 0),
        };
        let claims = Claims {
            sub: login.to_string(),
            role: role.to_string(),
            id,
            acct,
            iat,
            exp,
            iat_ms,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map(|t| (t, exp))
            .map_err(|e| ApiError::bad(format!("cannot issue a token: {e}")))
    }

    /// Ends every token of account `acct` issued until now (a logout); the watermark set.
    pub fn revoke(&self, acct: usize) -> u64 {
        // Past every token issued so far, whatever the clock says now.
        let issued = self
            .issued
            .get(acct)
            .map_or(0, |i| i.load(Ordering::SeqCst));
        let at = now_ms().max(issued);
        match self.revoked.get(acct) {
            Some(r) => r.fetch_max(at, Ordering::SeqCst).max(at),
            None => at,
        }
    }

    /// Whether a logout has ended this (verified) token.
    pub fn is_revoked(&self, c: &Claims) -> bool {
        let issued = if c.iat_ms != 0 {
            c.iat_ms
        } else {
            c.iat.saturating_mul(1000)
        };
        self.revoked
            .get(c.acct)
            .is_some_and(|r| issued <= r.load(Ordering::SeqCst))
    }

    /// Verifies a token (signature, HS256, not expired, not revoked by a logout).
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation) {
            Ok(d) => {
                // `exp` is checked by the library; checked again without leeway, to the second.
                if d.claims.exp <= now_secs() {
                    return Err(ApiError::web(
                        WebCode::TokenExpired,
                        "the token has expired",
                    ));
                }
                if self.is_revoked(&d.claims) {
                    return Err(ApiError::web(
                        WebCode::TokenRevoked,
                        "the token was ended by a logout: log in again",
                    ));
                }
                Ok(d.claims)
            }
            Err(e) => match e.kind() {
                ErrorKind::ExpiredSignature => Err(ApiError::web(
                    WebCode::TokenExpired,
                    "the token has expired",
                )),
                _ => Err(ApiError::web(
                    WebCode::Unauthorized,
                    "the token does not verify",
                )),
            },
        }
    }
}

/// A random secret from the operating system (32 bytes).
pub fn random_secret() -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut b = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", 60, 2);
        let (tok, exp) = t.issue("alice", 0, Role::User(1)).unwrap();
        let c = t.verify(&tok).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role(), c.exp),
            ("alice", Some(Role::User(1)), exp)
        );
        let other = Tokens::new(b"another secret, also 32 bytes lon", 60, 2);
        assert_eq!(other.verify(&tok).unwrap_err().reason, "UNAUTHORIZED");
        assert_eq!(t.verify("not.a.token").unwrap_err().reason, "UNAUTHORIZED");
        // A token that expired a second ago.
        let past = Claims {
            exp: now_secs() - 1,
            iat: now_secs() - 100,
            ..c
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &past, &t.enc).unwrap();
        assert_eq!(t.verify(&old).unwrap_err().reason, "TOKEN_EXPIRED");
        // The "none" algorithm is refused.
        let mut parts: Vec<&str> = tok.split('.').collect();
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        parts[0] = none_header;
        assert_eq!(
            t.verify(&format!("{}.{}.", parts[0], parts[1]))
                .unwrap_err()
                .reason,
            "UNAUTHORIZED"
        );
    }

    /// A logout ends every token its login was issued until then, and no other account's; a
    /// login after it (even within the same millisecond) gets a token that works.
    #[test]
    fn a_logout_ends_the_accounts_tokens_issued_until_then() {
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", 60, 2);
        let (a1, _) = t.issue("alice", 0, Role::User(1)).unwrap();
        let (a2, _) = t.issue("alice", 0, Role::User(1)).unwrap();
        let (b, _) = t.issue("bob", 1, Role::User(2)).unwrap();
        let watermark = t.revoke(0);
        for tok in [&a1, &a2] {
            assert_eq!(t.verify(tok).unwrap_err().reason, "TOKEN_REVOKED");
        }
        assert_eq!(t.verify(&b).unwrap().sub, "bob");
        let (again, _) = t.issue("alice", 0, Role::User(1)).unwrap();
        assert_eq!(t.verify(&again).unwrap().sub, "alice");
        // A token without `iat_ms` (issued by a build before it) counts from `iat`.
        let c = t.verify(&again).unwrap();
        let legacy = Claims {
            iat_ms: 0,
            iat: watermark / 1000,
            ..c.clone()
        };
        let old = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &legacy, &t.enc).unwrap();
        assert_eq!(t.verify(&old).unwrap_err().reason, "TOKEN_REVOKED");
        // A login and a logout within one millisecond after a logout: the login's token is
        // stamped past the first watermark, and the second logout still ends it (a review
        // finding: the watermark was the clock alone).
        for _ in 0..50 {
            let (tok, _) = t.issue("alice", 0, Role::User(1)).unwrap();
            t.revoke(0);
            assert_eq!(t.verify(&tok).unwrap_err().reason, "TOKEN_REVOKED");
        }
        // An account index out of the table (a token signed for another configuration) is
        // not revoked by anything here; nothing panics.
        t.revoke(99);
        assert!(!t.is_revoked(&Claims { acct: 99, ..c }));
    }
}
