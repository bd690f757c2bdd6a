//! nginx (Debian's, with libnginx-mod-http-lua) as a real HTTP endpoint for the http output's
//! tests: a Lua content handler stores each request body in a file of its own (numbered in
//! arrival order) and logs `N STATUS X-Rlog-Batch` per request; locations script statuses:
//!
//! - `/ok`: 204.
//! - `/flaky?fail=K`: the first K requests get 503 (a 5xx storm), then 204.
//! - `/limit?fail=K`: the first K get 429 with `Retry-After: 1`, then 204.
//! - `/slow?ms=M`: answers after M ms.
//! - `/reset?fail=K`: the first K get a response head and half a body, then the connection is
//!   reset (nginx's 444).
//! - `/refuse?bad=WORD`: 400 when the body holds WORD, else 204.
//! - `/gate`: 503 until `/gate_open` is requested, then 204.
//! - `/esi/_bulk`: a MOCK of Elasticsearch's `_bulk` (it cannot run here), answering item by
//!   item as its documentation shows: a `create` whose `_id` it has indexed gets 409
//!   (version_conflict_engine_exception), as does a document holding DUP; one holding BAD gets
//!   400 (mapper_parsing_exception), BUSY 429 the first time (es_rejected_execution_exception),
//!   the others 201; accepted documents are appended to `indexed.log`.
//! - `/loki/api/v1/push`: a MOCK of Loki's push API (204).
//! - `/v1/logs`: a MOCK of an OpenTelemetry collector's OTLP/HTTP logs endpoint: `{}`, or a
//!   `partialSuccess` rejecting 2 records when the body holds PARTIAL (the shape its spec shows).
//! - `/busy`: 503 with `Retry-After: 600`, always.
//! - `/trickle`: stores the body, answers 200 and then a body that never ends (one byte every
//!   100 ms, chunked), as a broken proxy or a hostile endpoint may.
//! - `/every?n=N`: every Nth request gets 503, the others 204 (failures between deliveries).
//! - `/small`: `client_max_body_size 64k`: nginx itself answers 413 to a larger body.
//! - `/es/_bulk`: 200 `{"errors":false,...}` as Elasticsearch's `_bulk` does.
//!
//! Only a stored request (2xx) keeps its body file.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODULES: &str = "/usr/share/nginx/modules";

pub struct Nginx {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// TLS for the listener: certificate, key, and the CA clients must present a certificate of
/// (mutual TLS) if any.
pub struct NginxTls<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

/// A port nothing listens on now, never handed out before in this process
/// (`common::fresh_port`): a test whose records all went to another test's nginx was seen.
pub fn free_port() -> u16 {
    crate::common::fresh_port()
}

const HANDLER: &str = r#"
    local dir = "DIR"
    local function count(name)
        return ngx.shared.st:incr(name, 1, 0)
    end
    local function store(status)
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        if not body then
            local f = ngx.req.get_body_file()
            if f then local h = io.open(f, "rb"); body = h:read("*a"); h:close() end
        end
        body = body or ""
        local n = count("req")
        local log = io.open(dir .. "/requests.log", "a")
        log:write(n, " ", status, " ", ngx.var.http_x_rlog_batch or "-", " ", #body, "\n")
        log:close()
        if status >= 200 and status < 300 then
            local f = io.open(dir .. "/bodies/" .. n, "wb")
            f:write(body)
            f:close()
        end
        return body
    end
"#;

impl Nginx {
    pub fn start(dir: &Path, tls: Option<NginxTls<'_>>) -> Nginx {
        Nginx::start_on(dir, tls, free_port())
    }

    /// As `start`, on a given port (an endpoint that comes back where it was).
    pub fn start_on(dir: &Path, tls: Option<NginxTls<'_>>, port: u16) -> Nginx {
        for d in ["logs", "tmp", "conf", "bodies"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let d = dir.display();
        let listen = match &tls {
            None => format!("listen 127.0.0.1:{port};"),
            Some(t) => {
                let mut s = format!(
                    "listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {};",
                    t.cert.display(),
                    t.key.display()
                );
                if let Some(ca) = t.client_ca {
                    s += &format!(
                        " ssl_client_certificate {}; ssl_verify_client on;",
                        ca.display()
                    );
                }
                s
            }
        };
        let handler = HANDLER.replace("DIR", &d.to_string());
        let user = if unsafe_is_root() { "user root;" } else { "" };
        let conf = format!(
            r#"
load_module {MODULES}/ndk_http_module.so;
load_module {MODULES}/ngx_http_lua_module.so;
{user}
worker_processes 1;
daemon off;
master_process on;
pid {d}/logs/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    lua_shared_dict st 1m;
    client_max_body_size 64m;
    client_body_buffer_size 4m;
    keepalive_requests 100000;
    init_by_lua_block {{ {handler} H = {{ store = store, count = count, dir = dir }} }}
    server {{
        {listen}
        location /ok {{ content_by_lua_block {{ H.store(204); ngx.exit(204) }} }}
        location /flaky {{ content_by_lua_block {{
            if H.count("flaky") <= tonumber(ngx.var.arg_fail) then H.store(503); ngx.exit(503) end
            H.store(204); ngx.exit(204) }} }}
        location /limit {{ content_by_lua_block {{
            if H.count("limit") <= tonumber(ngx.var.arg_fail) then
                H.store(429); ngx.header["Retry-After"] = "1"; ngx.status = 429; ngx.say("slow down"); return ngx.exit(429)
            end
            H.store(204); ngx.exit(204) }} }}
        location /slow {{ content_by_lua_block {{
            ngx.sleep(tonumber(ngx.var.arg_ms) / 1000); H.store(204); ngx.exit(204) }} }}
        location /reset {{ content_by_lua_block {{
            if H.count("reset") <= tonumber(ngx.var.arg_fail) then
                H.store(599)
                ngx.status = 200; ngx.header["Content-Length"] = 100
                ngx.print("only part of it"); ngx.flush(true)
                return ngx.exit(444)
            end
            H.store(204); ngx.exit(204) }} }}
        location /refuse {{ content_by_lua_block {{
            ngx.req.read_body()
            local b = ngx.req.get_body_data() or ""
            if string.find(b, ngx.var.arg_bad, 1, true) then
                H.store(400); ngx.status = 400; ngx.say("bad record"); return ngx.exit(400)
            end
            H.store(204); ngx.exit(204) }} }}
        location /gate {{ content_by_lua_block {{
            if ngx.shared.st:get("gate_open") then H.store(204); return ngx.exit(204) end
            H.store(503); ngx.exit(503) }} }}
        location /gate_open {{ content_by_lua_block {{
            ngx.shared.st:set("gate_open", true); ngx.exit(204) }} }}
        location /esi/_bulk {{ content_by_lua_block {{
            local body = H.store(200)
            local items, errors, action = {{}}, false, nil
            local f = io.open(H.dir .. "/indexed.log", "a")
            for line in string.gmatch(body, "[^\n]+") do
                if action == nil then action = line else
                    local status, err = 201, nil
                    local id = string.match(action, '"_id":"([^"]+)"') or ""
                    if ngx.shared.st:get("id" .. id) then
                        status, err = 409, '"error":{{"type":"version_conflict_engine_exception","reason":"version conflict, document already exists"}}'
                    elseif string.find(line, "BAD", 1, true) then
                        status, err = 400, '"error":{{"type":"mapper_parsing_exception","reason":"failed to parse field [i]"}}'
                    elseif string.find(line, "DUP", 1, true) then
                        status, err = 409, '"error":{{"type":"version_conflict_engine_exception","reason":"version conflict, document already exists"}}'
                    elseif string.find(line, "BUSY", 1, true) and ngx.shared.st:incr("busy" .. line, 1, 0) == 1 then
                        status, err = 429, '"error":{{"type":"es_rejected_execution_exception","reason":"rejected execution"}}'
                    end
                    if status < 300 then f:write(line, "\n"); ngx.shared.st:set("id" .. id, true) else errors = true end
                    items[#items + 1] = '{{"create":{{"_index":"logs","status":' .. status .. (err and ("," .. err) or "") .. '}}}}'
                    action = nil
                end
            end
            f:close()
            ngx.header["Content-Type"] = "application/json"
            ngx.print('{{"took":3,"errors":' .. tostring(errors) .. ',"items":[' .. table.concat(items, ",") .. ']}}') }} }}
        location /loki/api/v1/push {{ content_by_lua_block {{ H.store(204); ngx.exit(204) }} }}
        location /v1/logs {{ content_by_lua_block {{
            local body = H.store(200)
            ngx.header["Content-Type"] = "application/json"
            if string.find(body, "PARTIAL", 1, true) then
                ngx.print('{{"partialSuccess":{{"rejectedLogRecords":"2","errorMessage":"2 log records are older than the retention"}}}}')
            else ngx.print("{{}}") end }} }}
        location /busy {{ content_by_lua_block {{
            H.store(503); ngx.header["Retry-After"] = "600"; ngx.status = 503; ngx.say("busy"); return ngx.exit(503) }} }}
        location /trickle {{ content_by_lua_block {{
            H.store(200); ngx.status = 200; ngx.header["Content-Type"] = "text/plain"
            while true do
                ngx.print("x")
                local ok = ngx.flush(true)
                if not ok then return ngx.exit(444) end
                ngx.sleep(0.1)
            end }} }}
        location /every {{ content_by_lua_block {{
            if H.count("every") % tonumber(ngx.var.arg_n) == 0 then H.store(503); ngx.exit(503) end
            H.store(204); ngx.exit(204) }} }}
        location /small {{ client_max_body_size 64k; content_by_lua_block {{ H.store(204); ngx.exit(204) }} }}
        location /es/_bulk {{ content_by_lua_block {{
            H.store(200); ngx.header["Content-Type"] = "application/json"
            ngx.print('{{"took":1,"errors":false,"items":[]}}') }} }}
    }}
}}
"#
        );
        let conf_path = dir.join("conf/nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (apt-get install nginx libnginx-mod-http-lua)");
        let n = Nginx {
            port,
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                n.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// Requests `path` (a control location such as `/gate_open`) and waits for the answer.
    pub fn get(&self, path: &str) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// The bodies stored (2xx), in arrival order, gunzipped when they were gzip.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.join("bodies"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, p)| {
                let b = std::fs::read(p).unwrap();
                if b.starts_with(&[0x1f, 0x8b]) {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&b[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    b
                }
            })
            .collect()
    }

    /// The NDJSON lines of every stored body.
    pub fn lines(&self) -> Vec<String> {
        self.bodies()
            .iter()
            .flat_map(|b| {
                String::from_utf8_lossy(b)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Each request: (status, X-Rlog-Batch, body bytes).
    pub fn requests(&self) -> Vec<(u16, String, usize)> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (
                    f[1].parse().unwrap(),
                    f[2].to_string(),
                    f[3].parse().unwrap(),
                )
            })
            .collect()
    }

    /// Waits (60 s at most) until `pred` holds for the stored lines.
    pub fn wait_lines(&self, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let l = self.lines();
            if pred(&l) || Instant::now() > deadline {
                return l;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the nginx master this helper started (its own child).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGQUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
