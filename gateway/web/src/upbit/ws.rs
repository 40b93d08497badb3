//! `/websocket/v1` in Upbit's format (filled in by the next step).

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use super::{Upbit, UpbitError};

pub(crate) async fn upgrade(axum::extract::State(_up): axum::extract::State<Arc<Upbit>>) -> Response {
    UpbitError::new(axum::http::StatusCode::NOT_IMPLEMENTED, "not_found", "not yet").into_response()
}
