//! The trading page: `GET /` and its assets under `/assets/`, embedded in the binary.
//!
//! The page is plain HTML, CSS and JavaScript (`gateway/web/assets/`, no build step) over the
//! same public REST and WebSocket API as any client (docs/http-api.md); docs/web-ui.md is its
//! manual. The chart library is TradingView Lightweight Charts, vendored with its licence
//! (`assets/vendor/NOTICE.md`).
//!
//! Caching: the page itself is `no-cache` (revalidated with its `ETag`); it names each asset
//! with `?v=<content hash>`, and a request that carries the current hash is cached for a year
//! (`immutable`), so a new binary's assets are never mixed with an old page. Any other request
//! for an asset is `no-cache` with an `ETag`. Hashes are computed once, on first use.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::{ApiError, WebCode};

/// One embedded file.
#[derive(Debug)]
struct Asset {
    /// Its name under `/assets/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file under `/assets/`.
const ASSETS: [Asset; 5] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        name: "num.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/num.js"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        name: "lightweight-charts.standalone.production.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/vendor/lightweight-charts.standalone.production.js"),
    },
    Asset {
        name: "lightweight-charts.LICENSE",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../assets/vendor/lightweight-charts.LICENSE"),
    },
];

/// The page, with `{{asset:NAME}}` placeholders for versioned asset URLs.
const INDEX_TEMPLATE: &str = include_str!("../assets/index.html");

/// A year, for versioned asset URLs.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Revalidate every time (the page, and asset requests without the current version).
const REVALIDATE: &str = "no-cache";

/// Scripts, styles and connections only from this origin (CSP level 3 counts the same host's
/// `ws:`/`wss:` as `'self'`); no inline script or style sheet, no frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
     form-action 'self'";

/// 64-bit FNV-1a, as 16 hex digits: a content version for cache busting (not security).
fn version_of(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Each asset's version, in `ASSETS` order.
static VERSIONS: LazyLock<Vec<String>> =
    LazyLock::new(|| ASSETS.iter().map(|a| version_of(a.body)).collect());

/// The page with its asset URLs filled in, and its own version.
static INDEX: LazyLock<(String, String)> = LazyLock::new(|| {
    let mut page = INDEX_TEMPLATE.to_string();
    for (a, v) in ASSETS.iter().zip(VERSIONS.iter()) {
        page = page.replace(
            &format!("{{{{asset:{}}}}}", a.name),
            &format!("/assets/{}?v={v}", a.name),
        );
    }
    let v = version_of(page.as_bytes());
    (page, v)
});

/// The page's routes; merged into the API router (so the same per-address rate limit and
/// request metrics apply).
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{name}", get(asset))
}

/// Whether the request's `If-None-Match` names `etag`.
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

fn reply(
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    version: &str,
    body: &'static [u8],
) -> Response {
    let etag = format!("\"{version}\"");
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    let Ok(etag_value) = HeaderValue::from_str(&etag) else {
        return ApiError::web(WebCode::BadRequest, "asset version").into_response();
    };
    if not_modified(headers, &etag) {
        return (
            StatusCode::NOT_MODIFIED,
            common,
            [(header::ETAG, etag_value)],
        )
            .into_response();
    }
    (
        common,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::ETAG, etag_value),
        ],
        body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    let (page, version) = &*INDEX;
    let mut r = reply(
        &headers,
        "text/html; charset=utf-8",
        REVALIDATE,
        version,
        page.as_bytes(),
    );
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[derive(serde::Deserialize)]
struct AssetQuery {
    v: Option<String>,
}

async fn asset(
    Path(name): Path<String>,
    Query(q): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError::web(WebCode::NotFound, "no such asset").into_response();
    };
    let (a, version) = (&ASSETS[i], &VERSIONS[i]);
    let cache = if q.v.as_deref() == Some(version.as_str()) {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    reply(&headers, a.content_type, cache, version, a.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_with(uri: &str, inm: Option<&str>) -> Response {
        let mut req = Request::get(uri);
        if let Some(t) = inm {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        routes::<()>()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    fn h(r: &Response, k: header::HeaderName) -> &str {
        r.headers().get(k).unwrap().to_str().unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn the_page_names_every_asset_with_its_version_and_each_is_served_as_its_type() {
        rt().block_on(async {
            let r = get_with("/", None).await;
            assert_eq!(r.status(), 200);
            assert_eq!(h(&r, header::CONTENT_TYPE), "text/html; charset=utf-8");
            assert_eq!(h(&r, header::CACHE_CONTROL), "no-cache");
            assert!(h(&r, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
            let page = String::from_utf8(body_of(r).await).unwrap();
            assert!(!page.contains("{{"), "a placeholder was left: {page}");
            // Every script and stylesheet the page loads is an embedded asset at its version.
            let mut named = 0;
            for (a, v) in ASSETS.iter().zip(VERSIONS.iter()) {
                let url = format!("/assets/{}?v={v}", a.name);
                if !page.contains(&url) {
                    continue;
                }
                named += 1;
                let r = get_with(&url, None).await;
                assert_eq!(r.status(), 200, "{url}");
                assert_eq!(h(&r, header::CONTENT_TYPE), a.content_type, "{url}");
                assert_eq!(h(&r, header::CACHE_CONTROL), IMMUTABLE, "{url}");
                assert_eq!(h(&r, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
                assert_eq!(body_of(r).await, a.body, "{url}");
            }
            assert_eq!(named, ASSETS.len(), "the page names every asset");
            for src in page.split("src=\"").skip(1) {
                let url = src.split('"').next().unwrap();
                assert!(
                    url.starts_with("/assets/") && url.contains("?v="),
                    "unversioned or foreign script {url}"
                );
            }
        });
    }

    #[test]
    fn unversioned_requests_revalidate_and_a_matching_etag_is_not_modified() {
        rt().block_on(async {
            let r = get_with("/assets/app.js", None).await;
            assert_eq!(r.status(), 200);
            assert_eq!(h(&r, header::CACHE_CONTROL), "no-cache");
            let etag = h(&r, header::ETAG).to_string();
            let r = get_with("/assets/app.js?v=0000", Some(&etag)).await;
            assert_eq!(r.status(), 304);
            assert!(body_of(r).await.is_empty());
            let r = get_with("/assets/app.js", Some("\"other\"")).await;
            assert_eq!(r.status(), 200);
            let page_etag = h(&get_with("/", None).await, header::ETAG).to_string();
            assert_eq!(get_with("/", Some(&page_etag)).await.status(), 304);
        });
    }

    #[test]
    fn an_unknown_asset_is_a_json_not_found() {
        rt().block_on(async {
            let r = get_with("/assets/secret.txt", None).await;
            assert_eq!(r.status(), 404);
            let v: serde_json::Value = serde_json::from_slice(&body_of(r).await).unwrap();
            assert_eq!(v["reason"], "NOT_FOUND");
            assert_eq!(
                get_with("/assets/..%2Fsrc%2Flib.rs", None).await.status(),
                404
            );
        });
    }

    #[test]
    fn versions_follow_content() {
        assert_eq!(version_of(b""), "cbf29ce484222325");
        assert_ne!(version_of(b"a"), version_of(b"b"));
        assert_eq!(version_of(b"a").len(), 16);
    }
}
