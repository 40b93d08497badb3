//! `GET /ws`: JSON messages over a WebSocket.
//!
//! Client → server: `{"op":"auth","token":…}`, `{"op":"subscribe","channel":C}`,
//! `{"op":"unsubscribe","channel":C}`, `{"op":"ping"}`. Private channels (after `auth`, users
//! only): `orders` (accepted, cancelled, amended, triggered, mass cancelled), `fills` (each fill
//! of the user's orders), `balances` (a snapshot on subscribe and after anything that changes
//! the user's balances or locks, plus deposit and withdrawal events). Public channels (`depth`,
//! `trades`, `kline:<interval>`, `ticker`, each with a `symbol`; no auth needed) come from the
//! web edge's copy of the gateway's market-data builder (synced when the first subscription
//! needs it; docs/architecture.md): a snapshot with `md_seq`, then ordered updates
//! ([`crate::public::Subs`]).
//!
//! Each connection has a bounded queue (`ws_queue_max` messages); the dispatcher never waits on
//! it. When a private message does not fit, the connection is closed with code 1008 and reason
//! `SLOW_CONSUMER` (a gap in private data is never silent). When a public update does not fit,
//! that subscription is conflated: its updates stop until the connection has sent a fresh
//! snapshot (the client skips queued updates with `md_seq` at or below the snapshot's).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use ringbook_engine::UserId;
use ringbook_gateway::server::Role;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::api::{balances_of, Shared};
use crate::edge::{WsConn, CH_BALANCES, CH_FILLS, CH_ORDERS};
use crate::error::{ApiError, WebCode};
use crate::json::{self as j, Named};
use crate::public::{Channel, PubSub};

/// Close code for a policy violation (RFC 6455).
const CLOSE_POLICY: u16 = 1008;
/// Close code when the server goes away.
const CLOSE_AWAY: u16 = 1001;

/// The largest message, and the largest frame, a client may send (a frame that announces more
/// is refused from its header: nothing more of it is read).
const MESSAGE_MAX: usize = 16 << 10;
/// What the library buffers for writing before it flushes.
const WRITE_BUFFER: usize = 128 << 10;
/// What the library may buffer at most for one connection: the largest message this server
/// sends (a depth snapshot of every level, [`LEVEL_JSON_MAX`] bytes a level at most, one level
/// per live order at most) on top of [`WRITE_BUFFER`]. Past it a write fails and the
/// connection ends; a client that does not read meets the send deadline
/// ([`crate::conns::SendDeadline`]) long before, and pings count against the address's rate
/// limit, so a ping flood cannot fill it with pongs.
pub(crate) fn write_buffer_max(orders_max: u32) -> usize {
    WRITE_BUFFER + (64 << 10) + orders_max as usize * LEVEL_JSON_MAX
}

/// An upper bound on one depth level's JSON (`[price,qty,count],` with 64-bit values).
const LEVEL_JSON_MAX: usize = 64;

/// The bounds every WebSocket upgrade gets, on both APIs: memory per connection stays
/// bounded whatever the client sends or fails to read.
pub(crate) fn bounded(ws: WebSocketUpgrade, write_max: usize) -> WebSocketUpgrade {
    ws.max_message_size(MESSAGE_MAX)
        .max_frame_size(MESSAGE_MAX)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(write_max)
}

/// A ping from the client counts against its address's rate limit like any message (the
/// library answers it before this code sees it): false when the limit refuses it, and the
/// connection is then closed with 1008 `RATE_LIMITED`.
pub(crate) fn ping_allowed(st: &crate::AppState, ip: std::net::IpAddr) -> bool {
    st.limits.address(ip, std::time::Instant::now()).is_ok()
}

/// The close frame for a refused ping.
pub(crate) fn ping_refused() -> Message {
    Message::Close(Some(CloseFrame {
        code: CLOSE_POLICY,
        reason: "RATE_LIMITED: pings count against the address's rate limit".into(),
    }))
}

/// A place among the `ws_conns_max` WebSocket connections (both APIs together). It is taken
/// before the upgrade, so upgrades racing each other cannot overshoot the cap, and given back
/// when the connection ends, however it ends (or when the upgrade never completes). It also
/// keeps the upgraded connection's place among the HTTP connections (`conns_max`,
/// `conns_per_addr`: [`crate::conns`]).
#[derive(Debug)]
pub(crate) struct WsSlot {
    edge: Arc<crate::edge::Edge>,
    _conn: Option<crate::conns::ConnPlace>,
}

impl WsSlot {
    /// A place, or `None` when every one is taken.
    pub(crate) fn take(
        edge: &Arc<crate::edge::Edge>,
        max: usize,
        conn: Option<crate::conns::ConnPlace>,
    ) -> Option<WsSlot> {
        edge.metrics
            .ws_connections
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max as u64).then_some(n + 1)
            })
            .ok()
            .map(|_| WsSlot {
                edge: edge.clone(),
                _conn: conn,
            })
    }
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.edge
            .metrics
            .ws_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A read from the client as a message to act on, or `None` when the connection ends; then
/// what the read deserves is sent where the socket still takes it: the peer's close is
/// answered (the library queued the reply; closing flushes it); a message over the size limit
/// is closed with 1009 `MESSAGE_TOO_BIG`, a text frame that is not UTF-8 with 1007
/// `INVALID_UTF8`, a protocol violation with 1002 `PROTOCOL_ERROR`; a connection already gone
/// gets nothing.
pub(crate) async fn received<S>(
    read: Option<Result<Message, axum::Error>>,
    sink: &mut S,
) -> Option<Message>
where
    S: futures_util::Sink<Message> + Unpin,
{
    match read {
        Some(Ok(Message::Close(_))) => end_read(sink, None).await,
        Some(Ok(msg)) => return Some(msg),
        Some(Err(e)) => end_read(sink, Some(&e)).await,
        None => {}
    }
    None
}

async fn end_read<S>(sink: &mut S, read: Option<&axum::Error>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    use tungstenite::error::Error as WsError;
    let Some(e) = read else {
        let _ = sink.close().await;
        return;
    };
    let cause = std::error::Error::source(e).and_then(|c| c.downcast_ref::<WsError>());
    let (code, reason) = match cause {
        Some(WsError::Capacity(_)) => (1009, "MESSAGE_TOO_BIG: messages are at most 16384 bytes"),
        Some(WsError::Utf8(_)) => (1007, "INVALID_UTF8: a text message must be UTF-8"),
        Some(WsError::Protocol(_)) => (1002, "PROTOCOL_ERROR"),
        _ => return,
    };
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

pub(crate) async fn upgrade(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    place: Option<axum::Extension<crate::conns::ConnPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(slot) = WsSlot::take(&st.edge, st.ws_conns_max, place.map(|p| p.0)) else {
        let m = &st.edge.metrics;
        m.inc(&m.ws_refused);
        return ApiError::web(
            WebCode::TooManyConnections,
            "too many WebSocket connections",
        )
        .retry_after(1)
        .into_response();
    };
    bounded(ws, st.ws_write_max).on_upgrade(move |socket| run(st, socket, peer.ip(), slot))
}

fn err(code: u16, reason: &str, message: &str) -> String {
    json!({"op": "error", "code": code, "reason": reason, "message": message}).to_string()
}

fn web_err(code: WebCode, message: &str) -> String {
    err(code as u16, code.name(), message)
}

/// Which public channel a name is, if any (`depth`, `trades`, `ticker`, `kline:<interval>`).
fn public_channel(c: &str) -> bool {
    matches!(c, "depth" | "trades" | "ticker") || c.starts_with("kline:")
}

async fn kill_wait(c: &Option<Arc<WsConn>>) {
    match c {
        Some(c) => c.kill.notified().await,
        None => std::future::pending().await,
    }
}

async fn expiry_wait(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn dirty_wait(c: &Option<Arc<WsConn>>) {
    match c {
        Some(c) if c.channels.load(Ordering::Relaxed) & CH_BALANCES != 0 => {
            c.balances_dirty.notified().await
        }
        _ => std::future::pending().await,
    }
}

async fn run(st: Shared, socket: WebSocket, ip: std::net::IpAddr, _slot: WsSlot) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Arc<str>>(st.ws_queue_max);
    let mut conn: Option<Arc<WsConn>> = None;
    // Public subscriptions: this connection's id in the registry, and its resync signal.
    let pub_id = st.ws_next.fetch_add(1, Ordering::Relaxed);
    let resync = Arc::new(Notify::new());
    // When the authenticating token expires, the connection ends (log in again, reconnect).
    let mut expires: Option<tokio::time::Instant> = None;
    let mut shutdown = st.shutdown.clone();
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_string().into(),
        }))
    };
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = received(msg, &mut sink).await else { break };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    // Pings are answered by the library; binary frames are not spoken here.
                    Message::Binary(_) => {
                        let _ = sink.send(Message::Text(web_err(WebCode::BadRequest, "send JSON text frames").into())).await;
                        continue;
                    }
                    Message::Ping(_) if !ping_allowed(&st, ip) => {
                        let _ = sink.send(ping_refused()).await;
                        break;
                    }
                    _ => continue,
                };
                // Every message counts against the address's (and, once authenticated, the
                // account's) rate limit, as an HTTP request does.
                let now = std::time::Instant::now();
                let limited = st.limits.address(ip, now).err().or_else(|| {
                    conn.as_ref().and_then(|c| st.limits.account(c.acct, now).err())
                });
                if let Some(l) = limited {
                    let e = crate::api::limited(&st, l);
                    if sink.send(Message::Text(err(e.code, e.reason, &e.message).into())).await.is_err() {
                        break;
                    }
                    continue;
                }
                let public = (pub_id, &resync);
                let reply = handle(&st, &text, &mut conn, &tx, &mut expires, public).await;
                if let Some(r) = reply {
                    if sink.send(Message::Text(r.into())).await.is_err() {
                        break;
                    }
                }
            }
            out = rx.recv() => {
                let Some(out) = out else { break };
                if conn.as_ref().is_some_and(|c| c.overflowed.load(Ordering::Acquire)) {
                    let _ = sink.send(close(CLOSE_POLICY, "SLOW_CONSUMER: private backlog overflowed")).await;
                    break;
                }
                if sink.send(Message::Text(out.to_string().into())).await.is_err() {
                    break;
                }
            }
            _ = resync.notified() => {
                // Conflated public subscriptions: a fresh snapshot each, sent now.
                if let Some(md) = &st.edge.md {
                    let snaps = st.edge.subs.resync(&st.edge.config, md, pub_id);
                    let mut ok = true;
                    for m in snaps {
                        if sink.send(Message::Text(m.into())).await.is_err() {
                            ok = false;
                            break;
                        }
                    }
                    if !ok {
                        break;
                    }
                }
            }
            _ = kill_wait(&conn) => {
                let why = if conn.as_ref().is_some_and(|c| c.revoked.load(Ordering::Acquire)) {
                    "TOKEN_REVOKED"
                } else {
                    "SLOW_CONSUMER: private backlog overflowed"
                };
                let _ = sink.send(close(CLOSE_POLICY, why)).await;
                break;
            }
            _ = dirty_wait(&conn) => {
                // Balances changed: one fresh snapshot, read through the sequenced path (not
                // after a logout ended the connection's token).
                if let Some(c) = conn.as_ref().filter(|c| !c.revoked.load(Ordering::Acquire)) {
                    let msg = balances_msg(&st, c.user).await;
                    if sink.send(Message::Text(msg.into())).await.is_err() {
                        break;
                    }
                }
            }
            _ = expiry_wait(expires) => {
                let _ = sink.send(close(CLOSE_POLICY, "TOKEN_EXPIRED")).await;
                break;
            }
            _ = shutdown.changed() => {
                let _ = sink.send(close(CLOSE_AWAY, "SHUTTING_DOWN")).await;
                break;
            }
        }
    }
    st.edge.subs.unsubscribe(pub_id, None);
    if let Some(c) = conn.take() {
        st.edge.ws_unregister(c.user, c.id);
    }
}

/// Subscribes to or unsubscribes from a public channel; the reply.
async fn public(
    st: &Shared,
    v: &Value,
    op: &str,
    name: &str,
    tx: &mpsc::Sender<Arc<str>>,
    pub_id: u64,
    resync: &Arc<Notify>,
) -> String {
    let Some(channel) = Channel::parse(name) else {
        return web_err(
            WebCode::BadRequest,
            "unknown kline interval (1m, 5m, 15m, 30m, 1h, 4h, 1d, 1w)",
        );
    };
    let Some(md) = &st.edge.md else {
        return web_err(
            WebCode::Unsupported,
            "this server runs without market data (--no-market-data)",
        );
    };
    // By name or by id, as the REST paths take it; replies name it.
    let named = if let Some(name) = v["symbol"].as_str() {
        Named::Name(name.to_string())
    } else if let Some(id) = v["symbol"].as_u64() {
        Named::Id(id)
    } else {
        return web_err(
            WebCode::BadRequest,
            "public channels need a symbol: its name or its id",
        );
    };
    let symbol = match j::symbol(&st.edge.config, &named) {
        Ok(s) => s,
        Err(e) => return err(e.code, e.reason, &e.message),
    };
    let sym = j::sym(&st.edge.config, symbol);
    if op == "unsubscribe" {
        let ok = st.edge.subs.unsubscribe(pub_id, Some((symbol, channel)));
        return json!({"op": op, "channel": name, "symbol": sym, "ok": ok}).to_string();
    }
    let sub = || PubSub {
        conn: pub_id,
        symbol,
        channel,
        tx: tx.clone(),
        stale: AtomicBool::new(false),
        resync: resync.clone(),
    };
    // The copy of the gateway's builder is made current first (a sync if the feed was off).
    match st.edge.subs.subscribe_fresh(&st.edge, md, sub).await {
        Ok(Ok(md_seq)) => {
            json!({"op": op, "channel": name, "symbol": sym, "ok": true, "md_seq": md_seq})
                .to_string()
        }
        Ok(Err(m)) => web_err(WebCode::BadRequest, m),
        Err(e) => err(e.code, e.reason, &e.message),
    }
}

async fn balances_msg(st: &Shared, user: u32) -> String {
    match balances_of(st, Role::User(user), UserId(user)).await {
        Ok((v, seq)) => {
            json!({"channel": "balances", "data": {"user": user, "balances": v, "seq": seq}})
                .to_string()
        }
        Err(e) => err(e.code, e.reason, &e.message),
    }
}

async fn handle(
    st: &Shared,
    text: &str,
    conn: &mut Option<Arc<WsConn>>,
    tx: &mpsc::Sender<Arc<str>>,
    expires: &mut Option<tokio::time::Instant>,
    (pub_id, resync): (u64, &Arc<Notify>),
) -> Option<String> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some(web_err(WebCode::BadRequest, "not JSON"));
    };
    let op = v["op"].as_str().unwrap_or("");
    match op {
        "ping" => Some(json!({"op": "pong", "ts": crate::token::now_secs()}).to_string()),
        "auth" => {
            if conn.is_some() {
                return Some(web_err(WebCode::BadRequest, "already authenticated"));
            }
            let Some(tok) = v["token"].as_str() else {
                return Some(web_err(WebCode::BadRequest, "auth needs a token"));
            };
            let claims = match st.tokens.verify(tok) {
                Ok(c) => c,
                Err(e) => {
                    st.edge.metrics.inc(&st.edge.metrics.bad_tokens);
                    return Some(err(e.code, e.reason, &e.message));
                }
            };
            let Some(Role::User(user)) = claims.role() else {
                return Some(err(
                    ringbook_engine::RejectCode::UserOnly.code(),
                    "USER_ONLY",
                    "private channels belong to user accounts",
                ));
            };
            let c = Arc::new(WsConn {
                id: st.ws_next.fetch_add(1, Ordering::Relaxed),
                user,
                acct: claims.acct,
                channels: AtomicU8::new(0),
                tx: tx.clone(),
                overflowed: AtomicBool::new(false),
                kill: Notify::new(),
                session: true,
                revoked: AtomicBool::new(false),
                balances_dirty: Notify::new(),
            });
            st.edge.ws_register(c.clone());
            // A logout between the check above and the registration would have missed this
            // connection: checked again now that a logout's sweep would find it.
            if st.tokens.is_revoked(&claims) {
                st.edge.ws_unregister(c.user, c.id);
                return Some(web_err(
                    WebCode::TokenRevoked,
                    "the token was ended by a logout: log in again",
                ));
            }
            *conn = Some(c);
            let left = claims.exp.saturating_sub(crate::token::now_secs());
            *expires = Some(tokio::time::Instant::now() + std::time::Duration::from_secs(left));
            Some(
                json!({"op": "auth", "ok": true, "user": user, "expires_at": claims.exp})
                    .to_string(),
            )
        }
        "subscribe" | "unsubscribe" => {
            let ch = v["channel"].as_str().unwrap_or("");
            let bit = match ch {
                "orders" => CH_ORDERS,
                "fills" => CH_FILLS,
                "balances" => CH_BALANCES,
                c if public_channel(c) => {
                    return Some(public(st, &v, op, c, tx, pub_id, resync).await);
                }
                _ => return Some(web_err(WebCode::BadRequest, "unknown channel")),
            };
            let Some(c) = conn.as_ref() else {
                return Some(web_err(
                    WebCode::Unauthorized,
                    "private channels need {\"op\":\"auth\"} first",
                ));
            };
            if op == "subscribe" {
                c.channels.fetch_or(bit, Ordering::AcqRel);
                if bit == CH_BALANCES {
                    // The first snapshot.
                    c.balances_dirty.notify_one();
                }
            } else {
                c.channels.fetch_and(!bit, Ordering::AcqRel);
            }
            Some(json!({"op": op, "channel": ch, "ok": true}).to_string())
        }
        _ => Some(web_err(
            WebCode::BadRequest,
            "unknown op (auth, subscribe, unsubscribe, ping)",
        )),
    }
}
