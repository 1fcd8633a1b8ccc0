//! What the router's integration tests share.

use std::net::SocketAddr;

/// A loopback address whose port is below the kernel's ephemeral range
/// and was free a moment ago. A node that is stopped and started again
/// on its old address needs a port that an outgoing connection cannot
/// take in between, which an OS-assigned (`:0`) port can be.
pub fn stable_addr() -> SocketAddr {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768)
        .max(11000);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(10000..low);
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().expect("addr");
        }
    }
    panic!("no free port below {low} on 127.0.0.1");
}
