//! Bearer tokens: HS256 JWTs issued at login for a gateway account, short-lived.
//!
//! Claims: `sub` (login), `role` (`user`/`operator`), `id` (user or operator id), `acct` (the
//! account's index, which keys its rate limit), `iat`, `exp` (seconds since the epoch). A token
//! is checked for signature, algorithm and expiry (no leeway) on every request.

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

impl Tokens {
    /// With this secret and lifetime.
    pub fn new(secret: &[u8], ttl_secs: u64) -> Tokens {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
            ttl_secs: ttl_secs.max(1),
        }
    }

    /// A token for `role` (account `acct`, login `login`): the token and its expiry.
    pub fn issue(&self, login: &str, acct: usize, role: Role) -> Result<(String, u64), ApiError> {
        let iat = now_secs();
        let exp = iat + self.ttl_secs;
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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.enc)
            .map(|t| (t, exp))
            .map_err(|e| ApiError::bad(format!("cannot issue a token: {e}")))
    }

    /// Verifies a token (signature, HS256, not expired).
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
        let t = Tokens::new(b"0123456789abcdef0123456789abcdef", 60);
        let (tok, exp) = t.issue("alice", 0, Role::User(1)).unwrap();
        let c = t.verify(&tok).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role(), c.exp),
            ("alice", Some(Role::User(1)), exp)
        );
        let other = Tokens::new(b"another secret, also 32 bytes lon", 60);
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
}
