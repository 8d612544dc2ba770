//! Cross-process round-trip latency of the shm ring vs a Unix socket pair vs TCP loopback,
//! measured in one run, plus ring throughput with 1 producer and 2 consumer processes.
//!
//!   cargo bench --bench ring_latency            # criterion estimates + percentile table
//!   BENCH_QUICK=1 cargo bench --bench ring_latency   # percentile table only
//!
//! The peer is this same binary re-executed (env BENCH_PEER), so both ends are real processes.

use criterion::Criterion;
use mproc_core::{Ring, RingOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const MSG: usize = 100;

fn peer(role: &str, env: &[(&str, String)]) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("BENCH_PEER", role);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn run_peer(role: &str) {
    match role {
        "ring-echo" => {
            let req = Ring::attach(Path::new(&std::env::var("REQ").unwrap())).unwrap();
            let rep = Ring::attach(Path::new(&std::env::var("REP").unwrap())).unwrap();
            let spin: u32 = std::env::var("SPIN").unwrap().parse().unwrap();
            while let Ok(Some(m)) = pop_spin(&req, spin) {
                rep.push(&m, None).unwrap();
            }
        }
        "ring-sink" => {
            let q = Ring::attach(Path::new(&std::env::var("REQ").unwrap())).unwrap();
            while let Ok(Some(_)) = q.pop(None) {}
        }
        "uds-echo" | "tcp-echo" => {
            let mut s: Box<dyn ReadWrite> = if role == "uds-echo" {
                Box::new(UnixStream::connect(std::env::var("ADDR").unwrap()).unwrap())
            } else {
                let t = TcpStream::connect(std::env::var("ADDR").unwrap()).unwrap();
                t.set_nodelay(true).unwrap();
                Box::new(t)
            };
            let mut buf = [0u8; MSG];
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
            }
        }
        _ => panic!("unknown peer {role}"),
    }
}

/// Blocking pop that polls `spin` times before sleeping on the futex.
fn pop_spin(r: &Ring, spin: u32) -> mproc_core::Result<Option<Vec<u8>>> {
    r.set_spin(spin);
    r.pop(None)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// One transport under test: a closure doing one request/echo round trip.
struct Transport {
    name: &'static str,
    rtt: Box<dyn FnMut()>,
    child: Child,
}

impl Drop for Transport {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ring_transport(name: &'static str, spin: u32) -> Transport {
    let opts = RingOptions { capacity: 64, ..Default::default() };
    let req = Ring::create(None, &opts).unwrap();
    let rep = Ring::create(None, &opts).unwrap();
    let child = peer(
        "ring-echo",
        &[
            ("REQ", req.path().display().to_string()),
            ("REP", rep.path().display().to_string()),
            ("SPIN", spin.to_string()),
        ],
    );
    let msg = [7u8; MSG];
    Transport {
        name,
        rtt: Box::new(move || {
            req.push(&msg, None).unwrap();
            pop_spin(&rep, spin).unwrap().unwrap();
        }),
        child,
    }
}

fn stream_transport(name: &'static str, mut s: Box<dyn ReadWrite>, child: Child) -> Transport {
    let msg = [7u8; MSG];
    let mut buf = [0u8; MSG];
    Transport {
        name,
        rtt: Box::new(move || {
            s.write_all(&msg).unwrap();
            s.read_exact(&mut buf).unwrap();
        }),
        child,
    }
}

fn uds_transport() -> Transport {
    let path = std::env::temp_dir().join(format!("mproc-bench-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let child = peer("uds-echo", &[("ADDR", path.display().to_string())]);
    let (s, _) = l.accept().unwrap();
    let _ = std::fs::remove_file(&path);
    stream_transport("unix socket", Box::new(s), child)
}

fn tcp_transport() -> Transport {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let child = peer("tcp-echo", &[("ADDR", l.local_addr().unwrap().to_string())]);
    let (s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    stream_transport("tcp loopback", Box::new(s), child)
}

fn percentiles(t: &mut Transport, n: usize) -> (f64, f64, f64) {
    for _ in 0..n / 10 {
        (t.rtt)();
    }
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            let s = Instant::now();
            (t.rtt)();
            s.elapsed().as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)] as f64 / 1000.0;
    (p(0.5), p(0.99), p(0.999))
}

fn throughput_1p2c(items: u64) -> f64 {
    let q = Ring::create(None, &RingOptions { capacity: 1024, ..Default::default() }).unwrap();
    let env = [("REQ", q.path().display().to_string())];
    let mut c1 = peer("ring-sink", &env);
    let mut c2 = peer("ring-sink", &env);
    let msg = [1u8; MSG];
    let t = Instant::now();
    for _ in 0..items {
        q.push(&msg, None).unwrap();
    }
    q.close();
    c1.wait().unwrap();
    c2.wait().unwrap();
    items as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if let Ok(role) = std::env::var("BENCH_PEER") {
        run_peer(&role);
        return;
    }
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let mut transports = vec![
        ring_transport("ring (default)", mproc_core::ring::DEFAULT_SPIN),
        ring_transport("ring, no spin", 0),
        ring_transport("ring, spin 5000", 5000),
        uds_transport(),
        tcp_transport(),
    ];
    if !quick {
        let mut c = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(3));
        let mut g = c.benchmark_group("rtt_100B");
        for t in transports.iter_mut() {
            g.bench_function(t.name, |b| b.iter(|| (t.rtt)()));
        }
        g.finish();
    }
    let n = 200_000;
    println!("\ncross-process round trip, {MSG} B, {n} samples each (interleaved in one run)");
    println!("{:<20} {:>10} {:>10} {:>10}", "transport", "median us", "p99 us", "p99.9 us");
    // Interleave in rounds so machine noise hits every transport alike.
    let mut acc: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); transports.len()];
    for _ in 0..5 {
        for (i, t) in transports.iter_mut().enumerate() {
            acc[i].push(percentiles(t, n / 5));
        }
    }
    for (i, t) in transports.iter().enumerate() {
        let med = |f: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = acc[i].iter().map(f).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!("{:<20} {:>10.2} {:>10.2} {:>10.2}", t.name, med(|x| x.0), med(|x| x.1), med(|x| x.2));
    }
    drop(transports);
    let tp = throughput_1p2c(1_000_000);
    println!("\nring throughput, 1 producer -> 2 consumer processes, {MSG} B: {:.2} M msg/s", tp / 1e6);
}
