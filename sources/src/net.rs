//! Listening sockets shared by the TCP-based sources.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// How many connections the kernel queues, handshake done, before sediment
/// accepts them (clamped by `net.core.somaxconn`). `TcpListener::bind` asks for
/// 128: a burst of more connections than that, while the accept loop is
/// busy for a moment, overflows the queue, and the kernel drops the clients'
/// handshake ACKs, which then wait a second or more for a SYN-ACK retransmission.
pub const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener on `address` with `SO_REUSEADDR` and a
/// [`LISTEN_BACKLOG`]-deep accept queue; `receive_buffer` is set on the listener
/// so that accepted sockets inherit it (and the TCP window scale fits it).
///
/// Must be called within a Tokio runtime.
pub fn listen(address: SocketAddr, receive_buffer: Option<usize>) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}
