//! A bounded load client for `arrears serve` (docs/benchmarks.md, "Serve"): a fixed number of
//! `GET /loans/{id}` requests over keep-alive connections, optionally while another client
//! posts payments one at a time; prints throughput and latency percentiles. Standard library
//! only (raw HTTP/1.1), so it measures the server, not a client framework.
//!
//! ```sh
//! cargo run --release -p arrears-cli --example load -- --addr 127.0.0.1:8080 \
//!     --ids book.jsonl --requests 200000 --connections 4 --as-of 2025-01-01 [--write]
//! ```
//!
//! `--ids` is a file of loan ids, one per line, or a book of events (the `disbursed` lines'
//! `loan_id`s are taken). Loans are picked pseudo-randomly (fixed seed). With `--write`, one
//! more connection posts a payment of 0.01 dated `--as-of` to a random loan, one request after
//! another, until the reads are done; its latencies are reported too. `--write-batch N` puts N
//! payments in each POST (one all-or-nothing append of N events: a long write).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Conn {
    addr: String,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).unwrap();
        Conn {
            addr: addr.to_owned(),
            r: BufReader::with_capacity(64 * 1024, s),
        }
    }

    /// One request on the kept-alive connection: (status, body length).
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, usize) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        let s = self.r.get_mut();
        s.write_all(head.as_bytes()).expect("send");
        if !body.is_empty() {
            s.write_all(body).expect("send");
        }
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("content-length");
                }
            }
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).expect("body");
        (status, len)
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn load_ids(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("--ids file");
    let mut ids = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with('{') {
            if l.contains(r#""type":"disbursed""#) {
                let i = l.find(r#""loan_id":""#).expect("loan_id") + 11;
                ids.push(l[i..i + 36].to_owned());
            }
        } else if !l.is_empty() {
            ids.push(l.to_owned());
        }
    }
    assert!(!ids.is_empty(), "no loan ids in {path}");
    ids
}

/// xorshift64*: a fixed, cheap pseudo-random sequence.
fn next(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summary(name: &str, lat: &mut [u32], elapsed: Duration) {
    lat.sort_unstable();
    println!(
        "{name}: {} requests in {:.2} s = {:.0} req/s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(lat, 0.50),
        pct(lat, 0.90),
        pct(lat, 0.99),
        pct(lat, 0.999),
        pct(lat, 1.0),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = arg(&args, "--addr").expect("--addr HOST:PORT");
    let ids = Arc::new(load_ids(&arg(&args, "--ids").expect("--ids FILE")));
    let requests: usize = arg(&args, "--requests")
        .map(|s| s.parse().unwrap())
        .unwrap_or(100_000);
    let conns: usize = arg(&args, "--connections")
        .map(|s| s.parse().unwrap())
        .unwrap_or(4);
    let as_of = arg(&args, "--as-of").unwrap_or_else(|| "2025-01-01".into());
    let write = args.iter().any(|a| a == "--write");
    let batch: usize = arg(&args, "--write-batch")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1);
    println!(
        "{} loans; {requests} GET /loans/{{id}}?as_of={as_of} over {conns} connections{}",
        ids.len(),
        if write {
            format!("; one client posting payments meanwhile, {batch} per POST")
        } else {
            String::new()
        }
    );

    // Warm-up: one pass of 2,000 requests, not counted.
    {
        let mut c = Conn::open(&addr);
        let mut st = 7u64;
        for _ in 0..2000 {
            let id = &ids[(next(&mut st) % ids.len() as u64) as usize];
            let (status, _) = c.call("GET", &format!("/loans/{id}?as_of={as_of}"), b"");
            assert_eq!(status, 200, "GET /loans/{id}");
        }
    }

    let done = Arc::new(AtomicBool::new(false));
    let writer = write.then(|| {
        let (addr, ids, done, as_of) = (addr.clone(), ids.clone(), done.clone(), as_of.clone());
        std::thread::spawn(move || {
            let mut c = Conn::open(&addr);
            let mut st = 99u64;
            let mut lat = Vec::new();
            let t0 = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let mut body = String::new();
                for _ in 0..batch {
                    let id = &ids[(next(&mut st) % ids.len() as u64) as usize];
                    body.push_str(&format!(
                        "{{\"loan_id\":\"{id}\",\"type\":\"payment\",\"on\":\"{as_of}\",\"amount\":\"0.01\"}}\n"
                    ));
                }
                let t = Instant::now();
                let (status, _) = c.call("POST", "/events", body.as_bytes());
                lat.push(t.elapsed().as_micros() as u32);
                assert_eq!(status, 201, "POST /events");
            }
            (lat, t0.elapsed())
        })
    });

    let per = requests / conns;
    let t0 = Instant::now();
    let readers: Vec<_> = (0..conns)
        .map(|k| {
            let (addr, ids, as_of) = (addr.clone(), ids.clone(), as_of.clone());
            std::thread::spawn(move || {
                let mut c = Conn::open(&addr);
                let mut st = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let id = &ids[(next(&mut st) % ids.len() as u64) as usize];
                    let path = format!("/loans/{id}?as_of={as_of}");
                    let t = Instant::now();
                    let (status, len) = c.call("GET", &path, b"");
                    lat.push(t.elapsed().as_micros() as u32);
                    assert!(status == 200 && len > 0, "GET {path}: {status}");
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u32> = Vec::with_capacity(requests);
    for r in readers {
        lat.extend(r.join().unwrap());
    }
    let elapsed = t0.elapsed();
    done.store(true, Ordering::Relaxed);
    summary("reads", &mut lat, elapsed);
    if let Some(w) = writer {
        let (mut wl, we) = w.join().unwrap();
        summary(
            &format!("writes ({batch} payments per POST, durable)"),
            &mut wl,
            we,
        );
    }
}
