//! The address this agent advertises for its ranks' ring listeners when
//! `--advertise-host` is not given: the one of the interface that routes to
//! the coordinator, so ranks on other nodes can reach it (a loopback
//! coordinator gives loopback, so one machine needs no network).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};

/// The local address packets to `coordinator` (`host:port` or
/// `scheme://host:port[/...]`) leave from, as the kernel's routing table
/// chooses it. Connecting a UDP socket sends nothing; it only picks the route.
pub fn routable_host(coordinator: &str) -> Result<IpAddr, String> {
    let authority = coordinator.split_once("://").map_or(coordinator, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let target: SocketAddr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve the coordinator address {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("the coordinator address {authority} resolves to nothing"))?;
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).map_err(|e| format!("a UDP socket to find the route: {e}"))?;
    socket.connect(target).map_err(|e| format!("no route to the coordinator at {target}: {e}"))?;
    let local = socket.local_addr().map_err(|e| format!("the routed local address: {e}"))?;
    Ok(local.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_coordinator_gives_loopback() {
        assert_eq!(routable_host("http://127.0.0.1:7071").unwrap().to_string(), "127.0.0.1");
        assert!(routable_host("localhost:7071").unwrap().is_loopback());
        assert_eq!(routable_host("https://[::1]:7071/").unwrap().to_string(), "::1");
    }

    #[test]
    fn a_remote_coordinator_gives_an_address_of_this_machine_that_is_not_loopback() {
        // A documentation address (TEST-NET-1): routed like any remote one, never contacted.
        match routable_host("http://192.0.2.1:7071") {
            Ok(ip) => {
                assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
                // It is one of this machine's own addresses: a listener binds to it.
                std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("{ip}: {e}"));
            }
            // A machine with no route beyond loopback says so, naming the target.
            Err(e) => assert!(e.contains("192.0.2.1:7071"), "{e}"),
        }
    }

    #[test]
    fn an_unresolvable_coordinator_is_named() {
        let err = routable_host("http://no-such-host.invalid:7071").unwrap_err();
        assert!(err.contains("no-such-host.invalid:7071"), "{err}");
    }
}
