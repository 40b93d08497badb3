//! # ringbook-client
//!
//! A blocking client for ringbook's binary protocol (docs/overview.md §5, docs/protocol.md): connect, log
//! in, send, receive, heartbeat, and reconnect with retransmission of what was missed. The load
//! generator (`ringbook loadgen`) and the gateway's tests drive the server through it.
//!
//! The client remembers the highest server sequence number it has returned; [`Client::reconnect`]
//! logs in again with it, so the server retransmits everything after it, and [`Client::recv`]
//! drops any duplicate it sees.
//!
//! The wire codec is re-exported as [`protocol`] (from `ringbook-protocol`) and the engine's
//! types as [`engine`] (from `ringbook-engine`, built without its `pipeline` runtime), so this
//! crate is the only dependency a client needs, and it does not build the server.
//!
//! ```no_run
//! use ringbook_client::engine::prelude::*;
//! use ringbook_client::protocol::ServerMsg;
//! use ringbook_client::{Client, ClientError};
//!
//! let mut c = Client::connect("127.0.0.1:7700".parse().unwrap())?;
//! c.login("alice", "alice-demo", 1, false)?;
//! let order = NewOrder::limit(UserId(1), SymbolId(0), ClientOrderId(1), Side::Buy, Price(15_000), Qty(1));
//! c.send(&Command::NewOrder(order).into())?;
//! match c.recv()? {
//!     ServerMsg::Heartbeat => {}
//!     reply => println!("{reply:?}"),
//! }
//! # Ok::<(), ClientError>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringbook_engine::RejectCode;

pub use ringbook_engine as engine;
pub use ringbook_protocol as protocol;

use protocol::client::Login;
use protocol::marketdata::{self as md, Channel, DepthFrame, MdMsg, MdRequest};
pub use protocol::server::GatewayStats;
pub use protocol::ReferenceData;
pub use protocol::Role;
use protocol::{name32, name32_str, split_frame, ClientMsg, ServerMsg, FRAME_BYTES_MAX};
use ringbook_engine::marketdata::{ApplyError, Interval, L2Book, LevelChange};
use ringbook_engine::SymbolId;

const READ_BUF_BYTES: usize = 64 << 10;

/// What can go wrong on the client side.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed (or a read timed out: `WouldBlock` / `TimedOut`).
    Io(io::Error),
    /// The server refused the login: code and name.
    LoginRejected(u16, String),
    /// The server closed the session, giving this reason (code 0: logout).
    Disconnected(u16, String),
    /// The server sent bytes this client cannot decode.
    Protocol(RejectCode),
    /// The connection closed without a reason.
    Closed,
    /// `reconnect` before any `login`.
    NeverLoggedIn,
    /// The server refused a request this client waited for (e.g. [`Client::stats`]): code
    /// and name.
    Rejected(u16, String),
    /// Nothing answered the login within the login timeout ([`Client::set_login_timeout`]):
    /// the peer accepted the connection but is not (or no longer) a ringbook gateway.
    NoLoginReply(Duration),
    /// The server's reference data did not add up ([`Client::reference_data`]): what was
    /// wrong.
    BadReference(String),
    /// Nothing answered a request the gateway answers itself ([`Client::stats`],
    /// [`Client::reference_data`]) within the login timeout.
    NoReply(Duration),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::LoginRejected(c, n) => write!(f, "login rejected: {c} {n}"),
            ClientError::Disconnected(c, n) => write!(f, "disconnected by server: {c} {n}"),
            ClientError::Protocol(c) => write!(
                f,
                "undecodable server message: {} (is this a ringbook gateway's binary port?)",
                c.name()
            ),
            ClientError::Closed => write!(f, "connection closed"),
            ClientError::NeverLoggedIn => write!(f, "reconnect needs a previous login"),
            ClientError::Rejected(c, n) => write!(f, "request rejected: {c} {n}"),
            ClientError::NoLoginReply(t) => write!(
                f,
                "no answer to the login within {} ms (is this a ringbook gateway's binary port?)",
                t.as_millis()
            ),
            ClientError::BadReference(what) => write!(f, "inconsistent reference data: {what}"),
            ClientError::NoReply(t) => write!(f, "no reply within {} ms", t.as_millis()),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

/// What the server said when it accepted a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginInfo {
    /// Who the session acts as (user or operator, with its id, or market data).
    pub role: Role,
    /// Heartbeat interval in force.
    pub heartbeat_ms: u32,
    /// The session's highest sequence number at login; retransmitted messages follow.
    pub last_seq: u64,
}

/// A blocking connection to a ringbook server.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    last_seq: u64,
    /// The session's last sequence number when the latest login was accepted: messages up to
    /// it are retransmissions of what the session sent before, never a reply to a request
    /// made since.
    login_last_seq: u64,
    /// Messages read while waiting for a reply ([`Client::await_reply`]) that were not part of
    /// it: handed out by [`Client::recv_any`] before anything newer.
    held: VecDeque<Received>,
    login: Option<Login>,
    /// How long a login waits for its answer.
    login_timeout: Duration,
    frame: [u8; FRAME_BYTES_MAX],
}

/// How long a login waits for its answer unless told otherwise: far above a gateway's answer
/// (microseconds; its own `login_timeout` for a silent client is 2 s), so only a peer that is
/// not answering at all runs into it.
pub const LOGIN_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    /// Connects (TCP_NODELAY on).
    pub fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            addr,
            stream,
            buf: vec![0u8; READ_BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            last_seq: 0,
            login_last_seq: 0,
            held: VecDeque::new(),
            login: None,
            login_timeout: LOGIN_REPLY_TIMEOUT,
            frame: [0u8; FRAME_BYTES_MAX],
        })
    }

    /// Wraps a stream the caller connected (e.g. from a chosen source address); TCP_NODELAY
    /// is set. [`Client::reconnect`] connects to the same peer address the usual way.
    pub fn from_stream(stream: TcpStream) -> Result<Client, ClientError> {
        stream.set_nodelay(true)?;
        Ok(Client {
            addr: stream.peer_addr()?,
            stream,
            buf: vec![0u8; READ_BUF_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            last_seq: 0,
            login_last_seq: 0,
            held: VecDeque::new(),
            login: None,
            login_timeout: LOGIN_REPLY_TIMEOUT,
            frame: [0u8; FRAME_BYTES_MAX],
        })
    }

    /// Logs in as `login` for session `session_id` and waits for the answer.
    pub fn login(
        &mut self,
        login: &str,
        password: &str,
        session_id: u32,
        cancel_on_disconnect: bool,
    ) -> Result<LoginInfo, ClientError> {
        let l = Login {
            login: name32(login),
            password: name32(password),
            session_id,
            last_seen_seq: self.last_seq,
            heartbeat_ms: 0,
            cancel_on_disconnect,
        };
        self.login = Some(l);
        self.send_login(l)
    }

    /// Logs in with an explicit heartbeat interval (ms) and starting sequence number.
    pub fn login_with(&mut self, l: Login) -> Result<LoginInfo, ClientError> {
        self.login = Some(l);
        self.last_seq = l.last_seen_seq;
        self.send_login(l)
    }

    /// How long [`Client::login`] (and `login_with`, `reconnect`) waits for the server's answer
    /// before failing with [`ClientError::NoLoginReply`] (default [`LOGIN_REPLY_TIMEOUT`]).
    pub fn set_login_timeout(&mut self, timeout: Duration) {
        self.login_timeout = timeout;
    }

    fn send_login(&mut self, l: Login) -> Result<LoginInfo, ClientError> {
        self.send(&ClientMsg::Login(l))?;
        // The login timeout governs the wait; the caller's read timeout is restored after.
        let before = self.stream.read_timeout()?;
        let answer = self.await_login();
        self.stream.set_read_timeout(before)?;
        answer
    }

    fn await_login(&mut self) -> Result<LoginInfo, ClientError> {
        let deadline = std::time::Instant::now() + self.login_timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            // From the socket: messages kept for `recv` stay kept.
            let msg = match timed_out_is_none(self.read_session())? {
                Some(msg) => msg,
                None => return Err(ClientError::NoLoginReply(self.login_timeout)),
            };
            match msg {
                ServerMsg::LoginAccepted {
                    role,
                    heartbeat_ms,
                    last_seq,
                    ..
                } => {
                    self.login_last_seq = last_seq;
                    return Ok(LoginInfo {
                        role,
                        heartbeat_ms,
                        last_seq,
                    });
                }
                ServerMsg::LoginRejected { code, name } => {
                    return Err(ClientError::LoginRejected(
                        code,
                        name32_str(&name).to_string(),
                    ))
                }
                _ if left.is_zero() => return Err(ClientError::NoLoginReply(self.login_timeout)),
                _ => continue,
            }
        }
    }

    /// Opens a new connection and logs in to the same session, asking for every message after
    /// the last one received; those arrive through [`Client::recv`] before new ones.
    pub fn reconnect(&mut self) -> Result<LoginInfo, ClientError> {
        let mut l = self.login.ok_or(ClientError::NeverLoggedIn)?;
        let stream = TcpStream::connect(self.addr)?;
        stream.set_nodelay(true)?;
        self.stream = stream;
        self.start = 0;
        self.end = 0;
        l.last_seen_seq = self.last_seq;
        self.send_login(l)
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        let n = msg.encode(&mut self.frame);
        self.stream.write_all(&self.frame[..n])?;
        Ok(())
    }

    /// Encodes `msg` into `out` (for callers batching several frames into one write).
    pub fn encode_into(msg: &ClientMsg, out: &mut Vec<u8>) {
        let mut f = [0u8; FRAME_BYTES_MAX];
        let n = msg.encode(&mut f);
        out.extend_from_slice(&f[..n]);
    }

    /// Writes raw bytes (tests of hostile input; batched frames).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Asks for the gateway's counters (an operator session only; a user session gets a
    /// `Rejected` with `OPERATOR_ONLY`) and waits for the reply, at most the login timeout
    /// ([`ClientError::NoReply`]). Other messages that arrive meanwhile are kept, in order, for
    /// [`Client::recv`] and [`Client::recv_any`].
    pub fn stats(&mut self, request_id: u64) -> Result<GatewayStats, ClientError> {
        self.send(&ClientMsg::Stats { request_id })?;
        self.await_reply(|msg| match *msg {
            ServerMsg::Stats {
                request_id: r,
                stats,
                ..
            } if r == request_id => Reply::Done(Ok(stats)),
            _ => Reply::refusal(msg, protocol::client::msg_type::STATS),
        })
    }

    /// Asks for the server's reference data — its currencies and symbols, as configured — page
    /// by page (docs/protocol.md, "Reference data"), and waits for all of it, each page at
    /// most the login timeout ([`ClientError::NoReply`]). Any session may ask. Other messages
    /// that arrive meanwhile are kept, in order, for [`Client::recv`] and
    /// [`Client::recv_any`]; retransmissions of the session's earlier messages are never taken
    /// for the reply. A server that publishes none (a gateway embedded without it, or one older
    /// than the request, which refuses it as `UNKNOWN_MESSAGE_TYPE`) gives empty lists.
    pub fn reference_data(&mut self, request_id: u64) -> Result<ReferenceData, ClientError> {
        let mut data = ReferenceData::default();
        let mut first = 0u32;
        loop {
            self.send(&ClientMsg::ReferenceData { request_id, first })?;
            let end = self.await_reply(|msg| match *msg {
                ServerMsg::ReferenceEnd {
                    request_id: r,
                    currencies,
                    symbols,
                    next,
                    ..
                } if r == request_id => Reply::Done(Ok(Some((currencies, symbols, next)))),
                ServerMsg::CurrencyInfo { request_id: r, .. }
                | ServerMsg::SymbolInfo { request_id: r, .. }
                    if r == request_id =>
                {
                    match data.take(msg) {
                        Ok(_) => Reply::Part,
                        Err(e) => Reply::Done(Err(ClientError::BadReference(e.to_string()))),
                    }
                }
                // A gateway older than the request (protocol 6 before reference data) does
                // not know it: it has none to give.
                ServerMsg::Rejected {
                    ref_msg_type: protocol::client::msg_type::REFERENCE_DATA,
                    code,
                    ..
                } if code == RejectCode::UnknownMessageType.code() => Reply::Done(Ok(None)),
                _ => Reply::refusal(msg, protocol::client::msg_type::REFERENCE_DATA),
            })?;
            let Some((currencies, symbols, next)) = end else {
                return Ok(ReferenceData::default());
            };
            let have = data.len() as u32;
            if next != have {
                return Err(ClientError::BadReference(format!(
                    "the next page starts at {next}, but {have} entries came"
                )));
            }
            if u64::from(next) >= u64::from(currencies) + u64::from(symbols) {
                if (currencies, symbols)
                    != (data.currencies.len() as u32, data.symbols.len() as u32)
                {
                    return Err(ClientError::BadReference(format!(
                        "the server counts {currencies} currencies and {symbols} symbols, but \
                         sent {} and {}",
                        data.currencies.len(),
                        data.symbols.len()
                    )));
                }
                return Ok(data);
            }
            if next == first {
                return Err(ClientError::BadReference(format!(
                    "an empty page at entry {next}, before the end"
                )));
            }
            first = next;
        }
    }

    /// Waits, at most the login timeout, for the reply to a request the gateway answers
    /// itself: `take` is shown each session message sent since the latest login (not the
    /// retransmissions of earlier ones), and says whether it ends the reply, is part of it, or
    /// is another message. Other messages, and everything else read meanwhile, are kept for
    /// [`Client::recv_any`] in the order they came.
    fn await_reply<T>(
        &mut self,
        mut take: impl FnMut(&ServerMsg) -> Reply<T>,
    ) -> Result<T, ClientError> {
        let before = self.stream.read_timeout()?;
        let deadline = std::time::Instant::now() + self.login_timeout;
        let result = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Err(ClientError::NoReply(self.login_timeout));
            }
            if let Err(e) = self.stream.set_read_timeout(Some(left)) {
                break Err(e.into());
            }
            let r = match timed_out_is_none(self.read_any()) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => break Err(e),
            };
            if let Received::Session(msg) = r {
                if msg.seq() == 0 || msg.seq() > self.login_last_seq {
                    match take(&msg) {
                        Reply::Done(result) => break result,
                        Reply::Part => continue,
                        Reply::Other => {}
                    }
                }
            }
            // The server's heartbeats say nothing the caller needs later.
            if r != Received::Session(ServerMsg::Heartbeat) {
                self.held.push_back(r);
            }
        };
        self.stream.set_read_timeout(before)?;
        result
    }

    /// Sends a heartbeat.
    pub fn heartbeat(&mut self) -> Result<(), ClientError> {
        self.send(&ClientMsg::Heartbeat)
    }

    /// Logs out (the server answers with a `Disconnect` of code 0 and closes).
    pub fn logout(&mut self) -> Result<(), ClientError> {
        self.send(&ClientMsg::Logout)
    }

    /// The highest server sequence number received, including messages read while waiting
    /// for a reply and kept for [`Client::recv`] (resume from it only once those are taken).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sets (or clears) the read timeout used by [`Client::recv`].
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(t)?;
        Ok(())
    }

    /// The socket (for shutdown in tests, or polling).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Receives the next session message, blocking. Heartbeats are returned too; duplicates of
    /// sequenced messages already returned (after a reconnect) are skipped; market-data
    /// messages are skipped (use [`Client::recv_any`] to see them). A `Disconnect` becomes
    /// [`ClientError::Disconnected`].
    pub fn recv(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            if let Received::Session(msg) = self.recv_any()? {
                return Ok(msg);
            }
        }
    }

    /// Subscribes to one channel of one symbol (`interval` only matters for candles); the
    /// server acknowledges with [`MdMsg::Subscribed`], then sends the snapshot and updates.
    pub fn subscribe(
        &mut self,
        request_id: u64,
        symbol: SymbolId,
        channel: Channel,
        interval: Interval,
    ) -> Result<(), ClientError> {
        self.md_request(MdRequest {
            request_id,
            symbol,
            channel,
            interval,
            subscribe: true,
        })
    }

    /// Unsubscribes from one channel of one symbol.
    pub fn unsubscribe(
        &mut self,
        request_id: u64,
        symbol: SymbolId,
        channel: Channel,
        interval: Interval,
    ) -> Result<(), ClientError> {
        self.md_request(MdRequest {
            request_id,
            symbol,
            channel,
            interval,
            subscribe: false,
        })
    }

    fn md_request(&mut self, req: MdRequest) -> Result<(), ClientError> {
        let n = req.encode(&mut self.frame);
        self.stream.write_all(&self.frame[..n])?;
        Ok(())
    }

    /// Receives the next message of either kind, blocking: a session message (as
    /// [`Client::recv`] would return it) or a market-data message.
    pub fn recv_any(&mut self) -> Result<Received, ClientError> {
        if let Some(r) = self.held.pop_front() {
            return Ok(r);
        }
        self.read_any()
    }

    /// The next session message from the socket (market data read meanwhile is dropped).
    fn read_session(&mut self) -> Result<ServerMsg, ClientError> {
        loop {
            if let Received::Session(msg) = self.read_any()? {
                return Ok(msg);
            }
        }
    }

    /// The next message from the socket (not from those [`Client::await_reply`] kept).
    fn read_any(&mut self) -> Result<Received, ClientError> {
        loop {
            if let Some(msg) = self.try_decode()? {
                let msg = match msg {
                    Received::MarketData(m) => return Ok(Received::MarketData(m)),
                    Received::Session(msg) => msg,
                };
                let seq = msg.seq();
                if seq != 0 {
                    if seq <= self.last_seq {
                        continue;
                    }
                    self.last_seq = seq;
                }
                if let ServerMsg::Disconnect { code, name } = msg {
                    return Err(ClientError::Disconnected(
                        code,
                        name32_str(&name).to_string(),
                    ));
                }
                return Ok(Received::Session(msg));
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.stream.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.end += n;
        }
    }

    /// Like [`Client::recv`], but `Ok(None)` when nothing arrives within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<ServerMsg>, ClientError> {
        self.stream.set_read_timeout(Some(timeout))?;
        let r = self.recv();
        self.stream.set_read_timeout(None)?;
        timed_out_is_none(r)
    }

    /// Like [`Client::recv_any`], but `Ok(None)` when nothing arrives within `timeout`.
    pub fn recv_any_timeout(&mut self, timeout: Duration) -> Result<Option<Received>, ClientError> {
        self.stream.set_read_timeout(Some(timeout))?;
        let r = self.recv_any();
        self.stream.set_read_timeout(None)?;
        timed_out_is_none(r)
    }

    fn try_decode(&mut self) -> Result<Option<Received>, ClientError> {
        match split_frame(&self.buf[self.start..self.end]) {
            Ok(Some((h, body))) => {
                let msg = if md::is_server_type(h.msg_type) {
                    Received::MarketData(
                        MdMsg::decode(h.msg_type, h.version, body)
                            .map_err(ClientError::Protocol)?,
                    )
                } else {
                    Received::Session(
                        ServerMsg::decode(h.msg_type, h.version, body)
                            .map_err(ClientError::Protocol)?,
                    )
                };
                self.start += h.frame_len;
                Ok(Some(msg))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ClientError::Protocol(e.code())),
        }
    }
}

/// A read timeout becomes `Ok(None)`.
fn timed_out_is_none<T>(r: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(ClientError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What a message is to a reply being awaited ([`Client::await_reply`]).
enum Reply<T> {
    /// Not part of it.
    Other,
    /// Part of it; more follows.
    Part,
    /// The end of it: its result.
    Done(Result<T, ClientError>),
}

impl<T> Reply<T> {
    /// A `Rejected` of the awaited request's message type ends the reply with
    /// [`ClientError::Rejected`]; any other message is not part of it.
    fn refusal(msg: &ServerMsg, msg_type: u16) -> Reply<T> {
        match *msg {
            ServerMsg::Rejected {
                ref_msg_type,
                code,
                name,
                ..
            } if ref_msg_type == msg_type => Reply::Done(Err(ClientError::Rejected(
                code,
                name32_str(&name).to_string(),
            ))),
            _ => Reply::Other,
        }
    }
}

/// A message from [`Client::recv_any`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Received {
    /// A session message (sequenced or session control).
    Session(ServerMsg),
    /// A market-data message (unsequenced).
    MarketData(MdMsg),
}

/// A subscriber's copy of one symbol's depth, fed with the `MdDepth` frames of a depth
/// subscription: a snapshot (frames flagged `DEPTH_SNAPSHOT`) starts it, updates and
/// conflated updates move it on; a message takes effect at its `DEPTH_END` frame. An
/// `MdSubscribed` for the symbol's depth (a subscribe or an unsubscribe) ends any message in
/// progress unfinished: pass it to [`DepthBook::subscribed`] so its frames are dropped.
#[derive(Clone, Debug, Default)]
pub struct DepthBook {
    book: Option<L2Book>,
    partial: Vec<LevelChange>,
    partial_snapshot: bool,
}

impl DepthBook {
    /// Nothing yet: waiting for a snapshot.
    pub fn new() -> DepthBook {
        DepthBook::default()
    }

    /// Applies one frame. `Ok(Some(md_seq))` when a message completed and the book is now at
    /// `md_seq`; `Ok(None)` mid-message (or before the first snapshot); a gap is an error
    /// (resubscribe: the next snapshot starts the book afresh).
    pub fn apply(&mut self, f: &DepthFrame) -> Result<Option<u64>, ApplyError> {
        let snapshot = f.flags & md::DEPTH_SNAPSHOT != 0;
        if self.partial.is_empty() {
            self.partial_snapshot = snapshot;
        }
        self.partial.extend_from_slice(f.levels());
        if f.flags & md::DEPTH_END == 0 {
            return Ok(None);
        }
        let levels = std::mem::take(&mut self.partial);
        if self.partial_snapshot {
            self.book = Some(L2Book::from_snapshot(f.last, &levels));
            return Ok(Some(f.last));
        }
        match self.book.as_mut() {
            None => Ok(None),
            Some(b) => b.apply(f.first, f.last, &levels).map(|_| Some(b.md_seq())),
        }
    }

    /// The book, once a snapshot arrived.
    pub fn book(&self) -> Option<&L2Book> {
        self.book.as_ref()
    }

    /// An `MdSubscribed` for this symbol's depth arrived: the server sends no more frames of a
    /// message it had begun (a snapshot cut short by a resubscribe, say), so they are dropped;
    /// the book stays as it is until the next message (a new subscription's snapshot replaces
    /// it). Kept, such frames would be merged into the next message, and a level gone since
    /// would stay in the book (a red-team finding).
    pub fn subscribed(&mut self) {
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbook_engine::{Price, Qty, Side};
    use std::net::TcpListener;

    fn depth_frame(flags: u8, first: u64, last: u64, levels: &[(i64, u64)]) -> DepthFrame {
        let mut f = DepthFrame {
            symbol: SymbolId(0),
            flags,
            first,
            last,
            ts: 0,
            count: levels.len() as u8,
            levels: Default::default(),
        };
        for (slot, &(price, qty)) in f.levels.iter_mut().zip(levels) {
            *slot = LevelChange {
                side: Side::Buy,
                price: Price(price),
                qty: Qty(qty),
                count: 1,
            };
        }
        f
    }

    /// A snapshot cut short by a resubscribe (its frames sent, its END never) and the next
    /// subscription's snapshot: the book is the second snapshot alone, not the two merged.
    #[test]
    fn a_depth_message_ended_by_a_subscription_ack_is_dropped() {
        let mut book = DepthBook::new();
        let cut = depth_frame(md::DEPTH_SNAPSHOT, 0, 7, &[(7000, 1), (6900, 2)]);
        assert_eq!(book.apply(&cut), Ok(None));
        book.subscribed();
        let fresh = depth_frame(md::DEPTH_SNAPSHOT | md::DEPTH_END, 0, 8, &[(6900, 2)]);
        assert_eq!(book.apply(&fresh), Ok(Some(8)));
        assert_eq!(
            book.book().unwrap().levels(Side::Buy),
            vec![(Price(6900), Qty(2), 1)]
        );
        // Without the acknowledgement's reset the cut frames would have been merged in.
        let mut merged = DepthBook::new();
        merged.apply(&cut).unwrap();
        merged.apply(&fresh).unwrap();
        assert_eq!(merged.book().unwrap().levels(Side::Buy).len(), 2);
    }

    /// A peer that accepts and then says nothing: the login fails with `NoLoginReply` (the
    /// tools built on this client hung forever on one: a red-team finding); one that answers
    /// with something else (an HTTP server) fails as undecodable, naming the likely cause.
    #[test]
    fn a_login_to_a_peer_that_is_not_a_gateway_fails_instead_of_hanging() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (silent, _) = listener.accept().unwrap();
            let (mut http, _) = listener.accept().unwrap();
            http.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
            (silent, http)
        });
        let mut c = Client::connect(addr).unwrap();
        c.set_login_timeout(Duration::from_millis(200));
        let mine = Some(Duration::from_secs(7));
        c.set_read_timeout(mine).unwrap();
        let e = c.login("alice", "alice-demo", 1, false).unwrap_err();
        assert!(matches!(e, ClientError::NoLoginReply(_)), "{e}");
        assert_eq!(
            c.stream().read_timeout().unwrap(),
            mine,
            "the caller's timeout is kept"
        );
        assert!(
            e.to_string()
                .contains("no answer to the login within 200 ms"),
            "{e}"
        );
        let mut c = Client::connect(addr).unwrap();
        let e = c.login("alice", "alice-demo", 1, false).unwrap_err();
        assert!(matches!(e, ClientError::Protocol(_)), "{e}");
        assert!(e.to_string().contains("ringbook gateway"), "{e}");
        drop(peer.join().unwrap());
    }
}
