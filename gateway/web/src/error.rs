//! Errors: `{"code":N,"reason":"NAME","message":"…"}` with a fitting HTTP status.
//!
//! Engine and gateway rejects keep their stable codes (1xxx gateway, 2xxx accounts, 3xxx
//! orders; see docs/protocol.md). Errors that only the web edge can have take 4xxx codes
//! ([`WebCode`]), listed in docs/http-api.md; a published code is never renumbered.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ringbook_engine::RejectCode;

/// Errors of the web edge itself (4xxx).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum WebCode {
    /// The body, path or query string does not parse or names an unknown value.
    BadRequest = 4001,
    /// No bearer token, or one that does not verify.
    Unauthorized = 4002,
    /// The token verified but has expired: log in again.
    TokenExpired = 4003,
    /// A per-account or per-address rate limit: retry after `Retry-After` seconds.
    RateLimited = 4004,
    /// The queue into the gateway loop is full: retry shortly.
    Busy = 4005,
    /// No such route or resource.
    NotFound = 4006,
    /// An instruction this engine does not have (yet).
    Unsupported = 4007,
    /// The gateway loop is not running (starting or stopping).
    NotReady = 4008,
    /// No answer from the gateway loop in time; the command may or may not have been
    /// sequenced (check open orders / order status).
    Timeout = 4009,
    /// Too many connections: WebSocket connections (`ws_conns_max`), or HTTP connections in
    /// all (`conns_max`) or from one address (`conns_per_addr`).
    TooManyConnections = 4010,
    /// The request's body did not arrive whole within `body_timeout_ms` of its header.
    BodyTimeout = 4011,
    /// The token verified but a logout (`POST /api/v1/auth/logout`) has ended it: log in again.
    TokenRevoked = 4012,
}

impl WebCode {
    /// Every code, in numeric order.
    pub const ALL: [WebCode; 12] = [
        WebCode::BadRequest,
        WebCode::Unauthorized,
        WebCode::TokenExpired,
        WebCode::RateLimited,
        WebCode::Busy,
        WebCode::NotFound,
        WebCode::Unsupported,
        WebCode::NotReady,
        WebCode::Timeout,
        WebCode::TooManyConnections,
        WebCode::BodyTimeout,
        WebCode::TokenRevoked,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            WebCode::BadRequest => "BAD_REQUEST",
            WebCode::Unauthorized => "UNAUTHORIZED",
            WebCode::TokenExpired => "TOKEN_EXPIRED",
            WebCode::RateLimited => "RATE_LIMITED",
            WebCode::Busy => "WEB_BUSY",
            WebCode::NotFound => "NOT_FOUND",
            WebCode::Unsupported => "UNSUPPORTED",
            WebCode::NotReady => "NOT_READY",
            WebCode::Timeout => "TIMEOUT",
            WebCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            WebCode::BodyTimeout => "BODY_TIMEOUT",
            WebCode::TokenRevoked => "TOKEN_REVOKED",
        }
    }

    /// The HTTP status it travels with.
    pub fn status(self) -> StatusCode {
        match self {
            WebCode::BadRequest => StatusCode::BAD_REQUEST,
            WebCode::Unauthorized | WebCode::TokenExpired | WebCode::TokenRevoked => {
                StatusCode::UNAUTHORIZED
            }
            WebCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            WebCode::Busy | WebCode::NotReady | WebCode::TooManyConnections => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WebCode::NotFound => StatusCode::NOT_FOUND,
            WebCode::Unsupported => StatusCode::NOT_IMPLEMENTED,
            WebCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            WebCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// The HTTP status of an engine or gateway reject.
pub fn reject_status(code: RejectCode) -> StatusCode {
    use RejectCode::*;
    match code {
        BadCredentials => StatusCode::UNAUTHORIZED,
        LoginThrottled => StatusCode::TOO_MANY_REQUESTS,
        NotYourAccount | NotYourOrder | OperatorOnly | UserOnly | NotAnOperator => {
            StatusCode::FORBIDDEN
        }
        ServerFull | ShuttingDown | OrderPoolFull | WithdrawalPoolFull => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        UnknownUser | UnknownCurrency | UnknownSymbol | UnknownOrder | UnknownWithdrawal => {
            StatusCode::NOT_FOUND
        }
        DuplicateClientOrderId | DuplicateApproval | ClientOrderIdNotIncreasing => {
            StatusCode::CONFLICT
        }
        MalformedFrame
        | FrameTooLarge
        | UnknownMessageType
        | UnsupportedVersion
        | InvalidField
        | NotLoggedIn
        | AlreadyLoggedIn
        | HeartbeatTimeout
        | SlowConsumer
        | Flood
        | RetransmitUnavailable => StatusCode::BAD_REQUEST,
        // Business rejects of a well-formed request: funds, amounts, prices, quantities.
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// An error response.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable numeric code.
    pub code: u16,
    /// Stable name.
    pub reason: &'static str,
    /// For people.
    pub message: String,
    /// `Retry-After` seconds (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A web-edge error.
    pub fn web(code: WebCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code: code as u16,
            reason: code.name(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// An engine or gateway reject.
    pub fn reject(code: RejectCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: reject_status(code),
            code: code.code(),
            reason: code.name(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// A `400 BAD_REQUEST`.
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::web(WebCode::BadRequest, message)
    }

    /// With a `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"code": self.code, "reason": self.reason, "message": self.message})
    }
}

/// Set on error responses, so the metrics layer can count them by code.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub u16, pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        r.extensions_mut().insert(ErrorCode(self.code, self.reason));
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// A message for an engine reject code.
pub fn reject_message(code: RejectCode) -> String {
    format!("rejected: {}", code.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_codes_are_unique_sorted_4xxx() {
        for w in WebCode::ALL.windows(2) {
            assert!((w[0] as u16) < (w[1] as u16));
        }
        assert!(WebCode::ALL
            .iter()
            .all(|c| (4001..5000).contains(&(*c as u16))));
        for c in RejectCode::ALL {
            assert!(c.code() < 4000, "engine codes stay below the web range");
        }
    }

    #[test]
    fn statuses_fit_the_codes() {
        assert_eq!(
            reject_status(RejectCode::NotYourAccount),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            reject_status(RejectCode::UnknownSymbol),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            reject_status(RejectCode::InsufficientFunds),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(WebCode::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
        let e = ApiError::web(WebCode::Busy, "full").retry_after(0);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(e.body()["reason"], "WEB_BUSY");
        assert_eq!(e.body()["code"], 4005);
    }
}
