"""The Python binding with an http logger, against Python's http.server as a fault script (a
test server, not a real collector): it answers 503 to the first requests, then 204, and keeps
every body it took. Every line arrives once; the stats balance."""

import http.server
import json
import threading

import pyhelpers  # noqa: F401  (puts bindings/python on sys.path)
import rlog  # noqa: E402


class Script(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fail = 3
    bodies = []
    ids = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            Script.ids.append(self.headers["X-Rlog-Batch"])
            failing = Script.fail > 0
            if failing:
                Script.fail -= 1
            else:
                Script.bodies.append(body)
        self.send_response(503 if failing else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_http_logger_from_python_through_a_503_storm():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = {
            "logger": f"web http://127.0.0.1:{srv.server_port}/ingest",
            "log_route": "web .",
            "retry_interval": 5,
            "max_batch_size": 100,
            "drop_limit": 1 << 24,
        }
        with rlog.Logger(cfg) as lg:
            for i in range(1000):
                lg.log(json.dumps({"i": i}))
            for _ in range(200):
                lg.flush()
                st = lg.stats()
                if st.sent == 1000:
                    break
            st = lg.stats()
            assert (st.sent, st.lost) == (1000, 0), st
            assert st.balanced()
        got = [json.loads(l)["i"] for b in Script.bodies for l in b.decode().splitlines()]
        assert sorted(got) == list(range(1000))
        assert len(got) == 1000
        assert Script.ids[0] == Script.ids[3], Script.ids[:5]  # the resend kept its batch id
    finally:
        srv.shutdown()
