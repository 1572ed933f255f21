//! Helpers shared by the node's integration tests that speak raw RTMP.

use std::net::SocketAddr;

use bytes::BytesMut;
use skein_node::rtmp::handshake::{ClientHandshake, HandshakeProgress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Completes a client handshake on a fresh socket, leaving it ready for chunks.
pub async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut hs = ClientHandshake::new();
    let mut out = BytesMut::new();
    hs.start(&mut out);
    socket.write_all(&out).await.unwrap();
    let mut inbound = BytesMut::new();
    loop {
        out.clear();
        socket.read_buf(&mut inbound).await.unwrap();
        let progress = hs.feed(&mut inbound, &mut out).unwrap();
        socket.write_all(&out).await.unwrap();
        if matches!(progress, HandshakeProgress::Done) {
            return socket;
        }
    }
}
