//! Open-loop latency probe for the load benchmark: sends GET requests at a
//! fixed rate over keep-alive connections and prints p50/p99/max latency.
//! Unlike wrk (closed loop), the rate does not drop when the server slows,
//! and latency counts from when a request was due, so tail latency at a
//! given load is measured honestly (no coordinated omission). One OS thread
//! per connection with blocking sockets keeps the probe's own jitter low.
//!
//! `cargo run --release --example latency -- ADDR PATH RATE SECONDS [TOKEN | @FILE]`
//! (`LATENCY_CONNECTIONS=N` for N connections instead of 4)
//!
//! `@FILE` names a file of tokens, one per line, used round-robin (each
//! connection starts at a different line), so a cache-less gateway sees a
//! distinct token on every concurrent request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn one(conn: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<()> {
    conn.write_all(req)?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(());
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: latency ADDR PATH RATE SECONDS [TOKEN | @FILE]");
        std::process::exit(2);
    }
    let (addr, path) = (args[1].clone(), args[2].clone());
    let rate: f64 = args[3].parse().expect("rate");
    let secs: f64 = args[4].parse().expect("seconds");
    let tokens: Vec<String> = match args.get(5) {
        None => vec![String::new()],
        Some(file) if file.starts_with('@') => std::fs::read_to_string(&file[1..])
            .expect("token file")
            .lines()
            .map(str::to_owned)
            .collect(),
        Some(token) => vec![token.clone()],
    };
    let requests: Vec<Vec<u8>> = tokens
        .iter()
        .map(|t| {
            let auth = if t.is_empty() {
                String::new()
            } else {
                format!("Authorization: Bearer {t}\r\n")
            };
            format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").into_bytes()
        })
        .collect();
    let requests = std::sync::Arc::new(requests);
    // Connections (one thread each): 4, or LATENCY_CONNECTIONS. Each carries
    // one request at a time, so the rate must fit within them.
    let conns: usize = std::env::var("LATENCY_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(4);
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let total = (rate * secs) as usize / conns;
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let (addr, requests) = (addr.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).expect("connect");
                conn.set_nodelay(true).ok();
                let mut buf = Vec::with_capacity(8192);
                let mut lat = Vec::with_capacity(total);
                let offset = interval.mul_f64(c as f64 / conns as f64);
                for i in 0..total {
                    let due = start + offset + interval * i as u32;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    let req = &requests[(c * requests.len() / conns + i) % requests.len()];
                    one(&mut conn, req, &mut buf).expect("request");
                    lat.push(due.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "requests={} p50_us={} p99_us={} max_us={}",
        all.len(),
        pct(0.50).as_micros(),
        pct(0.99).as_micros(),
        all.last().map_or(0, |d| d.as_micros())
    );
}
