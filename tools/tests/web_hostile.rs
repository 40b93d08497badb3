//! Hostile clients at the web edge, through the real `ringbook serve`: connections that never
//! finish their header (slowloris) or sit idle are closed after `header_timeout_ms`, a body
//! that does not arrive whole within `body_timeout_ms` is answered 408 (both APIs), one that
//! announces more than the limit 413 at once, a request refused before its body is read (a
//! forged token) leaves the keep-alive connection usable, and a client that never reads what
//! it asked for is closed after `send_timeout_ms`; one source
//! address cannot hold more than `conns_per_addr` connections (the next is answered 503
//! `TOO_MANY_CONNECTIONS` and closed, other addresses are served, and a freed place is taken
//! again); WebSocket messages over the size limit, text that is not UTF-8, and a client's close
//! are each answered with the close frame they deserve, on both WebSocket APIs (a frame that
//! announces more than the limit as soon as its header is in), and a ping flood meets the
//! address's rate limit (1008) instead of piling up pongs. A client still sending when the
//! server ends its connection (a body after its 413, a request after its 503, pings after the
//! 1008) still reads its answer: the server closes gently, never with a reset.
//!
//! Every wait is bounded by [`support::WAIT`]; a timeout only fails a broken server, and nothing
//! passes or fails on wall-clock speed.

mod support;

use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use support::WAIT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    tokio::time::timeout(WAIT, s.connect(to))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Reads until the server closes (EOF or reset); what it sent before.
async fn read_to_close(c: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, c.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One keep-alive `GET path` on `c`; the status line's code, or 0 when the connection ended
/// (or was reset) before a whole answer.
async fn get(c: &mut TcpStream, path: &str) -> u16 {
    let ask = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    if c.write_all(ask.as_bytes()).await.is_err() {
        return 0;
    }
    read_answer(c).await
}

/// Reads one whole answer on `c`: its status code, or 0 when the connection ended (or was
/// reset) before a whole answer.
async fn read_answer(c: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer is whole once the header and `content-length` bytes of body are in.
    loop {
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        if n == 0 {
            return 0;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

#[test]
fn slow_and_idle_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "header_timeout_ms = 200", &[]);
    let to = addr(&url);
    rt().block_on(async {
        // A connection that sends nothing.
        let mut idle = connect_from("127.0.0.1", to).await;
        assert_eq!(read_to_close(&mut idle).await, "");

        // A connection that trickles a header that never ends, a byte every 20 ms.
        let mut slow = connect_from("127.0.0.1", to).await;
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut sent = 0u32;
        loop {
            tokio::select! {
                r = slow.read(&mut buf) => {
                    assert!(matches!(r, Ok(0) | Err(_)), "no answer to half a header: {r:?}");
                    break;
                }
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                    if slow.write_all(b"a").await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                _ = tokio::time::sleep_until(deadline) => panic!("a trickled header was held open"),
            }
        }
        assert!(sent < 10_000);

        // A connection that asks at once is served, and then closed once idle.
        let mut ok = connect_from("127.0.0.1", to).await;
        assert_eq!(get(&mut ok, "/health").await, 200);
        assert_eq!(read_to_close(&mut ok).await, "");
    });
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "body_timeout_ms = 200", &[]);
    let to = addr(&url);
    rt().block_on(async {
        for (path, name) in [
            ("/api/v1/auth/login", "BODY_TIMEOUT"),
            ("/v1/orders", "request_timeout"),
        ] {
            let mut c = connect_from("127.0.0.1", to).await;
            // A header announcing 100 bytes, then 10 of them, then nothing.
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
                 content-length: 100\r\n\r\n{{\"login\":"
            );
            c.write_all(head.as_bytes()).await.unwrap();
            let answer = read_to_close(&mut c).await;
            assert!(answer.starts_with("HTTP/1.1 408 "), "{path}: {answer}");
            assert!(answer.contains(name), "{path}: {answer}");
        }
        // A body that comes whole is served as ever.
        let login = r#"{"login":"alice","password":"alice-demo"}"#;
        let r = reqwest::Client::new()
            .post(format!("{url}/api/v1/auth/login"))
            .header("content-type", "application/json")
            .body(login)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
}

/// A request answered without its body being read (a 401 for a forged token, both APIs) leaves
/// the keep-alive connection usable: the edge reads a body whole before any handler runs, so
/// a body that comes after the header (its own TCP segment, as clients send larger bodies) is
/// not left unread on the connection, which hyper would then close without saying so.
#[test]
fn a_request_refused_before_its_body_is_read_leaves_the_connection_usable() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "", &[]);
    let to = addr(&url);
    rt().block_on(async {
        let body = r#"{"symbol":"BTC-KRW","client_order_id":1,"side":"BUY","price":100,"qty":1}"#;
        for path in ["/api/v1/orders", "/v1/orders"] {
            let mut c = connect_from("127.0.0.1", to).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer forged.token.here\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            c.write_all(head.as_bytes()).await.unwrap();
            // The body after the header: once an answer came without it, or after a moment
            // (the server waits for it; only a server that answers first is told apart here).
            let mut early = [0u8; 1];
            let peeked =
                tokio::time::timeout(std::time::Duration::from_millis(200), c.peek(&mut early))
                    .await
                    .is_ok();
            c.write_all(body.as_bytes()).await.unwrap();
            let status = read_answer(&mut c).await;
            assert_eq!(status, 401, "{path} (answered before the body: {peeked})");
            // The same connection serves the next request.
            assert_eq!(
                get(&mut c, "/health").await,
                200,
                "{path}: the connection was closed"
            );
        }
    });
}

/// A chunked body (no `Content-Length`) is read up to the 64 KiB limit: one of exactly the
/// limit is served (a 400 for what it says, on a connection that stays usable), one byte more
/// is answered 413 and the connection closed, and broken chunk framing is a 400 (not a 413)
/// with the connection closed.
#[test]
fn chunked_bodies_meet_the_limit_exactly_and_broken_framing_is_not_called_too_large() {
    const LIMIT: usize = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "", &[]);
    let to = addr(&url);
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let chunked = |n: usize| format!("{head}{n:x}\r\n{}\r\n0\r\n\r\n", "x".repeat(n));
    rt().block_on(async {
        let mut c = connect_from("127.0.0.1", to).await;
        c.write_all(chunked(LIMIT).as_bytes()).await.unwrap();
        assert_eq!(
            read_answer(&mut c).await,
            400,
            "not JSON, but not too large"
        );
        assert_eq!(
            get(&mut c, "/health").await,
            200,
            "the connection stays usable"
        );

        let mut c = connect_from("127.0.0.1", to).await;
        c.write_all(chunked(LIMIT + 1).as_bytes()).await.unwrap();
        let answer = read_to_close(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );

        let mut c = connect_from("127.0.0.1", to).await;
        let broken = format!("{head}zz\r\nxx\r\n0\r\n\r\n");
        c.write_all(broken.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("could not be read"), "{answer}");
    });
}

/// `ringbook_web_connections` now, read from an address of its own.
async fn open_connections(to: SocketAddr) -> u64 {
    metric(to, "ringbook_web_connections").await
}

/// One value from `/metrics`, read over a raw connection.
async fn metric(to: SocketAddr, name: &str) -> u64 {
    let mut c = connect_from("127.0.0.9", to).await;
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_to_close(&mut c).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_client_that_never_reads_is_closed_and_an_oversized_body_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // The header timeout is out of the way: only the send deadline may close the reader.
    let (_s, url) = support::serve_web(
        dir.path(),
        "send_timeout_ms = 300\nheader_timeout_ms = 600000",
        &[],
    );
    let to = addr(&url);
    rt().block_on(async {
        // Pipelined requests whose answers (~18 KB each) are never read: the socket fills up.
        let s = TcpSocket::new_v4().unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.bind("127.0.0.5:0".parse().unwrap()).unwrap();
        let mut c = s.connect(to).await.unwrap();
        let ask = "GET /api/openapi.json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(200);
        c.write_all(ask.as_bytes()).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        // Only the scrape's own connection is left once the server gave up on the reader.
        while open_connections(to).await > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a client that never reads was kept"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // It neither reads nor closes: its lingering close ends in a reset once it has taken
        // nothing for send_timeout_ms, so the kernel is not left holding the answers it never
        // took. (The scrapes read their answers whole: their closes are plain.)
        while metric(to, "ringbook_web_closes_reset_total").await < 1 {
            assert!(
                tokio::time::Instant::now() < deadline + WAIT,
                "the reader's close never ended in a reset"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The reader itself sees the reset after what had reached it.
        let mut buf = vec![0u8; 64 << 10];
        let end = loop {
            match tokio::time::timeout(WAIT, c.read(&mut buf)).await {
                Ok(Ok(0)) => break None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => break Some(e.kind()),
                Err(_) => panic!("the reader's connection neither ended nor was reset"),
            }
        };
        assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
        drop(c);

        // A body announced over 64 KiB: 413 before any of it is sent.
        let mut c = connect_from("127.0.0.1", to).await;
        c.write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
              content-length: 10000000\r\n\r\n",
        )
        .await
        .unwrap();
        let answer = read_to_close(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    });
}

#[test]
fn one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    // Idle connections stay (the header timeout is out of the way).
    let (_s, url) = support::serve_web(
        dir.path(),
        "conns_per_addr = 3\nheader_timeout_ms = 600000",
        &[],
    );
    let to = addr(&url);
    rt().block_on(async {
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = connect_from("127.0.0.2", to).await;
            assert_eq!(get(&mut c, "/health").await, 200);
            held.push(c);
        }
        // The fourth from that address is answered before it says anything, and closed.
        let mut extra = connect_from("127.0.0.2", to).await;
        let answer = read_to_close(&mut extra).await;
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
        let body: serde_json::Value =
            serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["code"], 4010);
        assert_eq!(body["reason"], "TOO_MANY_CONNECTIONS");

        // Another address is served meanwhile; the held connections still are.
        let mut other = connect_from("127.0.0.3", to).await;
        assert_eq!(get(&mut other, "/health").await, 200);
        assert_eq!(get(&mut held[0], "/health").await, 200);

        // A place given back is taken again (once the server has seen the close).
        drop(held.pop());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut c = connect_from("127.0.0.2", to).await;
            if get(&mut c, "/health").await == 200 {
                held.push(c);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the freed place never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        // Counted in /metrics.
        let text = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let m = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let v = |name: &str| {
            m.samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                    _ => panic!("{name} is not a number"),
                })
                .unwrap_or_else(|| panic!("no {name} in /metrics"))
        };
        assert!(v("ringbook_web_connections_refused_total") >= 1.0);
        // The three held, the other address's, and the scrape's own.
        assert!(v("ringbook_web_connections") >= 5.0);

        // Upgraded connections keep their places: three WebSockets from one address (both
        // APIs), and that address's next connection is refused.
        let mut sockets = Vec::new();
        for path in ["/ws", "/websocket/v1", "/ws"] {
            let tcp = connect_from("127.0.0.4", to).await;
            let ws_url = format!("{}{path}", url.replacen("http://", "ws://", 1));
            let (ws, _) = tokio_tungstenite::client_async(ws_url, tcp)
                .await
                .expect("upgrade");
            sockets.push(ws);
        }
        let mut extra = connect_from("127.0.0.4", to).await;
        let answer = read_to_close(&mut extra).await;
        assert!(answer.contains("TOO_MANY_CONNECTIONS"), "{answer}");
        // A WebSocket closed gives its place back.
        let mut first = sockets.remove(0);
        first.close(None).await.unwrap();
        while let Some(Ok(_)) = first.next().await {}
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut c = connect_from("127.0.0.4", to).await;
            if get(&mut c, "/health").await == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the WebSocket's place never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws(url: &str, path: &str) -> Ws {
    let url = format!("{}{path}", url.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect")
        .0
}

/// The close frame's code the server ends with (text messages before it skipped).
async fn close_code(ws: &mut Ws) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close frame in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return f.code.into(),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => {}
            other => panic!("the connection ended without a close frame: {other:?}"),
        }
    }
}

/// A WebSocket upgrade beyond `ws_conns_max` is refused as a request (each API in its own
/// shape), counted, and leaves its HTTP connection usable; a freed place is taken again.
#[test]
fn websocket_places_beyond_ws_conns_max_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "ws_conns_max = 2", &[]);
    let to = addr(&url);
    rt().block_on(async {
        let mut held = vec![ws(&url, "/ws").await, ws(&url, "/websocket/v1").await];
        assert_eq!(metric(to, "ringbook_ws_refused_total").await, 0);
        let upgrade = |path: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
        };
        let mut c = connect_from("127.0.0.1", to).await;
        c.write_all(upgrade("/ws").as_bytes()).await.unwrap();
        assert_eq!(read_answer(&mut c).await, 503);
        // The same connection still serves a request.
        assert_eq!(get(&mut c, "/health").await, 200);
        c.write_all(upgrade("/websocket/v1").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_answer(&mut c).await, 429);
        assert_eq!(metric(to, "ringbook_ws_refused_total").await, 2);
        // A place given back is taken again (once the server has seen the close).
        held.pop().unwrap().close(None).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while metric(to, "ringbook_ws_connections").await > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the place is not given back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        held.push(ws(&url, "/ws").await);
    });
}

#[test]
fn websocket_misuse_gets_its_close_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "", &[]);
    rt().block_on(async {
        for path in ["/ws", "/websocket/v1"] {
            // A message over 16 KiB: 1009.
            let mut c = ws(&url, path).await;
            c.send(Message::Text("x".repeat(20 << 10).into()))
                .await
                .unwrap();
            assert_eq!(close_code(&mut c).await, 1009, "{path}");

            // A frame that announces 16 MB: 1009 from its header, without the payload.
            let mut c = ws(&url, path).await;
            // A final text frame (0x81); masked, with 127: a 64-bit length follows.
            let mut header = vec![0x81, 0x80 | 127];
            header.extend_from_slice(&16_000_000u64.to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]); // the mask
            let tcp = match c.get_mut() {
                tokio_tungstenite::MaybeTlsStream::Plain(t) => t,
                _ => unreachable!("plain ws://"),
            };
            tcp.write_all(&header).await.unwrap();
            assert_eq!(
                close_code(&mut c).await,
                1009,
                "{path}: a 16 MB frame announced"
            );

            // A text frame that is not UTF-8: 1007.
            let mut c = ws(&url, path).await;
            let frame =
                Frame::message(vec![b'[', 0xff, 0xfe, b']'], OpCode::Data(Data::Text), true);
            c.send(Message::Frame(frame)).await.unwrap();
            assert_eq!(close_code(&mut c).await, 1007, "{path}");

            // The client closes: the server answers with its own close frame.
            let mut c = ws(&url, path).await;
            c.close(None).await.unwrap();
            assert_eq!(close_code(&mut c).await, 1005, "{path}");
        }
    });
}

#[test]
fn a_ping_flood_meets_the_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(dir.path(), "addr_rps = 5\naddr_burst = 50", &[]);
    rt().block_on(async {
        // Several rounds: the close frame must arrive every time, though the client is still
        // sending pings when the server closes (a reset would lose it: the server lingers).
        for path in ["/ws", "/websocket/v1"].repeat(5) {
            let mut c = ws(&url, path).await;
            for _ in 0..200 {
                if c.send(Message::Ping(vec![0u8; 125].into())).await.is_err() {
                    break;
                }
            }
            assert_eq!(close_code(&mut c).await, 1008, "{path}");
            // Let the bucket refill for the next path's upgrade request.
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    });
}

/// Writes `n` bytes to `c` in 16 KiB pieces (ignoring a write refused once the server has
/// closed), then reads until the server closes: what it answered.
async fn send_then_read(c: &mut TcpStream, n: usize) -> String {
    let piece = vec![b'x'; 16 << 10];
    let mut sent = 0;
    while sent < n {
        match tokio::time::timeout(WAIT, c.write_all(&piece)).await {
            Ok(Ok(())) => sent += piece.len(),
            _ => break,
        }
    }
    read_to_close(c).await
}

#[test]
fn a_refused_client_that_keeps_sending_still_reads_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, url) = support::serve_web(
        dir.path(),
        "conns_per_addr = 1\nheader_timeout_ms = 600000",
        &[],
    );
    let to = addr(&url);
    rt().block_on(async {
        for round in 0..20 {
            // A body announced over 64 KiB, sent anyway: its 413 is not lost to a reset. (An
            // address of its own each round: the last round's place may still be held.)
            let mut c = connect_from(&format!("127.0.2.{}", round + 1), to).await;
            c.write_all(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
                  content-length: 10000000\r\n\r\n",
            )
            .await
            .unwrap();
            let answer = send_then_read(&mut c, 256 << 10).await;
            assert!(
                answer.starts_with("HTTP/1.1 413 "),
                "round {round}: {answer:?}"
            );
            drop(c);

            // A connection beyond the address's cap that sends its request anyway: its 503
            // arrives whole.
            let from = format!("127.0.1.{}", round + 1);
            let mut held = connect_from(&from, to).await;
            assert_eq!(get(&mut held, "/health").await, 200);
            let mut extra = connect_from(&from, to).await;
            extra
                .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            let answer = send_then_read(&mut extra, 64 << 10).await;
            assert!(
                answer.starts_with("HTTP/1.1 503 "),
                "round {round}: {answer:?}"
            );
            assert!(
                answer.contains("TOO_MANY_CONNECTIONS"),
                "round {round}: {answer}"
            );
        }
    });
}
