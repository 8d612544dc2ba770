//! Framed TCP connections for the multi-host protocol: one reader (`Conn`) and any number of
//! writers (`Writer`, cloned handles serialised by a mutex) per socket.

use crate::wire::{encode, FrameDecoder, Message, WireError};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug)]
pub enum NetError {
    /// The peer closed the connection.
    Closed,
    /// No frame within the read timeout.
    Timeout,
    Io(io::Error),
    Wire(WireError),
}

impl std::fmt::Display for NetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetError::Closed => write!(f, "connection closed by the peer"),
            NetError::Timeout => write!(f, "peer silent for too long"),
            NetError::Io(e) => write!(f, "{e}"),
            NetError::Wire(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for NetError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => NetError::Timeout,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                NetError::Closed
            }
            _ => NetError::Io(e),
        }
    }
}

/// A cloneable sending half; frames from different threads never interleave.
#[derive(Clone)]
pub struct Writer {
    stream: Arc<Mutex<TcpStream>>,
}

impl Writer {
    pub fn send(&self, msg: &Message) -> Result<(), NetError> {
        let frame = encode(msg);
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(&frame)?;
        Ok(())
    }

    /// Writes bytes as they are (tests use it to send malformed frames).
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), NetError> {
        let mut s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        s.write_all(bytes)?;
        Ok(())
    }

    /// Ends the connection both ways (wakes the reader thread of this socket).
    pub fn shutdown(&self) {
        let s = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let _ = s.shutdown(Shutdown::Both);
    }
}

/// A sending half that never blocks its caller: frames queue in memory and one thread per
/// connection writes them in order. The coordinator sends through these while it holds its
/// state lock, so a peer that stops reading delays nobody else; a write that fails or times out
/// ends that connection (its reader then sees it closed).
#[derive(Clone)]
pub struct Outbox {
    /// A frame to write, or None: end the connection once everything before it is written.
    tx: std::sync::mpsc::Sender<Option<Vec<u8>>>,
    writer: Writer,
}

impl Outbox {
    /// Starts the connection's writer thread; it ends when every clone is dropped or a write fails.
    pub fn start(writer: Writer) -> io::Result<Outbox> {
        let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let w = writer.clone();
        std::thread::Builder::new().name("mproc-outbox".into()).spawn(move || {
            for frame in rx {
                match frame {
                    Some(f) if w.send_raw(&f).is_ok() => {}
                    _ => return w.shutdown(),
                }
            }
        })?;
        Ok(Outbox { tx, writer })
    }

    /// Queues a frame; `Err(Closed)` once the writer thread has given up on the connection.
    pub fn send(&self, msg: &Message) -> Result<(), NetError> {
        self.tx.send(Some(encode(msg))).map_err(|_| NetError::Closed)
    }

    /// Ends the connection once the frames queued so far are written (a last Refused or Stop).
    pub fn close_after_queued(&self) {
        let _ = self.tx.send(None);
    }

    /// Ends the connection both ways now (queued frames are dropped).
    pub fn shutdown(&self) {
        self.writer.shutdown();
    }
}

/// The receiving half (owned by one thread) plus a writer.
pub struct Conn {
    stream: TcpStream,
    dec: FrameDecoder,
    buf: Vec<u8>,
    pub writer: Writer,
    pub peer: String,
}

impl Conn {
    /// Wraps a connected socket; `max_frame` bounds what the peer may send.
    pub fn new(stream: TcpStream, max_frame: usize) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        // A peer that stops reading must not block a writer forever.
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let writer = Writer { stream: Arc::new(Mutex::new(stream.try_clone()?)) };
        Ok(Conn { stream, dec: FrameDecoder::new(max_frame), buf: vec![0; 64 << 10], writer, peer })
    }

    pub fn set_max_frame(&mut self, max: usize) {
        self.dec.set_max_frame(max);
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    pub fn send(&self, msg: &Message) -> Result<(), NetError> {
        self.writer.send(msg)
    }

    /// The next message; blocks up to the read timeout.
    pub fn recv(&mut self) -> Result<Message, NetError> {
        loop {
            match self.dec.next_message() {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(e) => return Err(NetError::Wire(e)),
            }
            let n = match self.stream.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(NetError::Closed);
            }
            self.dec.feed(&self.buf[..n]);
        }
    }
}

/// Connects to `addr`, retrying refused/unreachable attempts until `timeout` has passed.
pub fn connect_retry(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = std::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match TcpStream::connect_timeout(addr, left.max(Duration::from_millis(10)).min(Duration::from_secs(5))) {
            Ok(s) => return Ok(s),
            Err(e) if left.is_zero() => return Err(e),
            Err(_) => {
                // Waiting for the main to start listening: a back-off, not a synchronisation.
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}
