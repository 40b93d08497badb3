//! Upbit's request signing, checked exactly as Upbit documents it.
//!
//! `Authorization: Bearer <JWT>`, HS256, signed with the API key's secret, with the claims
//! `access_key`, `nonce` (a fresh string per request: a nonce seen again within
//! [`NONCE_WINDOW`] is refused as `nonce_used`) and, when the request has parameters,
//! `query_hash` = lower-case hex SHA-512 of the query string with `query_hash_alg` = `SHA512`.
//! For GET and DELETE the query string is the URL's (percent-decoded, as Upbit's and ccxt's
//! clients hash it; the undecoded form is accepted too); for POST it is the JSON body's
//! parameters rendered as `key=value&…` in body order.
//!
//! Replay memory is bounded: each nonce is remembered for [`NONCE_WINDOW`], at most
//! [`NONCES_PER_KEY`] per API key and [`NONCES_MAX`] in all; a key whose share is full of
//! nonces younger than the window has its requests refused (`too_many_requests`) rather than
//! a nonce forgotten early, and other keys are not touched by it (the whole table fills only
//! when [`NONCES_MAX`] / [`NONCES_PER_KEY`] keys are each at their share). A request the key
//! has no permission for is refused before its nonce is recorded. Upbit's JWT carries no time,
//! so a token captured in transit can be replayed once its nonce has left the window: serve
//! the API over TLS (a proxy in front), as with any bearer credential.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ringbook_engine::Config;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Upbit, UpbitError};

/// How long a nonce is remembered.
pub const NONCE_WINDOW: Duration = Duration::from_secs(600);
/// The most nonces remembered at once for one API key (~55 signed requests a second, sustained
/// over the window).
pub const NONCES_PER_KEY: usize = 1 << 15;
/// The most nonces remembered at once in all (~100 bytes each).
pub const NONCES_MAX: usize = 1 << 20;

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Balances, orders, withdrawals: reading.
    Read,
    /// Placing and cancelling orders.
    Trade,
    /// Requesting withdrawals.
    Withdraw,
}

/// One API key, resolved against the gateway's accounts.
pub struct Key {
    /// Its place in the table of keys (its nonce count's index).
    idx: usize,
    /// The access key.
    pub access: String,
    secret: Vec<u8>,
    /// The user it trades for.
    pub user: u32,
    /// The gateway account's index (its rate limit, its order lock).
    pub acct: usize,
    read: bool,
    trade: bool,
    withdraw: bool,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Key")
            .field("access", &self.access)
            .field("user", &self.user)
            .field("acct", &self.acct)
            .finish_non_exhaustive()
    }
}

impl Key {
    fn may(&self, p: Perm) -> bool {
        match p {
            Perm::Read => self.read,
            Perm::Trade => self.trade,
            Perm::Withdraw => self.withdraw,
        }
    }
}

#[derive(Debug, Default)]
struct Nonces {
    seen: HashSet<[u8; 32]>,
    /// Oldest first: the digest, when it was seen, the key's index.
    order: VecDeque<([u8; 32], Instant, usize)>,
    /// Nonces remembered per key.
    per_key: Vec<usize>,
}

/// Every API key, and the nonces seen.
#[derive(Debug)]
pub struct Keys {
    keys: Vec<Key>,
    nonces: Mutex<Nonces>,
}

impl Keys {
    /// The keys of `[[gateway.api_keys]]` (validated with the config: each names a user login).
    pub fn new(config: &Config) -> Keys {
        let keys: Vec<Key> = config
            .gateway
            .api_keys
            .iter()
            .filter_map(|k| {
                let acct = config
                    .gateway
                    .accounts
                    .iter()
                    .position(|a| a.login == k.account)?;
                let user = config.gateway.accounts[acct].user?;
                let has = |p: &str| k.permissions.iter().any(|x| x == p);
                Some(Key {
                    idx: 0,
                    access: k.access_key.clone(),
                    secret: k.secret_key.as_bytes().to_vec(),
                    user,
                    acct,
                    read: has("read"),
                    trade: has("trade"),
                    withdraw: has("withdraw"),
                })
            })
            .enumerate()
            .map(|(idx, k)| Key { idx, ..k })
            .collect();
        let nonces = Nonces {
            per_key: vec![0; keys.len()],
            ..Nonces::default()
        };
        Keys {
            keys,
            nonces: Mutex::new(nonces),
        }
    }

    fn find(&self, access: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.access == access)
    }

    /// Remembers `(key, nonce)`; false if it was seen within the window. Errors when the key's
    /// share, or the whole table, is full of live nonces.
    fn fresh(&self, key: &Key, nonce: &str, now: Instant) -> Result<bool, UpbitError> {
        let id = {
            let d = ring::digest::digest(
                &ring::digest::SHA256,
                format!("{}\n{}", key.access, nonce).as_bytes(),
            );
            let mut a = [0u8; 32];
            a.copy_from_slice(d.as_ref());
            a
        };
        let mut n = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((old, at, k)) = n.order.front().copied() {
            if now.saturating_duration_since(at) < NONCE_WINDOW {
                break;
            }
            n.order.pop_front();
            n.seen.remove(&old);
            n.per_key[k] -= 1;
        }
        if n.seen.contains(&id) {
            return Ok(false);
        }
        let full =
            |m: String| UpbitError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", &m);
        if n.per_key[key.idx] >= NONCES_PER_KEY {
            return Err(full(format!(
                "this API key signed {NONCES_PER_KEY} requests within the last {} s (each nonce \
                 is remembered that long); retry shortly",
                NONCE_WINDOW.as_secs()
            )));
        }
        if n.order.len() >= NONCES_MAX {
            return Err(full(
                "too many signed requests within the nonce window; retry shortly".into(),
            ));
        }
        n.seen.insert(id);
        n.order.push_back((id, now, key.idx));
        n.per_key[key.idx] += 1;
        Ok(true)
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    access_key: String,
    nonce: Value,
    #[serde(default)]
    query_hash: Option<String>,
    #[serde(default)]
    query_hash_alg: Option<String>,
}

/// A request's parameters, in order (`key[]` repeats kept).
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
    }

    /// Every value of `k` (or `k[]`).
    pub fn all(&self, k: &str) -> Vec<&str> {
        let arr = format!("{k}[]");
        self.0
            .iter()
            .filter(|(a, _)| a == k || *a == arr)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of `k` or a `validation_error` naming it.
    pub fn need(&self, k: &str) -> Result<&str, UpbitError> {
        self.get(k)
            .ok_or_else(|| UpbitError::validation(format!("{k} is missing (required parameter)")))
    }
}

/// Percent-decodes (`+` stays `+`, as Python's `unquote` leaves it).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parameters of a query string (`a=1&b=2`), decoded (`+` as a space, like forms).
pub fn query_params(q: &str) -> Params {
    Params(
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (
                    percent_decode(&k.replace('+', " ")),
                    percent_decode(&v.replace('+', " ")),
                )
            })
            .collect(),
    )
}

/// A JSON object's entries in body order.
struct Ordered<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered<T>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = m.next_entry::<String, T>()? {
                    v.push((k, x));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON body object's parameters, in body order, each value as its text: strings bare,
/// numbers and booleans exactly as written (`1e-05` stays `1e-05`, `1.00000000000000001`
/// keeps every digit, so the order's parser refuses what it would otherwise have to round),
/// `null` as empty, an array as repeated `key[]` entries.
pub fn body_params(body: &[u8]) -> Result<Params, UpbitError> {
    body_params_with(body, as_written)
        .map_err(|e| UpbitError::validation(format!("body: expected a JSON object: {e}")))
}

/// The body's parameters with `text` rendering each value (each array item).
fn body_params_with(
    body: &[u8],
    text: fn(&RawValue) -> Result<String, serde_json::Error>,
) -> Result<Params, serde_json::Error> {
    let o: Ordered<Box<RawValue>> = serde_json::from_slice(body)?;
    // A key given twice is refused, as `/api` refuses it: parsers disagree on which value
    // counts (this one took the first, most take the last), so the order could differ from
    // what the client's own tools show (a red-team finding).
    let mut keys = std::collections::HashSet::with_capacity(o.0.len());
    for (k, _) in &o.0 {
        if !keys.insert(k.as_str()) {
            return Err(<serde_json::Error as serde::de::Error>::custom(format!(
                "duplicate key {k:?}"
            )));
        }
    }
    let mut out = Vec::new();
    for (k, v) in o.0 {
        if v.get().starts_with('[') {
            let items: Vec<Box<RawValue>> = serde_json::from_str(v.get())?;
            for x in items {
                out.push((format!("{}[]", k.trim_end_matches("[]")), text(&x)?));
            }
        } else {
            out.push((k, text(&v)?));
        }
    }
    Ok(Params(out))
}

/// A value as the client wrote it (a string unescaped).
fn as_written(raw: &RawValue) -> Result<String, serde_json::Error> {
    let t = raw.get();
    Ok(match t {
        "null" => String::new(),
        _ if t.starts_with('"') => serde_json::from_str::<String>(t)?,
        _ => t.to_string(),
    })
}

/// A value as serde renders it once parsed (`1.50` as `1.5`, `1e2` as `100.0`).
fn as_parsed(raw: &RawValue) -> Result<String, serde_json::Error> {
    Ok(match serde_json::from_str::<Value>(raw.get())? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// `k=v&…` as Upbit hashes a POST body's parameters.
pub fn render(p: &Params) -> String {
    p.0.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Lower-case hex SHA-512.
pub fn sha512_hex(s: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA512, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The candidate strings a client may have hashed for this request.
fn hashed_forms(
    method: &Method,
    uri: &Uri,
    body: &[u8],
) -> Result<(Vec<String>, Params), UpbitError> {
    if *method == Method::POST && !body.iter().all(u8::is_ascii_whitespace) {
        // Hashed as written (what a client renders from the value it put in the body), or
        // as parsed (a client that normalises its numbers).
        let p = body_params(body)?;
        let mut forms = vec![render(&p)];
        if let Ok(parsed) = body_params_with(body, as_parsed).map(|q| render(&q)) {
            if parsed != forms[0] {
                forms.push(parsed);
            }
        }
        return Ok((forms, p));
    }
    let raw = uri.query().unwrap_or("");
    let p = query_params(raw);
    Ok((vec![percent_decode(raw), raw.to_string()], p))
}

/// A verified request: its key and parameters.
#[derive(Debug)]
pub struct Authed<'a> {
    /// The key that signed it.
    pub key: &'a Key,
    /// Its parameters.
    pub params: Params,
    /// The `Remaining-Req` header value.
    pub remaining: String,
}

/// `Remaining-Req` for `left` requests left in the bucket.
pub fn remaining(group: &str, left: u64) -> String {
    format!("group={group}; min={left}; sec={left}")
}

/// Checks a private request's signature, query hash, nonce and permission (see the module
/// documentation): the key and the request's parameters.
pub fn check<'a>(
    keys: &'a Keys,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    need: Perm,
    now: Instant,
) -> Result<(&'a Key, Params), UpbitError> {
    let unauthorized =
        |name: &'static str, m: &str| UpbitError::new(StatusCode::UNAUTHORIZED, name, m);
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthorized("jwt_verification", "Authorization: Bearer <JWT> is missing")
        })?;
    // Read the claims to find the key, then verify with its secret.
    let mut insecure = Validation::new(Algorithm::HS256);
    insecure.insecure_disable_signature_validation();
    insecure.required_spec_claims.clear();
    insecure.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(b""), &insecure)
        .map_err(|_| {
            unauthorized(
                "jwt_verification",
                "the JWT does not parse (Jwt 토큰 검증에 실패했습니다)",
            )
        })?
        .claims;
    let key = keys.find(&claims.access_key).ok_or_else(|| {
        unauthorized(
            "invalid_access_key",
            "unknown access key (잘못된 엑세스 키입니다)",
        )
    })?;
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key.secret), &v).map_err(
        |_| {
            unauthorized(
                "jwt_verification",
                "the JWT's signature does not verify (Jwt 토큰 검증에 실패했습니다)",
            )
        },
    )?;
    let nonce = match &claims.nonce {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(unauthorized("jwt_verification", "the JWT has no nonce")),
    };
    let (forms, params) = hashed_forms(method, uri, body)?;
    let has_params = !params.0.is_empty();
    match (&claims.query_hash, has_params) {
        (None, false) => {}
        (None, true) => {
            return Err(unauthorized(
                "invalid_query_payload",
                "the request has parameters but the JWT has no query_hash",
            ))
        }
        (Some(h), _) => {
            if claims
                .query_hash_alg
                .as_deref()
                .is_some_and(|a| !a.eq_ignore_ascii_case("SHA512"))
            {
                return Err(unauthorized(
                    "invalid_query_payload",
                    "query_hash_alg must be SHA512",
                ));
            }
            if !forms.iter().any(|f| sha512_hex(f).eq_ignore_ascii_case(h)) {
                return Err(unauthorized(
                    "invalid_query_payload",
                    "query_hash does not match the request's parameters",
                ));
            }
        }
    }
    if !key.may(need) {
        return Err(unauthorized(
            "out_of_scope",
            "this API key lacks the permission for this request (권한이 부족합니다)",
        ));
    }
    if !keys.fresh(key, &nonce, now)? {
        return Err(unauthorized(
            "nonce_used",
            "this nonce was used already (replay)",
        ));
    }
    Ok((key, params))
}

/// [`check`], then one request from the key's account rate limit.
pub(crate) fn verify<'a>(
    up: &'a Upbit,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    need: Perm,
) -> Result<Authed<'a>, UpbitError> {
    let now = Instant::now();
    let (key, params) = check(&up.keys, method, uri, headers, body, need, now)?;
    let limits = &up.st.limits;
    if let Err(l) = limits.account(key.acct, now) {
        let e: UpbitError = crate::api::limited(&up.st, l).into();
        return Err(e.with_remaining(Some(remaining("default", 0))));
    }
    Ok(Authed {
        key,
        params,
        remaining: remaining("default", limits.account_left(key.acct, now)),
    })
}

/// `Remaining-Req` for a public request from `ip`.
pub(crate) fn public_remaining(up: &Upbit, ip: IpAddr) -> String {
    remaining("market", up.st.limits.address_left(ip, Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known-answer vectors, produced independently with Python's standard library
    // (hashlib.sha512(s.encode()).hexdigest(); the JWT with base64.urlsafe_b64encode, json.dumps
    // and hmac.new(secret, header + "." + payload, hashlib.sha256)), pasted in as constants.
    include!("auth_vectors.rs");

    #[test]
    fn a_body_is_hashed_as_written_and_as_parsed() {
        let uri: Uri = "/v1/orders".parse().unwrap();
        let body =
            br#"{"market":"KRW-BTC", "volume": 1e-7, "price":1.50,"states":["wait", 1e2],"x":null}"#;
        let (forms, params) = hashed_forms(&Method::POST, &uri, body).unwrap();
        // The parameters the order sees are the written ones: nothing rounded on the way.
        assert_eq!(forms[0], render(&params));
        assert_eq!(
            forms[0],
            "market=KRW-BTC&volume=1e-7&price=1.50&states[]=wait&states[]=1e2&x="
        );
        assert_eq!(
            forms[1],
            "market=KRW-BTC&volume=1e-7&price=1.5&states[]=wait&states[]=100.0&x="
        );
        assert_eq!(forms.len(), 2);
        let p = body_params(br#"{"volume":1.00000000000000001}"#).unwrap();
        assert_eq!(render(&p), "volume=1.00000000000000001");
        // Strings only: one form.
        let (forms, _) = hashed_forms(
            &Method::POST,
            &uri,
            br#"{"market":"KRW-BTC","volume":"0.5"}"#,
        )
        .unwrap();
        assert_eq!(forms, vec!["market=KRW-BTC&volume=0.5".to_string()]);
        // A key given twice is refused, not read as its first value.
        let e = hashed_forms(
            &Method::POST,
            &uri,
            br#"{"market":"KRW-BTC","volume":"0.0001","volume":"50"}"#,
        )
        .unwrap_err();
        assert_eq!(e.name, "validation_error");
        assert!(
            e.message.contains("duplicate key \"volume\""),
            "{}",
            e.message
        );
    }

    #[test]
    fn sha512_matches_the_independent_vectors() {
        for (input, hex) in SHA512_VECTORS {
            assert_eq!(sha512_hex(input), *hex, "{input:?}");
        }
    }

    fn keys() -> Keys {
        Keys::new(&Config::default())
    }

    fn req(tok: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            format!("Bearer {tok}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn tokens_signed_by_an_independent_implementation_verify() {
        let keys = keys();
        let now = Instant::now();
        for (secret, tok, access, _nonce, query) in JWT_VECTORS {
            let k = keys.find(access).unwrap();
            assert_eq!(k.secret, secret.as_bytes());
            let (method, uri, body) = match query {
                // The same parameters as a POST body (JSON, in order) …
                Some(q) => {
                    let obj: serde_json::Map<String, Value> = Default::default();
                    let _ = obj;
                    let mut body = String::from("{");
                    for (i, kv) in q.split('&').enumerate() {
                        let (k, v) = kv.split_once('=').unwrap();
                        if i > 0 {
                            body.push(',');
                        }
                        body.push_str(&format!("\"{k}\":\"{v}\""));
                    }
                    body.push('}');
                    (Method::POST, "/v1/orders".parse::<Uri>().unwrap(), body)
                }
                None => (
                    Method::GET,
                    "/v1/accounts".parse::<Uri>().unwrap(),
                    String::new(),
                ),
            };
            let (key, params) = check(
                &keys,
                &method,
                &uri,
                &req(tok),
                body.as_bytes(),
                Perm::Read,
                now,
            )
            .unwrap();
            assert_eq!(key.access, *access);
            if let Some(q) = query {
                assert_eq!(render(&params), *q);
                // … and as a GET query string.
                let uri: Uri = format!("/v1/orders/chance?{q}").parse().unwrap();
                let e =
                    check(&keys, &Method::GET, &uri, &req(tok), b"", Perm::Read, now).unwrap_err();
                assert_eq!(e.name, "nonce_used", "the same token again is a replay");
            }
            // Replayed: refused.
            let e = check(
                &keys,
                &method,
                &uri,
                &req(tok),
                body.as_bytes(),
                Perm::Read,
                now,
            )
            .unwrap_err();
            assert_eq!((e.status.as_u16(), e.name), (401, "nonce_used"));
            // One signature byte changed: refused as a bad signature.
            let mut bad = tok.to_string();
            let last = bad.pop().unwrap();
            bad.push(if last == 'A' { 'B' } else { 'A' });
            let e = check(
                &keys,
                &method,
                &uri,
                &req(&bad),
                body.as_bytes(),
                Perm::Read,
                now,
            )
            .unwrap_err();
            assert_eq!(e.name, "jwt_verification");
        }
        // The POST vector's token with other parameters: the query hash does not match.
        let (_, tok, _, _, _) = JWT_VECTORS[0];
        let fresh = keys_fresh_copy();
        let e = check(
            &fresh,
            &Method::POST,
            &"/v1/orders".parse::<Uri>().unwrap(),
            &req(tok),
            br#"{"market":"KRW-BTC","side":"bid","volume":"0.02","price":"95000000","ord_type":"limit"}"#,
            Perm::Trade,
            now,
        )
        .unwrap_err();
        assert_eq!((e.status.as_u16(), e.name), (401, "invalid_query_payload"));
        // Unknown access key.
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer x.y.z".parse().unwrap(),
        );
        let e = check(
            &fresh,
            &Method::GET,
            &"/v1/accounts".parse::<Uri>().unwrap(),
            &h,
            b"",
            Perm::Read,
            now,
        )
        .unwrap_err();
        assert_eq!(e.name, "jwt_verification");
    }

    fn keys_fresh_copy() -> Keys {
        keys()
    }

    #[test]
    fn permissions_and_a_full_nonce_table() {
        let mut c = Config::default();
        c.gateway.api_keys[0].permissions = vec!["read".into()];
        let keys = Keys::new(&c);
        let now = Instant::now();
        let (_, tok, _, _, _) = JWT_VECTORS[1];
        // bob's key has every permission; alice's (changed above) may only read.
        assert!(check(
            &keys,
            &Method::GET,
            &"/v1/accounts".parse::<Uri>().unwrap(),
            &req(tok),
            b"",
            Perm::Withdraw,
            now
        )
        .is_ok());
        let alice = keys.find("alice-access-demo").unwrap();
        assert!(alice.may(Perm::Read) && !alice.may(Perm::Trade) && !alice.may(Perm::Withdraw));
        // The nonce table: a nonce is forgotten only after the window.
        assert!(keys.fresh(alice, "n1", now).unwrap());
        assert!(!keys
            .fresh(alice, "n1", now + Duration::from_secs(1))
            .unwrap());
        assert!(keys
            .fresh(alice, "n1", now + NONCE_WINDOW + Duration::from_secs(1))
            .unwrap());
        // Another key's identical nonce is another entry.
        let bob = keys.find("bob-access-demo").unwrap();
        assert!(keys
            .fresh(bob, "n1", now + NONCE_WINDOW + Duration::from_secs(1))
            .unwrap());
    }

    #[test]
    fn one_key_filling_its_nonce_share_leaves_the_others_alone() {
        let keys = keys();
        let alice = keys.find("alice-access-demo").unwrap();
        let bob = keys.find("bob-access-demo").unwrap();
        let now = Instant::now();
        // alice's first nonce is a second older than the rest of her share.
        assert!(keys
            .fresh(alice, "first", now - Duration::from_secs(1))
            .unwrap());
        for i in 1..NONCES_PER_KEY {
            assert!(keys.fresh(alice, &i.to_string(), now).unwrap());
        }
        let e = keys.fresh(alice, "one more", now).unwrap_err();
        assert_eq!((e.status.as_u16(), e.name), (429, "too_many_requests"));
        // A replay is still told apart from a full share.
        assert!(!keys.fresh(alice, "1", now).unwrap());
        // bob is not touched.
        assert!(keys.fresh(bob, "one more", now).unwrap());
        // The oldest of alice's leaves the window first, and gives its place back.
        let later = now - Duration::from_secs(1) + NONCE_WINDOW;
        assert!(keys.fresh(alice, "one more", later).unwrap());
        assert!(keys.fresh(alice, "and another", later).is_err());
    }

    #[test]
    fn a_request_without_the_permission_spends_no_nonce() {
        let mut c = Config::default();
        let (_, tok, access, _, _) = JWT_VECTORS[1];
        assert_eq!(access, "bob-access-demo");
        let k = c
            .gateway
            .api_keys
            .iter_mut()
            .find(|k| k.access_key == access);
        k.unwrap().permissions = vec!["read".into()];
        let keys = Keys::new(&c);
        let now = Instant::now();
        let uri = "/v1/accounts".parse::<Uri>().unwrap();
        let e = check(&keys, &Method::GET, &uri, &req(tok), b"", Perm::Trade, now).unwrap_err();
        assert_eq!(e.name, "out_of_scope");
        // The same token, for what the key may do, is not a replay.
        assert!(check(&keys, &Method::GET, &uri, &req(tok), b"", Perm::Read, now).is_ok());
    }

    #[test]
    fn secrets_are_never_printed() {
        let keys = keys();
        let dbg = format!("{keys:?} {:?}", Config::default().gateway.api_keys);
        assert!(!dbg.contains("secret-demo"), "{dbg}");
        assert!(dbg.contains("alice-access-demo"));
    }

    #[test]
    fn body_params_render_in_body_order() {
        let p = body_params(br#"{"market":"KRW-BTC","side":"bid","volume":"0.01","price":"100","ord_type":"limit","n":1.5}"#).unwrap();
        assert_eq!(
            render(&p),
            "market=KRW-BTC&side=bid&volume=0.01&price=100&ord_type=limit&n=1.5"
        );
        assert!(body_params(b"[1]").is_err());
        let q = query_params("market=KRW-BTC&uuids%5B%5D=a&uuids[]=b&x=a%20b+c");
        assert_eq!(q.all("uuids"), vec!["a", "b"]);
        assert_eq!(q.get("x"), Some("a b c"));
        assert_eq!(
            percent_decode("uuids%5B%5D=a&x=a%20b+c"),
            "uuids[]=a&x=a b+c"
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
