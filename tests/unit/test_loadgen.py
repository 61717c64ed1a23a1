"""The open-loop load generator (ml/testing/loadgen.py) against a tiny local HTTP stub (no real server)."""

from __future__ import annotations

import http.server
import os
import threading
import time

import pytest

from ml.testing import loadgen


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stalls
    delay = 0.0
    seen: list[str] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers.get("X-Key", ""))
        time.sleep(self.delay)
        status = 200 if body == b'{"x": 1}' else 400
        out = b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def handle(self):
        try:
            super().handle()
        except ConnectionError:  # the generator closed a connection (stale, or at the end): not a failure
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    def start(delay: float = 0.0):
        handler = type("H", (_Handler,), {"delay": delay, "seen": []})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", handler

    servers: list = []
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_open_loop_rate_and_answers(stub):
    url, handler = stub()
    headers = [{"X-Key": "a"}, {"X-Key": "b"}]
    res = loadgen.run_step(url, "/p", '{"x": 1}', rate=100, seconds=1.0, headers=headers)
    s = loadgen.summarize(res)
    assert s["requests"] == 100 and s["errors"] == 0
    assert 80 <= s["throughput_rps"] <= 101
    assert s["p50_ms"] < 50
    assert res.connections <= 20  # connections are kept alive and reused
    assert handler.seen.count("a") == handler.seen.count("b") == 50  # header sets in turn
    assert len(res.late_ms) == 100 and 0 <= s["late_p50_ms"] < 20  # the generator's own lag, apart


def test_errors_are_counted_not_timed(stub):
    url, _ = stub()
    s = loadgen.summarize(loadgen.run_step(url, "/p", b"nope", rate=20, seconds=0.5))
    assert s["errors"] == 10 and s["p50_ms"] is None and s["error_statuses"] == [400]


def test_queueing_counts_in_the_latency(stub):
    # one connection, 20 ms per answer, 100 requests/s offered: the server keeps up with 50/s only, so
    # later requests wait for the connection, and that wait is in their latency (open loop: each request
    # starts on its schedule, not when the one before it is answered)
    url, _ = stub(delay=0.02)
    res = loadgen.run_step(url, "/p", '{"x": 1}', rate=100, seconds=0.5, max_connections=1)
    s = loadgen.summarize(res)
    assert s["errors"] == 0
    assert s["p99_ms"] > 150  # the last of 50 requests waits behind ~49 x 20 ms minus 0.5 s of schedule
    assert s["throughput_rps"] < 70
    assert s["late_p95_ms"] < 50  # the generator itself started them on time: the wait is the server's


def test_no_server_is_an_error_not_a_hang():
    port = 1  # nothing listens on port 1 of loopback
    res = loadgen.run_step(f"http://127.0.0.1:{port}", "/p", "{}", rate=20, seconds=0.2, timeout=1)
    assert loadgen.summarize(res)["errors"] == 4


def test_cpu_accounting():
    assert loadgen.cpu_seconds([os.getpid()]) >= 0
    assert loadgen.cpu_seconds([2**22 + 12345]) == 0  # a pid that is not there counts 0
    assert loadgen.pin(0, os.sched_getaffinity(0)) is True


def test_a_connection_closed_while_idle_is_replaced(stub, monkeypatch):
    # connections idle longer than IDLE_S are not reused; one the server closed anyway is retried once
    url, _ = stub()
    monkeypatch.setattr(loadgen, "IDLE_S", 0.01)
    s = loadgen.summarize(loadgen.run_step(url, "/p", '{"x": 1}', rate=20, seconds=0.3))
    assert s["errors"] == 0 and s["connections"] >= 2


def test_a_connection_the_server_closed_is_retried_once(stub):
    # an HTTP/1.0 server closes every connection after its answer without saying so: each reuse fails
    # before any byte of an answer and is sent again on a new connection
    url, handler = stub()
    handler.protocol_version = "HTTP/1.0"
    s = loadgen.summarize(loadgen.run_step(url, "/p", '{"x": 1}', rate=20, seconds=0.3))
    assert s["errors"] == 0 and s["requests"] == 6
