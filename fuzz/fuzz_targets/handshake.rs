//! The handshake against a hostile peer, on both sides: the fuzzer's bytes are what the other
//! end of a real loopback TCP connection sends. The handshake must fail cleanly (or, for the
//! client, never accept a server that did not prove the token).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mproc_core::handshake::{accept, connect, Hello};
use mproc_core::net::Conn;
use mproc_core::wire::{Role, HANDSHAKE_MAX_FRAME};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::OnceLock;

fn listener() -> &'static TcpListener {
    static L: OnceLock<TcpListener> = OnceLock::new();
    L.get_or_init(|| TcpListener::bind("127.0.0.1:0").unwrap())
}

/// (our end, the hostile end) of a fresh loopback connection.
fn pair() -> (TcpStream, TcpStream) {
    let l = listener();
    let hostile = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (ours, _) = l.accept().unwrap();
    (ours, hostile)
}

fuzz_target!(|data: &[u8]| {
    let Some((&side, bytes)) = data.split_first() else { return };
    let (ours, mut hostile) = pair();
    // Everything the peer will ever say, then it stops talking (so nothing waits on a timeout).
    let _ = hostile.write_all(bytes);
    let _ = hostile.shutdown(Shutdown::Write);
    let mut conn = Conn::new(ours, HANDSHAKE_MAX_FRAME).unwrap();
    if side & 1 == 0 {
        assert!(accept(&mut conn, b"the token").is_err(), "accepted a peer that cannot know the token");
    } else {
        let hello = Hello { role: Role::Node, node: "n".into(), workers: 1, collection: vec!["t".into()] };
        assert!(connect(&mut conn, b"the token", hello).is_err(), "trusted a server that cannot know the token");
    }
});
