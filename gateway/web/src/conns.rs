//! The web edge's own accept loop: which TCP connections it takes, and how long a connection
//! may take to send a request's header.
//!
//! - **At most `conns_max` connections at once, and at most `conns_per_addr` from one source
//!   address** (WebSocket connections included: they are HTTP connections that were upgraded).
//!   A connection beyond either is answered at once, before anything is read from it, with a
//!   `503 TOO_MANY_CONNECTIONS` in the API's error shape and `Connection: close`, and closed.
//!   So one address cannot take every slot (or every WebSocket slot) from the others.
//! - **A request's header must arrive within `header_timeout_ms`** of the connection opening or
//!   of the previous response (hyper's header read timeout); a connection that sends it slower,
//!   or sits idle between requests longer, is closed. A connection trickling a header byte by
//!   byte (slowloris) is held for that long at most.
//!
//! - **A connection that takes nothing of what it is sent for `send_timeout_ms`** (a client
//!   that pipelines requests and never reads the answers, a WebSocket subscriber that stopped
//!   reading) is closed ([`SendDeadline`]).
//! - A request's header must fit a read buffer of [`HEADER_BYTES_MAX`] (431 beyond; hyper's
//!   limit lets up to ~48 KiB through, depending on how the bytes arrive).
//! - **A request's body must arrive whole within `body_timeout_ms`** of its header: the edge
//!   reads it before any handler runs (`api::edge_layer`); a slower one (a slow POST) is
//!   answered 408 `BODY_TIMEOUT` and the connection closed.
//!
//! - **A connection the server ends is closed gently** ([`Gentle`], [`linger`]): shut down for
//!   writing, then drained, so the client's unread bytes cannot turn the close into a reset
//!   that loses the answer or close frame sent last.
//!
//! A connection's place is a shared guard ([`ConnPlace`]) held by its task and put in each of
//! its requests; a WebSocket upgrade moves a copy into the WebSocket's task. So a connection
//! is counted until its socket is dropped, however it ends, upgraded or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ringbook_gateway::server::limits::{source_key, unacknowledged};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::error::{ApiError, WebCode};

/// The most a request's header may take in the read buffer.
pub(crate) const HEADER_BYTES_MAX: usize = 32 << 10;

/// A connection's socket whose writes fail once they have made no progress for `limit`: the
/// clock starts when a write (or flush) first finds the socket full and stops at the next one
/// that goes through. Reads pass through untouched.
pub(crate) struct SendDeadline<T> {
    io: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> SendDeadline<T> {
    pub(crate) fn new(io: T, limit: Duration) -> SendDeadline<T> {
        SendDeadline {
            io,
            limit,
            stalled: None,
        }
    }

    /// After a write found no room: whether the deadline has passed (then the error to give).
    fn stalled(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Error> {
        use std::future::Future;
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of what it was sent within send_timeout_ms",
            )),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for SendDeadline<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

/// A write's outcome through the deadline: progress resets it, no room starts or checks it.
macro_rules! through_deadline {
    ($self:ident, $cx:ident, $op:expr) => {
        match $op {
            std::task::Poll::Ready(r) => {
                $self.stalled = None;
                std::task::Poll::Ready(r)
            }
            std::task::Poll::Pending => $self.stalled($cx).map(Err),
        }
    };
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for SendDeadline<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = &mut *self;
        through_deadline!(me, cx, std::pin::Pin::new(&mut me.io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = &mut *self;
        through_deadline!(
            me,
            cx,
            std::pin::Pin::new(&mut me.io).poll_write_vectored(cx, bufs)
        )
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let me = &mut *self;
        through_deadline!(me, cx, std::pin::Pin::new(&mut me.io).poll_flush(cx))
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// How often a lingering socket checks whether the client has taken what it was sent, and
/// how long it waits at least for the client to close once it has.
const LINGER_TICK: Duration = Duration::from_secs(1);
/// How long a socket lingers at most, however slowly its client keeps reading.
const LINGER_MAX: Duration = Duration::from_secs(60);
/// The least a lingering client may take nothing before it is reset (whatever
/// `send_timeout_ms`, a round trip must fit), and what a refused one gets (its answer is a
/// few hundred bytes).
const LINGER_STALL_MIN: Duration = Duration::from_secs(2);
/// How much a lingering socket reads and discards, at most.
const LINGER_BYTES: usize = 4 << 20;
/// How many connections the server ended may linger at once, and how many refused connections
/// (503 before anything was read); past either, a socket is closed at once. Two pools, so a
/// flood of refused connections cannot take the places of served connections' closes. They
/// hold descriptors beyond `conns_max` (serve's open-file headroom covers them:
/// [`crate::LINGER_SOCKETS_MAX`]).
const LINGER_CLOSES_MAX: usize = 128;
const LINGER_REFUSALS_MAX: usize = 32;
/// How many of either pool's places one source (an IPv4 address, an IPv6 /64) may hold: a
/// client that has the server close connection after connection and never closes its side
/// cannot keep every place.
const LINGER_PER_SOURCE: usize = 8;
const _: () = assert!(LINGER_CLOSES_MAX + LINGER_REFUSALS_MAX == crate::LINGER_SOCKETS_MAX);

/// Places held per source (an IPv4 address, an IPv6 /64), each taken up to a cap; the table
/// holds only sources that hold one.
#[derive(Debug, Default)]
pub(crate) struct PerSource(Mutex<HashMap<IpAddr, usize>>);

impl PerSource {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of `source`'s places if it holds fewer than `max`.
    fn take(&self, source: IpAddr, max: usize) -> bool {
        let mut map = self.map();
        let n = map.entry(source).or_insert(0);
        let ok = *n < max;
        *n += usize::from(ok);
        if *n == 0 {
            map.remove(&source);
        }
        ok
    }

    /// Gives one of `source`'s places back.
    fn give(&self, source: IpAddr) {
        let mut map = self.map();
        if let Some(n) = map.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                map.remove(&source);
            }
        }
    }

    /// Places `source` holds.
    #[cfg(test)]
    fn held(&self, source: IpAddr) -> usize {
        self.map().get(&source).copied().unwrap_or(0)
    }

    /// Sources holding a place.
    #[cfg(test)]
    fn sources(&self) -> usize {
        self.map().len()
    }
}

/// Which pool a lingering socket counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// A connection the server served and ended.
    Close = 0,
    /// A connection refused by a cap.
    Refusal = 1,
}

/// Lingering sockets now, per [`Pool`], and how closes ended otherwise.
#[derive(Debug, Default)]
pub(crate) struct Lingering {
    now: [AtomicUsize; 2],
    /// Places held per source, both pools together.
    by_source: PerSource,
    /// Closed with a reset: the client took nothing of what it was sent for `send_timeout_ms`
    /// (at least [`LINGER_STALL_MIN`]), or still had some of it after [`LINGER_MAX`] or
    /// [`LINGER_BYTES`] read.
    reset: AtomicU64,
    /// Closed at once, without lingering: the pool, or the source's share of it, was full.
    unlingered: AtomicU64,
}

impl Lingering {
    /// Sockets lingering now, both pools.
    pub(crate) fn count(&self) -> usize {
        self.now.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

/// A connection's TCP socket that closes gently: dropped while the client has not closed its
/// side (the server ended the connection: a `Connection: close` answer, a WebSocket close
/// frame, a timeout), it is not closed at once but shut down for writing and drained
/// ([`linger`]). Closed at once, a socket with unread input, or one that input reaches
/// afterwards (a client still sending its body or its pings), is reset by the kernel, and a
/// reset can cost the client the answer or close frame it was sent last.
pub(crate) struct Gentle {
    tcp: Option<tokio::net::TcpStream>,
    conns: Arc<Conns>,
    /// The client's source ([`source_key`]).
    source: IpAddr,
    /// The client closed its side (a read found the end).
    peer_closed: bool,
}

impl Gentle {
    pub(crate) fn new(tcp: tokio::net::TcpStream, conns: Arc<Conns>, source: IpAddr) -> Gentle {
        Gentle {
            tcp: Some(tcp),
            conns,
            source,
            peer_closed: false,
        }
    }

    fn tcp(&mut self) -> std::pin::Pin<&mut tokio::net::TcpStream> {
        std::pin::Pin::new(self.tcp.as_mut().expect("taken only on drop"))
    }
}

impl Drop for Gentle {
    fn drop(&mut self) {
        if let Some(tcp) = self.tcp.take() {
            // A client that closed its side has nothing more to send; it still lingers while
            // it has not taken everything (a half-closed client that never reads is reset).
            if !self.peer_closed || unacknowledged(&tcp).is_some_and(|q| q > 0) {
                linger(&self.conns, tcp, Pool::Close, self.source);
            }
        }
    }
}

impl tokio::io::AsyncRead for Gentle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.tcp().poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.peer_closed = true;
        }
        r
    }
}

impl tokio::io::AsyncWrite for Gentle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.tcp().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.tcp().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.tcp().poll_shutdown(cx)
    }
}

/// Closes `tcp` gently (a lingering close, as web servers do): shut down for writing, so what
/// was sent goes out followed by the end, then read and discard what the client still sends
/// until it closes too. Every [`LINGER_TICK`] it looks at what the client has not acknowledged
/// yet ([`unacknowledged`]): nothing left and nothing read since the last look, it closes (the
/// client has it all; an idle client that keeps the connection open is not waited for); still
/// shrinking, it waits on (a slow reader gets its whole answer); unchanged for
/// `send_timeout_ms` (at least [`LINGER_STALL_MIN`]; a refused connection gets just that), it
/// resets the connection (`SO_LINGER` 0): that client is not reading, and a plain close would
/// leave the kernel holding what it never took for as long as the client keeps its window
/// shut. A client that closed its side is watched the same way until it has taken
/// everything. [`LINGER_MAX`] and [`LINGER_BYTES`] read bound it all. Each [`Pool`] lets only
/// so many sockets linger at once, and one `source` only [`LINGER_PER_SOURCE`] of both
/// together; past that (or outside a runtime) `tcp` is closed at once.
pub(crate) fn linger(conns: &Arc<Conns>, tcp: tokio::net::TcpStream, pool: Pool, source: IpAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let max = match pool {
        Pool::Close => LINGER_CLOSES_MAX,
        Pool::Refusal => LINGER_REFUSALS_MAX,
    };
    let unlingered = || conns.lingering.unlingered.fetch_add(1, Ordering::Relaxed);
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        unlingered();
        return;
    };
    /// Gives the places back however the task ends (done, cancelled at shutdown, or never
    /// started).
    struct Counted(Arc<Conns>, Option<Pool>, IpAddr);
    impl Drop for Counted {
        fn drop(&mut self) {
            let l = &self.0.lingering;
            l.by_source.give(self.2);
            if let Some(pool) = self.1 {
                l.now[pool as usize].fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    // The source's share first (both pools together), then the pool's place.
    if !conns.lingering.by_source.take(source, LINGER_PER_SOURCE) {
        unlingered();
        return;
    }
    let mut counted = Counted(conns.clone(), None, source);
    if conns.lingering.now[pool as usize]
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .is_err()
    {
        unlingered();
        return;
    }
    counted.1 = Some(pool);
    let stall = match pool {
        Pool::Close => conns.stall.max(LINGER_STALL_MIN),
        Pool::Refusal => LINGER_STALL_MIN,
    };
    rt.spawn(async move {
        let counted = counted;
        let mut tcp = tcp;
        if tcp.shutdown().await.is_err() {
            return;
        }
        let start = tokio::time::Instant::now();
        let mut check = start + LINGER_TICK;
        let mut left = unacknowledged(&tcp).unwrap_or(usize::MAX);
        let mut moved = start;
        let mut buf = vec![0u8; 64 << 10];
        let mut read = 0;
        // The client closed its side: nothing more to read, only to see it take the rest.
        let mut eof = false;
        // Bytes read from the client since the last look.
        let mut fresh = 0;
        let reset = loop {
            if eof {
                tokio::time::sleep_until(check).await;
            } else {
                match tokio::time::timeout_at(check, tcp.read(&mut buf)).await {
                    Ok(Ok(0)) => eof = true,
                    // The connection is gone.
                    Ok(Err(_)) => break false,
                    Ok(Ok(n)) => {
                        read += n;
                        fresh += n;
                        if read < LINGER_BYTES {
                            continue;
                        }
                    }
                    Err(_) => {}
                }
                if eof && tokio::time::Instant::now() < check {
                    // Its close: done if it has taken everything, else watch it at the tick.
                    if unacknowledged(&tcp).is_none_or(|q| q == 0) {
                        break false;
                    }
                    continue;
                }
            }
            let now = tokio::time::Instant::now();
            check = now + LINGER_TICK;
            let Some(q) = unacknowledged(&tcp) else {
                break false;
            };
            // Everything taken, and the client has stopped sending (or closed): done. One
            // still sending is drained on, so its bytes cannot turn the close into a reset.
            if q == 0 && (fresh == 0 || eof) {
                break false;
            }
            fresh = 0;
            if q < left {
                left = q;
                moved = now;
            }
            if (q > 0 && now.duration_since(moved) >= stall)
                || now.duration_since(start) >= LINGER_MAX
                || read >= LINGER_BYTES
            {
                break q > 0;
            }
        };
        if reset {
            let _ = tcp.set_zero_linger();
            counted.0.lingering.reset.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Open connections, in total and per source address.
#[derive(Debug)]
pub(crate) struct Conns {
    max: usize,
    per_addr: usize,
    open: AtomicUsize,
    by_addr: PerSource,
    /// Connections refused by either cap (for `/metrics`).
    pub(crate) refused: AtomicU64,
    /// Sockets closing gently ([`linger`]).
    pub(crate) lingering: Lingering,
    /// How long a lingering socket's client may take nothing before it is reset
    /// (`send_timeout_ms`).
    stall: Duration,
}

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `conns_max` connections are open.
    Total,
    /// `conns_per_addr` connections from this address are open.
    Address,
}

/// A connection's place, shared by its task, its requests and (after an upgrade) its
/// WebSocket; the last copy dropped gives it back.
#[derive(Clone, Debug)]
pub(crate) struct ConnPlace {
    _guard: Arc<ConnGuard>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    conns: Arc<Conns>,
    ip: IpAddr,
}

impl Conns {
    pub(crate) fn new(max: usize, per_addr: usize, stall: Duration) -> Arc<Conns> {
        Arc::new(Conns {
            max,
            per_addr,
            stall,
            open: AtomicUsize::new(0),
            by_addr: PerSource::default(),
            refused: AtomicU64::new(0),
            lingering: Lingering::default(),
        })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// `/metrics` lines: connections open, and refused by a cap.
    pub(crate) fn render(&self, o: &mut String) {
        crate::metrics::metric(
            o,
            "ringbook_web_connections",
            "gauge",
            "open HTTP connections to the web edge (WebSocket included)",
            self.open() as u64,
        );
        crate::metrics::metric(
            o,
            "ringbook_web_connections_refused_total",
            "counter",
            "connections answered 503 TOO_MANY_CONNECTIONS (conns_max or conns_per_addr)",
            self.refused.load(Ordering::Relaxed),
        );
        crate::metrics::metric(
            o,
            "ringbook_web_lingering",
            "gauge",
            "closed connections draining what their clients still send (a lingering close)",
            self.lingering.count() as u64,
        );
        crate::metrics::metric(
            o,
            "ringbook_web_closes_reset_total",
            "counter",
            "connections the server ended with a reset: their client took nothing of what it was \
             sent for send_timeout_ms while the close lingered",
            self.lingering.reset.load(Ordering::Relaxed),
        );
        crate::metrics::metric(
            o,
            "ringbook_web_closes_unlingered_total",
            "counter",
            "connections the server closed at once, the linger pool or the source's share of it \
             being full",
            self.lingering.unlingered.load(Ordering::Relaxed),
        );
    }

    /// Takes a place for a connection from `ip`, or says which cap is reached. Counted under
    /// its source (an IPv6 address's /64: [`source_key`]). The table holds only sources with a
    /// connection open, so it is bounded by `conns_max`.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let ip = source_key(ip);
        // (One accept loop admits: the total cannot move between its check and its add.)
        if self.open.load(Ordering::Relaxed) >= self.max {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Total);
        }
        if !self.by_addr.take(ip, self.per_addr) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refused::Address);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(ConnGuard {
            conns: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.by_addr.give(self.ip);
        self.conns.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The whole answer to a connection beyond a cap: written before anything is read.
fn refusal(why: Refused) -> Vec<u8> {
    let message = match why {
        Refused::Total => "too many connections to the web edge",
        Refused::Address => "too many connections from this address",
    };
    let body = ApiError::web(WebCode::TooManyConnections, message)
        .body()
        .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The connection-level time limits (`[web]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// `header_timeout_ms`.
    pub(crate) header: Duration,
    /// `send_timeout_ms`.
    pub(crate) send: Duration,
}

/// Serves `app` on `listener` until `stop` turns true: then it stops accepting, asks every
/// connection to finish its request in flight and close, and returns when they have.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    conns: Arc<Conns>,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    let answers = [refusal(Refused::Total), refusal(Refused::Address)];
    // Every connection task holds a sender; when all are dropped, every connection has ended.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors or memory (or a connection reset before it was taken):
                // wait a little rather than spin on the error.
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    eprintln!("ringbook web: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let guard = match conns.admit(peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                // A fresh socket's send buffer is empty: the short answer fits without waiting.
                let answer = &answers[(why == Refused::Address) as usize];
                let _ = tcp.try_write(answer);
                linger(&conns, tcp, Pool::Refusal, source_key(peer.ip()));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let place = ConnPlace {
            _guard: Arc::new(guard),
        };
        let for_requests = place.clone();
        let svc = app
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(for_requests.clone());
                req
            });
        let svc = TowerToHyperService::new(svc);
        let mut stop = stop.clone();
        let done = done_tx.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let _place = place;
            let _done = done;
            let gentle = Gentle::new(tcp, conns, source_key(peer.ip()));
            let io = TokioIo::new(SendDeadline::new(gentle, timeouts.send));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .max_buf_size(HEADER_BYTES_MAX)
                .serve_connection(io, svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    drop(done_tx);
    let _ = done_rx.recv().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_address_and_in_total_and_free_on_drop() {
        let c = Conns::new(3, 2, Duration::from_secs(1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = c.admit(a).unwrap();
        let a2 = c.admit(a).unwrap();
        assert_eq!(c.admit(a).unwrap_err(), Refused::Address);
        let b1 = c.admit(b).unwrap();
        assert_eq!(c.admit(b).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        assert_eq!(c.refused.load(Ordering::Relaxed), 2);
        drop(a1);
        assert_eq!(c.open(), 2);
        let a3 = c.admit(a).unwrap();
        drop((a2, a3, b1));
        assert_eq!(c.open(), 0);
        assert!(
            c.by_addr.sources() == 0,
            "no address is kept without a connection"
        );
    }

    #[test]
    fn an_ipv6_slash_64_is_one_source() {
        let c = Conns::new(10, 2, Duration::from_secs(1));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = c.admit(ip("2001:db8:0:1::1")).unwrap();
        let _b = c.admit(ip("2001:db8:0:1:ffff::2")).unwrap();
        assert_eq!(
            c.admit(ip("2001:db8:0:1:1234:5678:9abc:def0")).unwrap_err(),
            Refused::Address
        );
        let _other = c.admit(ip("2001:db8:0:2::1")).unwrap();
        // An IPv4-mapped address is its IPv4 source.
        let _v4 = c.admit(ip("10.0.0.9")).unwrap();
        let _v4b = c.admit(ip("::ffff:10.0.0.9")).unwrap();
        assert_eq!(c.admit(ip("10.0.0.9")).unwrap_err(), Refused::Address);
    }

    #[test]
    fn a_slow_reader_gets_its_whole_answer_through_a_lingering_close() {
        use std::io::Read;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // A client is reset only after taking nothing for this long: out of the way here.
        let conns = Conns::new(4, 4, Duration::from_secs(20));
        let (written, reader) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let to = l.local_addr().unwrap();
            // Reads 16 KiB every 100 ms: its answer takes several linger ticks to go out.
            let reader = std::thread::spawn(move || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                s.set_recv_buffer_size(64 << 10).unwrap();
                s.connect(&to.into()).unwrap();
                let mut c: std::net::TcpStream = s.into();
                let mut buf = vec![0u8; 16 << 10];
                let mut got = 0usize;
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    match c.read(&mut buf) {
                        Ok(0) => return Ok(got),
                        Ok(n) => got += n,
                        Err(e) => return Err((got, e.kind())),
                    }
                }
            });
            let (s, _) = l.accept().await.unwrap();
            socket2::SockRef::from(&s)
                .set_send_buffer_size(256 << 10)
                .unwrap();
            // The answer: as much as the socket takes now.
            let mut written = 0usize;
            let chunk = vec![7u8; 64 << 10];
            while let Ok(n) = s.try_write(&chunk) {
                written += n;
            }
            assert!(written > 0);
            linger(&conns, s, Pool::Close, to.ip());
            (written, reader)
        });
        let got = reader.join().unwrap();
        assert_eq!(
            got,
            Ok(written),
            "the whole answer, then the end (no reset)"
        );
        assert_eq!(conns.lingering.reset.load(Ordering::Relaxed), 0);
        drop(rt);
    }

    #[test]
    fn one_source_holds_only_its_share_of_the_lingering_places() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conns = Conns::new(64, 64, Duration::from_secs(20));
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let to = l.local_addr().unwrap();
            let mut clients = Vec::new();
            let mut sockets = Vec::new();
            for _ in 0..LINGER_PER_SOURCE + 3 {
                clients.push(std::net::TcpStream::connect(to).unwrap());
                sockets.push(l.accept().await.unwrap().0);
            }
            let a: IpAddr = "10.0.0.1".parse().unwrap();
            let b: IpAddr = "2001:db8::1".parse().unwrap();
            // All handed over before any linger task runs (nothing awaits in between): the
            // places are counted as they are taken.
            for (i, s) in sockets.into_iter().enumerate() {
                linger(
                    &conns,
                    s,
                    Pool::Close,
                    if i <= LINGER_PER_SOURCE { a } else { b },
                );
            }
            let lingering = &conns.lingering;
            assert_eq!(lingering.count(), LINGER_PER_SOURCE + 2);
            assert_eq!(lingering.unlingered.load(Ordering::Relaxed), 1);
            assert_eq!(lingering.by_source.held(a), LINGER_PER_SOURCE);
            assert_eq!(lingering.by_source.held(b), 2);
            // They end (their clients took everything: at the first look, or at their close);
            // every place comes back.
            drop(clients);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while lingering.count() > 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "places never came back"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(lingering.by_source.sources(), 0);
            assert_eq!(lingering.reset.load(Ordering::Relaxed), 0);
        });
    }

    #[test]
    fn the_refusal_is_a_whole_json_503() {
        let r = String::from_utf8(refusal(Refused::Address)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 4010);
        assert_eq!(v["reason"], "TOO_MANY_CONNECTIONS");
    }
}
