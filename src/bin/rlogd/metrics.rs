//! `--metrics HOST:PORT`: the daemon's counters over HTTP, for Prometheus (`/metrics`, text
//! exposition format) and for health checks (`/health`: 200 while the committer runs), and the
//! client side of `rlogd stats`. One thread answers one request at a time, each bounded by a
//! short timeout and a small request size: meant for a local port, not for the internet.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::commit::Ctx;

/// Binds `addr` and answers on a thread of its own. Returns the address bound.
pub fn listen(addr: &str, ctx: Arc<Ctx>) -> io::Result<String> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?.to_string();
    std::thread::Builder::new()
        .name("rlogd metrics".into())
        .spawn(move || {
            for s in l.incoming().flatten() {
                let _ = answer(s, &ctx);
            }
        })?;
    Ok(local)
}

/// The Prometheus text of the daemon's counters and gauges.
pub fn render(ctx: &Ctx) -> String {
    let mut out = String::new();
    for (name, v) in ctx.counters.list() {
        out.push_str(&format!(
            "# TYPE rlogd_{name}_total counter\nrlogd_{name}_total {v}\n"
        ));
    }
    let open = ctx.shared.state.lock().open;
    let gauges = [
        ("open_connections", ctx.slots.open() as u64),
        ("buffered_bytes", ctx.budget.used() as u64),
        ("max_buffered_bytes", ctx.budget.limit() as u64),
        (
            "open_date",
            open.map(|(d, _)| d.as_u32() as u64).unwrap_or(0),
        ),
        ("open_date_records", open.map(|(_, n)| n).unwrap_or(0)),
    ];
    for (name, v) in gauges {
        out.push_str(&format!("# TYPE rlogd_{name} gauge\nrlogd_{name} {v}\n"));
    }
    out
}

fn answer(mut s: TcpStream, ctx: &Ctx) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        if req.len() > 8192 {
            break;
        }
    }
    let line = String::from_utf8_lossy(&req);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", render(ctx)),
        ("GET", "/health") | ("GET", "/healthz") => {
            if ctx.stopping.load(Ordering::Acquire) {
                ("503 Service Unavailable", "text/plain", "stopping\n".into())
            } else {
                ("200 OK", "text/plain", "ok\n".into())
            }
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /health\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics or /health\n".into(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())
}

/// GETs `path` from `addr` (`HOST:PORT`); the body of a 200 answer. Errors: I/O, or another
/// status.
pub fn get(addr: &str, path: &str) -> Result<String, String> {
    let (host, port) = crate::net::split_host_port(addr);
    let mut s = rlog::output::socket::connect_tcp(&host, port, Duration::from_secs(5))
        .map(TcpStream::from)
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut resp)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(format!("the daemon answered \"{status}\""));
    }
    Ok(body.to_string())
}
