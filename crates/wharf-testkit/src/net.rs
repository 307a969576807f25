//! Ports on loopback.

/// A port that was free a moment ago (the OS picks it, then it is
/// released): for a server that must be told its port before it starts, or
/// as a port nothing listens on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral loopback port")
        .local_addr()
        .expect("local address")
        .port()
}
