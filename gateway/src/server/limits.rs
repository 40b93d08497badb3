//! The process's own limits that a server must fit under.

/// Raises this process's soft limit on open files to its hard limit (as servers that hold many
/// sockets do) and returns the soft limit after, or `None` where it cannot be read.
pub fn raise_open_files() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the local struct passed to them.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r = raised;
            }
        }
    }
    Some(r.rlim_cur)
}

/// Bytes a TCP socket has sent that its peer has not acknowledged yet, written or not
/// (`SIOCOUTQ`; after a shutdown for writing the FIN counts 1 until acknowledged); `None` where
/// it cannot be read. 0 means the peer's kernel holds everything. For TCP sockets only (what
/// the request writes depends on the descriptor's kind; on a socket, one int).
pub fn unacknowledged(socket: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) on a socket descriptor writes one int into `n`; an invalid
    // descriptor only makes the call fail.
    #[allow(unsafe_code)]
    let r = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (r == 0).then_some(n.max(0) as usize)
}

/// Connections a listening socket holds before they are accepted ([`listen`]).
pub const LISTEN_BACKLOG: i32 = 1024;

/// Binds a listening TCP socket on `addr` (address reuse on, as std's and mio's `bind`) with a
/// backlog of [`LISTEN_BACKLOG`], not their 128: a burst of connections (clients reconnecting
/// together after a restart, a load test opening hundreds at once) waits in the queue for the
/// accept loop instead of having its SYNs dropped and retried a second or more later. The
/// kernel caps it at `net.core.somaxconn` (4096 by default since Linux 5.4). Blocking, as
/// std's; the binary gateway and the web edge each make it non-blocking for their loop.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(LISTEN_BACKLOG)?;
    Ok(s.into())
}

/// The source a connection is counted under (the gateway's pre-login cap and login throttling,
/// the web edge's connection caps and address rate limits): its IPv4 address, or the /64
/// prefix of an IPv6 address (one host usually holds a whole /64, so per-address limits on
/// full IPv6 addresses would bound nothing).
pub fn source_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_slash_64s() {
        let k = |s: &str| source_key(s.parse().unwrap()).to_string();
        assert_eq!(k("127.0.0.2"), "127.0.0.2");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff::9"));
    }

    #[test]
    fn the_listening_socket_queues_more_than_std_would() {
        // Nothing is accepted: each connection completes only while the queue has room. With
        // a backlog of 128 the 130th SYN is dropped and its connect times out.
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = l.local_addr().unwrap();
        // The kernel caps the backlog at somaxconn (4096 since Linux 5.4, 128 before).
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        if cap < 400 {
            eprintln!(
                "SKIPPED: net.core.somaxconn is {cap}: a 128 backlog could not be told apart"
            );
            return;
        }
        raise_open_files();
        let n = 400;
        let held: Vec<std::net::TcpStream> = (0..n)
            .map(|i| {
                std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("connection {i} not queued: {e}"))
            })
            .collect();
        assert_eq!(held.len(), n);
        // Address reuse is on, as with std's bind.
        assert!(socket2::SockRef::from(&l).reuse_address().unwrap());
    }

    #[test]
    fn unacknowledged_bytes_are_read_from_a_socket() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        peer.set_recv_buffer_size(4096).unwrap();
        peer.connect(&l.local_addr().unwrap().into()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        assert_eq!(unacknowledged(&s), Some(0));
        // The peer never reads: once its window is shut, what is written stays unacknowledged.
        s.set_nonblocking(true).unwrap();
        let chunk = [1u8; 16 << 10];
        let mut written = 0;
        while let Ok(n) = s.write(&chunk) {
            written += n;
        }
        let q = unacknowledged(&s).unwrap();
        assert!(q > 0 && q <= written, "{q} unacknowledged of {written}");
        assert_eq!(
            unacknowledged(&std::fs::File::open("/dev/null").unwrap()),
            None
        );
        drop(peer);
    }

    #[test]
    fn the_open_files_limit_is_read_and_never_lowered() {
        let before = raise_open_files().expect("RLIMIT_NOFILE is readable on Linux");
        let after = raise_open_files().unwrap();
        assert!(after >= before && after > 0);
    }
}
