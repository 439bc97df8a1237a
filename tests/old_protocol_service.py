"""An algorithm service written to the old system's contract only, in the style of its shipped examples: standard
library only, a single-threaded ``http.server.HTTPServer`` (HTTP/1.0: one request at a time, the connection closed
after each answer, no Content-Length), registration checked with ``answer["ok"]`` (exits when it is missing),
heartbeats carrying the four stats fields, ``DELETE /unregister/{id}`` on SIGTERM.

Each inference request's fields are recorded, with proof that ``image_url`` (a JPEG) and ``algo_config_url`` (the
task's configuration as JSON) could be fetched; so are the answers of register, heartbeat and unregister. The record
is a JSON Lines file, one object per event: ``{"event": "registered" | "infer" | "heartbeat" | "unregistered", ...}``.

It answers every frame with one person, ``{success, result: {total_count, detections: [{class, confidence, bbox}],
region_results}, confidence, inference_time_ms}`` (a float, as the old examples measured it), and tags the
detection with the first enabled region of the fetched configuration, as region-aware services did.

``--label`` changes the class it answers (``no_helmet``: a helmet service), and ``--on-off ON OFF`` makes it see
the object only ``ON`` seconds out of every ``ON + OFF`` (on its own clock, from its start), answering
``total_count: 0`` and no detection in between: a violation that persists, then stops.

Usage: ``python old_protocol_service.py --easydarwin URL --record FILE [--service-id ID] [--task-types T ...]
[--heartbeat-interval SEC] [--label CLASS] [--on-off ON OFF]``.
"""

import argparse
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

PERSON = {"class": "person", "confidence": 0.95, "bbox": [10, 20, 110, 220]}


class Recorder:
    """Appends one JSON object per line, flushed at once (the test reads the file while the service runs)."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, event, **fields):
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, **fields}, ensure_ascii=False) + "\n")


class Stats:
    """The heartbeat's stats body, as the old example ``algorithm_service_with_stats_example.py`` kept it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total_requests = 0
        self.inference_ms_sum = 0.0
        self.last_inference_time_ms = 0.0
        self.last_total_time_ms = 0.0

    def record(self, inference_ms, total_ms):
        with self.lock:
            self.total_requests += 1
            self.inference_ms_sum += inference_ms
            self.last_inference_time_ms = inference_ms
            self.last_total_time_ms = total_ms

    def body(self):
        with self.lock:
            avg = self.inference_ms_sum / self.total_requests if self.total_requests else 0.0
            return {"total_requests": self.total_requests, "avg_inference_time_ms": round(avg, 2),
                    "last_inference_time_ms": round(self.last_inference_time_ms, 2),
                    "last_total_time_ms": round(self.last_total_time_ms, 2)}


def call(method, url, body=None):
    """(status, parsed JSON answer or the raw text) of one request to framewatch."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw.decode("utf-8"))
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read()


def regions_of(config):
    return [r for r in config.get("regions", []) if r.get("enabled", True)] if isinstance(config, dict) else []


class InferenceHandler(BaseHTTPRequestHandler):
    """The default ``BaseHTTPRequestHandler``: protocol HTTP/1.0, so the server closes the connection after each
    answer."""

    recorder = None
    stats = None
    label = PERSON["class"]
    on_off = None  # (on, off) seconds, or None: always seen
    started_at = time.monotonic()

    def seeing(self):
        if self.on_off is None:
            return True
        on, off = self.on_off
        return (time.monotonic() - self.started_at) % (on + off) < on

    def do_POST(self):
        started = time.time()
        if self.path != "/infer":
            self.send_error(404, "Not Found")
            return
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        image_ok = fetch(req["image_url"])[:2] == b"\xff\xd8"
        fetched = json.loads(fetch(req["algo_config_url"])) if req.get("algo_config_url") else None
        inference_start = time.time()
        regions = regions_of(fetched)
        detection = {**PERSON, "class": self.label}
        if regions:
            detection.update(region_id=regions[0]["id"], region_name=regions[0]["name"])
        seen = self.seeing()
        result = {"total_count": int(seen), "detections": [detection] if seen else [],
                  "region_results": [{"region_id": r["id"], "region_name": r["name"], "count": int(seen),
                                      "alert": seen} for r in regions]}
        inference_ms = (time.time() - inference_start) * 1000  # a float: JSON says 0.012, never 0
        self.stats.record(inference_ms, (time.time() - started) * 1000)
        self.recorder.write("infer", request=req, image_ok=image_ok, algo_config_fetched=fetched,
                            protocol=self.protocol_version)
        response = {"success": image_ok, "result": result, "confidence": PERSON["confidence"],
                    "inference_time_ms": inference_ms}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()  # no Content-Length: the body ends when the connection closes, as in the old examples
        self.wfile.write(json.dumps(response).encode("utf-8"))

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--easydarwin", required=True, help="the server's base URL (framewatch's HTTP API)")
    p.add_argument("--record", required=True, help="JSON Lines file recording what the service received")
    p.add_argument("--service-id", default="old_contract_service")
    p.add_argument("--name", default="old-contract person detector")
    p.add_argument("--task-types", nargs="+", default=["人员跌倒"])
    p.add_argument("--port", type=int, default=0, help="0: any free port")
    p.add_argument("--heartbeat-interval", type=float, default=30.0, help="seconds between heartbeats")
    p.add_argument("--label", default=PERSON["class"], help="the class of the object it answers")
    p.add_argument("--on-off", type=float, nargs=2, metavar=("ON", "OFF"),
                   help="see the object ON seconds out of every ON + OFF")
    args = p.parse_args()
    InferenceHandler.label = args.label
    InferenceHandler.on_off = tuple(args.on_off) if args.on_off else None
    InferenceHandler.started_at = time.monotonic()
    api = args.easydarwin.rstrip("/") + "/api/v1/ai_analysis"
    recorder = Recorder(args.record)
    InferenceHandler.recorder, InferenceHandler.stats = recorder, Stats()

    httpd = HTTPServer(("127.0.0.1", args.port), InferenceHandler)  # listening from here: frames wait in the backlog
    registration = {"service_id": args.service_id, "name": args.name, "task_types": args.task_types,
                    "endpoint": f"http://127.0.0.1:{httpd.server_address[1]}/infer", "version": "1.0.0"}
    status, answer = call("POST", f"{api}/register", registration)
    recorder.write("registered", status=status, answer=answer)
    try:
        answer["ok"]
    except (KeyError, TypeError):
        sys.exit(f"register failed: HTTP {status} {answer}")

    stop = threading.Event()

    def heartbeats():
        while not stop.wait(args.heartbeat_interval):
            sent = InferenceHandler.stats.body()
            status, answer = call("POST", f"{api}/heartbeat/{args.service_id}", sent)
            recorder.write("heartbeat", sent=sent, status=status, answer=answer)

    def unregister_then_stop():
        stop.set()
        status, answer = call("DELETE", f"{api}/unregister/{args.service_id}")
        recorder.write("unregistered", status=status, answer=answer)
        httpd.shutdown()  # serve_forever returns once the request being answered (if any) is answered

    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=unregister_then_stop).start())
    threading.Thread(target=heartbeats, daemon=True).start()
    httpd.serve_forever()
    httpd.server_close()


if __name__ == "__main__":
    main()
