"""The HTTP API cannot be used to hurt the box: every malformed body is a 400 with a reason, a client that goes away
is a debug line, slow clients hold sockets and never threads (the status endpoint keeps answering, the thread count
stays put), services and their stats are bounded, and an endpoint cannot point framewatch at the metadata service,
carry credentials or leave the allowed networks. Each case runs a real framewatch (``Running``, ``[http]`` on port
0) and checks that nothing logged a traceback."""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from framewatch.actors.api.http import HttpApi
from framewatch.actors.core.config import ConfigError, HttpConf, decode_config
from framewatch.actors.core.supervision import StartError
from framewatch.actors.inference.registry import Registry, ServiceInfo
from framewatch.actors.inference.remote import InflightImages
from framewatch.actors.system import Running

from tests.waiting import wait_for

SMOKING = "吸烟检测"
TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
API = "/api/v1/ai_analysis/"


def conf(tmp_path: Path, http: str = "") -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
max_frame_count = 20
[[frame_extractor.tasks]]
id = "cam-0"
task_type = "{SMOKING}"
rtsp_url = "synthetic://cam-0?width=160&height=120&fps=5"
interval_ms = 500
[frame_extractor.tasks.algo_config]
sensitivity = 1
[detector]
backend = "noop"
actors = 1
[http]
enable = true
port = 0
token = "{TOKEN}"
{http}
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
interval_sec = 60
path = "{tmp_path}/stats.json"
"""


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="framewatch")
    return caplog


def assert_no_traceback(logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """No log record carries an exception, and nothing (the standard library's servers) printed a traceback."""
    with_exc = [r.getMessage() for r in logs.records if r.exc_info or "Traceback" in r.getMessage()]
    assert with_exc == []
    assert "Traceback" not in capfd.readouterr().err


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    """``start(http_extra)`` -> a running framewatch; every one is stopped after the test."""
    started: list[Running] = []

    def run(http: str = "") -> Running:
        fw = Running(decode_config(conf(tmp_path, http)))
        started.append(fw)
        return fw

    try:
        yield run
    finally:
        for fw in started:
            fw.stop()


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def register(fw: Running, endpoint: str, sid: str = "svc", **fields: Any) -> tuple[int, dict[str, Any]]:
    body = {"service_id": sid, "name": "n", "task_types": [SMOKING], "endpoint": endpoint, **fields}
    status, answer = call(fw.http_url + API + "register", "POST", json.dumps(body).encode(), AUTH)
    return status, json.loads(answer)


def address(fw: Running) -> tuple[str, int]:
    host, _, port = fw.http_url.removeprefix("http://").rpartition(":")
    return host, int(port)


def exchange(fw: Running, request: bytes, timeout: float = 10) -> tuple[int, bytes]:
    """One raw request on a new connection: (status, body), (0, b"") when the server closed without answering."""
    with socket.create_connection(address(fw), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return (0, b"") if not data else (int(data.split()[1]), b"")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(head.split()[1]), body


def post(path: str, body: bytes, *, token: bool = True, length: int | None = None) -> bytes:
    auth = f"Authorization: Bearer {TOKEN}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n").encode() + body


def error_of(body: bytes) -> str:
    return json.loads(body)["error"]


BAD_BODIES = [  # (path, body, status, words in the reason)
    (API + "register", b'{"service_id": "a", "name": "\xff\xfe", "task_types": ["x"], "endpoint": "http://a/"}', 400,
     "a string is not valid UTF-8"),
    (API + "register", b'{"name": "n", "task_types": ["\xe5\x90"], "endpoint": "http://a/"}', 400,
     "not valid UTF-8"),
    (API + "register", b'{"\xc3\x28": 1}', 400, "Object missing required field `name`"),  # unknown keys: skipped
    (API + "register", b'{"name": "n", "task_', 400, "not valid JSON"),
    (API + "register", b"\x00\x01\x02\xff", 400, "not valid JSON"),
    (API + "register", b"[]", 400, "Expected `object`, got `array`"),
    (API + "register", b"null", 400, "Expected `object`, got `null`"),
    (API + "heartbeat/ghost", b'{"total_requests": "\xff"}', 400, "Expected `int`, got `str`"),
    (API + "heartbeat/ghost", b'{"total_requests": 1', 400, "not valid JSON"),
    ("/api/v1/frame_extractor/tasks", b'{"id": "\xff\xff"}', 400, "not valid UTF-8"),
    ("/api/v1/frame_extractor/tasks", b"{{{{", 400, "not valid JSON"),
]


def test_bad_utf8_and_every_malformed_body_are_a_400_with_a_reason_and_no_traceback(start, logs, capfd):
    fw = start()
    for path, body, status, reason in BAD_BODIES:
        got, answer = exchange(fw, post(path, body))
        assert (got, reason in error_of(answer)) == (status, True), (path, body, answer)
    assert exchange(fw, post(API + "register", b"{}", length=-1))[0] == 400
    assert error_of(exchange(fw, post(API + "register", b"", length=0))[1]) == "empty body: expected a JSON object"
    bad_length = b"POST /api/v1/ai_analysis/register HTTP/1.1\r\nContent-Length: ten\r\nConnection: close\r\n\r\n"
    assert exchange(fw, bad_length) == (400, b'{"error":"Content-Length is not a number"}')
    assert exchange(fw, b"GET / HTTP/x.y\r\n\r\n")[0] == 400  # the standard library's parser: a bad request line
    assert exchange(fw, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n")[0] == 431  # too many headers
    assert exchange(fw, b"GET /api/v1/status HTTP/1.1\r\nX: " + b"a" * 70_000)[0] == 431  # a head that never ends
    # A body shorter than its Content-Length, then the client stops sending: closed, no answer, no worker held.
    with socket.create_connection(address(fw), timeout=10) as sock:
        sock.sendall(post(API + "register", b'{"name": ', length=500))
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    status, listing = call(fw.http_url + API + "services")
    assert (status, json.loads(listing)) == (200, {"services": [], "total": 0})
    assert_no_traceback(logs, capfd)


def test_a_client_that_goes_away_before_reading_its_answer_is_a_debug_line_not_a_traceback(start, logs, capfd):
    fw = start()
    stats = fw.system.http.statistics
    before = stats()
    for i in range(60):
        sock = socket.create_connection(address(fw), timeout=10)
        path = "/api/v1/status" if i % 2 else API + "services"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        sock.close()
    wait_for(lambda: (s := stats()).open_connections == 0 and s.accepted >= before.accepted + 60, 10,
             "the 60 connections closed")
    assert call(fw.http_url + "/api/v1/status")[0] == 200
    http_records = [r for r in logs.records if r.name.startswith("framewatch.actors.api.")]
    assert [r.getMessage() for r in http_records if r.levelno > logging.DEBUG and "listening" not in r.getMessage()] \
        == []
    assert_no_traceback(logs, capfd)


def slow_sockets(fw: Running, count: int) -> list[socket.socket]:
    """``count`` connections that send the start of a request head and then nothing."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address(fw), timeout=10)
        sock.sendall(b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\n")
        socks.append(sock)
    return socks


def test_300_slow_sockets_do_not_stop_the_status_endpoint_and_threads_return_to_baseline(start, logs, capfd):
    fw = start()
    assert call(fw.http_url + "/api/v1/status")[0] == 200
    stats = fw.system.http.statistics
    wait_for(lambda: stats().open_connections == 0, 10, "the first connection closed")
    baseline = threading.active_count()
    socks = slow_sockets(fw, 300)
    try:
        wait_for(lambda: stats().waiting >= 300, 10, "300 connections held by the selector")
        for _ in range(5):
            t0 = time.monotonic()
            status, _ = call(fw.http_url + "/api/v1/status", timeout=5)
            assert status == 200 and time.monotonic() - t0 < 3
        assert threading.active_count() <= baseline  # a slow client holds a socket, not a thread
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: stats().open_connections == 0, 10, "the 300 connections closed")
    wait_for(lambda: threading.active_count() == baseline, 10, "the thread count back to its baseline")
    assert_no_traceback(logs, capfd)


def closed_by_server(sock: socket.socket) -> bool:
    """Closed: an end of file, or a reset when the server closed it before reading what it had been sent."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_past_max_connections_the_longest_waiting_connection_is_closed_and_status_answers(start, logs, capfd):
    fw = start("max_connections = 16")
    socks = slow_sockets(fw, 40)
    try:
        stats = fw.system.http.statistics
        wait_for(lambda: stats().closed_over_cap >= 24, 10, "connections closed at the cap")
        assert closed_by_server(socks[0])  # the oldest went first
        assert call(fw.http_url + "/api/v1/status", timeout=5)[0] == 200
        assert stats().open_connections <= 16
    finally:
        for sock in socks:
            sock.close()
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING and "max_connections" in
                r.getMessage()]
    assert len(warnings) == 1, warnings  # one warning, the rest at debug level
    assert_no_traceback(logs, capfd)


def test_a_head_that_does_not_arrive_within_head_timeout_sec_is_answered_408_and_closed(start, logs, capfd):
    fw = start("head_timeout_sec = 0.5")
    [sock] = slow_sockets(fw, 1)
    with sock:
        t0 = time.monotonic()
        answer = sock.recv(1000)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"request head not received within 0.5 s" in answer
        assert time.monotonic() - t0 < 3
        assert sock.recv(100) == b""
    assert_no_traceback(logs, capfd)


def test_registering_more_than_max_services_is_a_429_naming_the_limit(start, logs, capfd):
    fw = start("max_services = 3")
    for i in range(3):
        assert register(fw, f"http://127.0.0.1:{9000 + i}/infer", sid=f"s{i}")[0] == 200
    assert register(fw, "http://127.0.0.1:9100/infer", sid="s3") == (429, {
        "error": "service limit reached: 3 services are registered ([http] max_services = 3); unregister one first, "
                 "or raise the limit"})
    assert register(fw, "http://127.0.0.1:9000/infer", sid="s0")[0] == 200  # the same id again is no new one
    assert register(fw, "http://127.0.0.1:9001/infer", sid="s1-restarted")[0] == 200  # same endpoint, new id
    assert call(fw.http_url + API + "unregister/s2", "DELETE", headers=AUTH)[0] == 200
    assert register(fw, "http://127.0.0.1:9100/infer", sid="s3")[0] == 200
    assert json.loads(call(fw.http_url + API + "services")[1])["total"] == 3
    assert_no_traceback(logs, capfd)


def test_heartbeat_stats_keep_only_the_known_fields_whatever_their_size(start, logs, capfd):
    fw = start()
    assert register(fw, "http://127.0.0.1:9/infer")[0] == 200
    huge = {"total_requests": 3, "avg_inference_time_ms": 12.5, "junk": "x" * 900_000,
            "nested": [{"k": list(range(50))}] * 200}
    status, _ = call(fw.http_url + API + "heartbeat/svc", "POST", json.dumps(huge).encode(), AUTH)
    assert status == 200
    status, listing = call(fw.http_url + API + "services")
    assert status == 200 and len(listing) < 2000
    [entry] = json.loads(listing)["services"]
    assert (entry["total_requests"], entry["avg_inference_time_ms"], "junk" in entry) == (3, 12.5, False)
    status, answer = exchange(fw, post(API + "heartbeat/svc", b"", length=1_100_000))  # answered before it is sent
    assert (status, "larger than max_body_bytes" in error_of(answer)) == (413, True)
    assert len(call(fw.http_url + "/api/v1/status")[1]) < 100_000
    assert_no_traceback(logs, capfd)


REFUSED = [  # (endpoint, words in the reason)
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local or metadata address"),
    ("http://2852039166/x", "'2852039166' is at 169.254.169.254, a link-local or metadata address"),
    ("http://[fe80::1]:8000/x", "fe80::1 is a link-local or metadata address"),
    ("http://metadata.google.internal/computeMetadata/v1/", "'metadata.google.internal' is a cloud metadata service"),
    ("http://h:99999/x", "bad port '99999'; use a number from 1 to 65535"),
    ("http://h:0/x", "bad port '0'"),
    ("http://user:pw@h:1/x", "bad algorithm service endpoint 'http://***@h:1/x': credentials (user:password@) are "
                             "not accepted"),
    ("http://admin@10.0.0.5:8000/infer", "credentials (user:password@) are not accepted"),
]


def test_metadata_bad_port_and_credential_endpoints_are_refused_with_422_and_never_shown(start, logs, capfd):
    fw = start()
    for endpoint, reason in REFUSED:
        status, answer = register(fw, endpoint)
        assert (status, reason in answer["error"], answer["error"].endswith("- at `$.endpoint`")) == \
            (422, True, True), (endpoint, answer)
        assert "pw@" not in answer["error"]
    assert json.loads(call(fw.http_url + API + "services")[1])["total"] == 0
    assert not [r for r in logs.records if "pw@" in r.getMessage()]
    # The default lets loopback and private networks in (services on the same box or the LAN).
    assert register(fw, "http://127.0.0.1:9/infer", sid="on-box")[0] == 200
    assert register(fw, "http://192.168.7.20:8000/infer", sid="lan")[0] == 200
    assert register(fw, "http://localhost:9001/infer", sid="by-name")[0] == 200
    assert_no_traceback(logs, capfd)


def test_allow_link_local_lets_a_link_local_endpoint_register(start, logs, capfd):
    fw = start("allow_link_local = true")
    assert register(fw, "http://169.254.10.20:8000/infer")[0] == 200
    assert register(fw, "http://metadata.google.internal/x", sid="md")[0] == 200
    assert register(fw, "http://u:p@169.254.10.21/x", sid="cred")[0] == 422  # credentials stay refused
    assert_no_traceback(logs, capfd)


def test_service_networks_refuses_endpoints_outside_them_and_lets_a_matching_one_in(start, logs, capfd):
    fw = start('service_networks = ["10.0.0.0/8", "fd00:1::/64"]')
    status, answer = register(fw, "http://127.0.0.1:9/infer")
    assert (status, answer["error"]) == (422, "'127.0.0.1' (127.0.0.1) is not in [http] service_networks "
                                              "(10.0.0.0/8, fd00:1::/64) - at `$.endpoint`")
    assert register(fw, "http://localhost:9/infer")[0] == 422  # a name: its addresses are checked
    assert "cannot resolve" in register(fw, "http://no-such-host.invalid/infer")[1]["error"]
    assert register(fw, "http://10.1.2.3:8000/infer", sid="in-net")[0] == 200
    assert register(fw, "http://[fd00:1::5]:8000/infer", sid="in-net-6")[0] == 200
    assert json.loads(call(fw.http_url + API + "services")[1])["total"] == 2
    assert_no_traceback(logs, capfd)


def test_a_service_network_that_is_not_a_cidr_is_a_conf_error(tmp_path):
    with pytest.raises(ConfigError, match=r"service_networks\[1\] = '10.0.0.0/33' is not a network"):
        decode_config(conf(tmp_path, 'service_networks = ["10.0.0.0/8", "10.0.0.0/33"]'))


def test_token_for_reads_guards_every_read_but_the_console_and_in_flight_frames(start, logs, capfd):
    fw = start("token_for_reads = true")
    for path in ("/api/v1/status", "/metrics", API + "services", API + "algo_config/cam-0",
                 "/api/v1/frame_extractor/tasks"):
        status, answer = call(fw.http_url + path)
        assert (status, error_of(answer)) == (401, "missing or wrong token: send Authorization: Bearer <token>"), path
        assert call(fw.http_url + path, headers={"Authorization": "Bearer nope"})[0] == 401
    assert call(fw.http_url + "/api/v1/status", headers=AUTH)[0] == 200
    assert call(fw.http_url + API + "services", headers=AUTH)[0] == 200
    assert call(fw.http_url + "/frames/0123456789abcdef.jpg")[0] == 404  # a capability URL: no token, no leak
    assert call(fw.http_url + "/")[0] in (200, 404)  # the console page holds no data
    assert_no_traceback(logs, capfd)


def test_token_for_reads_without_a_token_fails_the_start_naming_the_setting():
    api = HttpApi(HttpConf(enable=True, port=0, token_for_reads=True), registry=Registry(heartbeat_timeout_sec=60,
                  circuit_open_sec=5), images=InflightImages(), snapshot=lambda: None,  # type: ignore[arg-type,return-value]
                  task_types=[SMOKING])
    with pytest.raises(StartError, match="token_for_reads = true needs a token"):
        api.start()
    assert api.stop()


def test_an_endpoint_with_credentials_built_in_code_is_redacted_in_listings_stats_and_logs(logs):
    registry = Registry(heartbeat_timeout_sec=60, circuit_open_sec=5)
    registry.register(ServiceInfo(service_id="s", name="n", task_types=(SMOKING,),
                                  endpoint="http://user:secret@10.0.0.5:8000/infer", version="", max_concurrency=1,
                                  mode="url"))
    [entry] = registry.listing()
    assert entry["endpoint"] == "http://***@10.0.0.5:8000/infer"
    assert registry.statistics({}, {})["s"].endpoint == "http://***@10.0.0.5:8000/infer"
    assert not [r for r in logs.records if "secret" in r.getMessage()]
