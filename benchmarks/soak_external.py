"""A long soak of ``framewatch run`` measured from outside (issue 13, part 6).

What runs, each its own process:

- the RTSP test camera (``rtsp_camera.RtspServer`` under Debian's Python), ``--cameras`` mounts of the bundled clip
  scaled to 1280x720 (10 fps, a keyframe every second, no B-frames);
- ``framewatch run CONF`` (``sys.executable -m framewatch.supervisor run``), on a conf written into the out dir: one
  区域入侵 (intrusion) task per mount on the built-in detector (``[detector]`` defaults: SSDLite, runtime auto), plus
  one 安全帽检测 (helmet) task on the first mount, a type only an algorithm service serves; every task sampled every
  ``--interval-ms``; frames to the running SeaweedFS (S3/MinIO API, a fresh bucket), alerts to the Tansu broker
  (Kafka API, a fresh topic); the HTTP API on a free port; ``max_frame_count`` small so retention works;
- the old-protocol reference service (``tests/old_protocol_service.py``, answering ``no_helmet`` 30 s out of every
  60 s) serving the helmet task: every ``--service-period-min`` it leaves, alternately by SIGTERM (it unregisters)
  and by SIGKILL (its heartbeat expires after ``heartbeat_timeout_sec``), and comes back ``--service-off-min`` later.

This process samples every ``--sample-sec``: ``GET /metrics`` (Prometheus text) and ``GET /api/v1/status`` (JSON),
psutil on framewatch's pid (RSS, threads, fds, CPU), the size of the alert journal (``[alerts] spool_dir``) and of the
alert history, and appends one row to ``samples.csv`` (flushed per row, so a crash keeps it). Service and process
events go to ``events.jsonl``. At the end (the duration, Ctrl-C/SIGTERM, or framewatch dying) it writes
``summary.json``, ``summary.txt`` and ``soak.png``, stops framewatch with SIGTERM (exit code recorded and checked),
the service and the camera, and deletes the bucket and the topic.

Usage::

    .venv/bin/python -m framewatch.benchmarks.soak_external --hours 2 --out benchmarks/out/soak-external-<time>
    .venv/bin/python -m framewatch.benchmarks.soak_external --minutes 5 --out /tmp/soak-trial
    .venv/bin/python -m framewatch.benchmarks.soak_external --analyze benchmarks/out/soak-external-<time>

Exit status: 0 when framewatch ran the whole time and stopped with 0 on SIGTERM; 1 when it stopped otherwise or a
check failed; 2 when it died during the run; 3 when the set-up failed (servers missing, camera not starting).

The summary: the RSS slope (MB/h) fitted by least squares over the samples after the warm-up (default: the first
15 minutes or 20% of the run, whichever is shorter, excluded; goal <= 1 MB/h), thread and fd min/max/end, whether
every counter kept increasing, and the per-minute rates' min/median after the warm-up.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repo root is the package
OLD_SERVICE = ROOT / "tests" / "old_protocol_service.py"

S3_ENDPOINT = "127.0.0.1:9000"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
ACCESS_KEY = os.environ.get("FRAMEWATCH_MINIO_ACCESS_KEY") or "framewatch"
SECRET_KEY = os.environ.get("FRAMEWATCH_MINIO_SECRET_KEY") or "framewatch-secret"

INTRUSION = "区域入侵"
HELMET = "安全帽检测"
SERVICE_ID = "helmet-ref"
HEARTBEAT_TIMEOUT_SEC = 30.0
HEARTBEAT_INTERVAL_SEC = 10.0
RATE_WINDOW_SEC = 60.0  # per-minute rates: counter deltas over the last minute of samples

COUNTERS = ("sampled", "skipped", "inferred", "failed", "with_detections", "alerts", "alerts_written",
            "helmet_inferred", "service_completed")
FIELDS = ("time", "elapsed_s", "rss_mb", "threads", "fds", "cpu_percent", "stored", "spool_bytes", "history_bytes",
          *COUNTERS, "alerts_dropped", "in_flight",
          *(f"{c}_per_min" for c in ("sampled", "inferred", "alerts", "helmet_inferred")),
          "components_down", "restarts", "service_registered", "service_running", "internal_rss_mb", "error")


# --- helpers ------------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {"name": sum over its series, 'name{labels}': value} (enough for a few dozen series)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        out[name] = out.get(name, 0.0) + value
        if labels:
            out[name + labels] = value
    return out


def _dir_bytes(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Events:
    """events.jsonl: one JSON object per line, flushed at once."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path, self.t0 = path, t0

    def __call__(self, event: str, **fields: Any) -> None:
        rec = {"time": _now(), "elapsed_s": round(time.monotonic() - self.t0, 1), "event": event, **fields}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"[{rec['time']}] {event} {json.dumps(fields, ensure_ascii=False) if fields else ''}", flush=True)


# --- the conf -----------------------------------------------------------------------------------------------------


def write_conf(out: Path, urls: list[str], *, bucket: str, topic: str, http_port: int, interval_ms: int,
               max_frame_count: int) -> Path:
    tasks = []
    for k, url in enumerate(urls):
        tasks.append(f"""
[[frame_extractor.tasks]]
id = "cam-{k:02d}"
task_type = "{INTRUSION}"
rtsp_url = "{url}"
[frame_extractor.tasks.algo_config]
roi = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
""")
    tasks.append(f"""
[[frame_extractor.tasks]]
id = "helmet-00"
task_type = "{HELMET}"
rtsp_url = "{urls[0]}"
""")
    conf = f"""# Written by benchmarks/soak_external.py ({_now()}).
[frame_extractor]
enable = true
interval_ms = {interval_ms}
output_dir = "{out}/frames"
store = "minio"
max_frame_count = {max_frame_count}

[frame_extractor.minio]
endpoint = "{S3_ENDPOINT}"
bucket = "{bucket}"
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
base_path = "soak"
timeout_sec = 5.0
{"".join(tasks)}
[ai_analysis]
mq_type = "kafka"
mq_address = "{KAFKA_BOOTSTRAP}"
mq_topic = "{topic}"
heartbeat_timeout_sec = {HEARTBEAT_TIMEOUT_SEC}
save_only_with_detection = false
alert_batch_size = 50
alert_batch_interval_sec = 1.0

[backpressure]
policy = "fair"
high_watermark = 2
low_watermark = 1

[detector]

[alerts]
jsonl_path = "{out}/alerts/alerts.jsonl"
image_max_count = {max_frame_count}
spool_dir = "{out}/spool"

[http]
enable = true
host = "127.0.0.1"
port = {http_port}

[stats]
interval_sec = 5.0
path = "{out}/stats.json"
log = false
"""
    path = out / "soak.toml"
    path.write_text(conf, encoding="utf-8")
    return path


# --- servers: bucket and topic ------------------------------------------------------------------------------------


def create_topic(topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()


def delete_topic(topic: str) -> str:
    try:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=10_000)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
        return "deleted"
    except Exception as exc:  # noqa: BLE001 - clean-up is best effort, the reason is reported
        return f"not deleted: {exc!r}"[:300]


def topic_messages(topic: str) -> int | None:
    """Records in the topic, read back with a consumer of our own (Tansu's end_offsets are wrong for batches)."""
    try:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=KAFKA_BOOTSTRAP, enable_auto_commit=False,
                                 auto_offset_reset="earliest", consumer_timeout_ms=3000)
        try:
            consumer.assign([TopicPartition(topic, 0)])
            return sum(1 for _ in consumer)
        finally:
            consumer.close()
    except Exception:  # noqa: BLE001
        return None


def _minio():  # type: ignore[no-untyped-def]
    from minio import Minio

    return Minio(S3_ENDPOINT, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


def bucket_objects(bucket: str) -> int | None:
    try:
        return sum(1 for _ in _minio().list_objects(bucket, recursive=True))
    except Exception:  # noqa: BLE001
        return None


def delete_bucket(bucket: str) -> str:
    try:
        from minio.deleteobjects import DeleteObject

        client = _minio()
        if not client.bucket_exists(bucket):
            return "absent"
        names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
        for start in range(0, len(names), 1000):
            errors = list(client.remove_objects(bucket, [DeleteObject(n) for n in names[start:start + 1000]]))
            if errors:
                return f"not deleted: {errors[:3]!r}"
        client.remove_bucket(bucket)
        return f"deleted ({len(names)} objects)"
    except Exception as exc:  # noqa: BLE001
        return f"not deleted: {exc!r}"[:300]


# --- the service that comes and goes -------------------------------------------------------------------------------


class HelmetService:
    """tests/old_protocol_service.py as a subprocess: start, leave (SIGTERM: unregisters; SIGKILL: heartbeat expires)."""

    def __init__(self, out: Path, api_url: str) -> None:
        self.out, self.api_url = out, api_url
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.starts = 0

    def start(self) -> int:
        self.starts += 1
        # the record file grows by one line per frame: one file per start, deleted once it has left
        record = self.out / "service" / f"record-{self.starts}.jsonl"
        record.parent.mkdir(exist_ok=True)
        self._log = (self.out / "service" / "service.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(OLD_SERVICE), "--easydarwin", self.api_url, "--record", str(record),
             "--service-id", SERVICE_ID, "--name", "helmet reference", "--task-types", HELMET,
             "--heartbeat-interval", str(HEARTBEAT_INTERVAL_SEC), "--label", "no_helmet", "--on-off", "30", "30"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def leave(self, how: str, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        for f in (self.out / "service").glob("record-*.jsonl"):
            f.unlink(missing_ok=True)
        return proc.returncode


# --- sampling -----------------------------------------------------------------------------------------------------


class Sampler:
    def __init__(self, fw_pid: int, api_url: str, spool: Path, history: Path) -> None:
        import psutil

        self.proc = psutil.Process(fw_pid)
        self.proc.cpu_percent(None)
        self.api_url, self.spool, self.history = api_url, spool, history
        self.recent: list[tuple[float, dict[str, float]]] = []  # (elapsed, counters) of the last minute and a bit

    def sample(self, elapsed: float, service_running: bool) -> dict[str, Any]:
        row: dict[str, Any] = {"time": _now(), "elapsed_s": round(elapsed, 1), "service_running": int(service_running)}
        errors = []
        with self.proc.oneshot():
            row["rss_mb"] = round(self.proc.memory_info().rss / 2**20, 2)
            row["threads"] = self.proc.num_threads()
            row["fds"] = self.proc.num_fds()
            row["cpu_percent"] = round(self.proc.cpu_percent(None), 1)
        row["spool_bytes"] = _dir_bytes(self.spool)
        row["history_bytes"] = sum(p.stat().st_size for p in self.history.parent.glob(self.history.name + "*")
                                   if p.is_file())
        counters: dict[str, float] = {}
        try:
            m = parse_metrics(_get(self.api_url + "/metrics").decode("utf-8"))
            counters = {
                "sampled": m.get("framewatch_frames_sampled_total", 0.0),
                "skipped": m.get("framewatch_frames_skipped_total", 0.0),
                "inferred": m.get("framewatch_frames_inferred_total", 0.0),
                "failed": m.get("framewatch_frames_failed_total", 0.0),
                "with_detections": m.get("framewatch_frames_with_detections_total", 0.0),
                "alerts": m.get("framewatch_alerts_total", 0.0),
                "alerts_written": m.get("framewatch_alerts_written_total", 0.0),
                "helmet_inferred": m.get('framewatch_frames_inferred_total{camera="helmet-00"}', 0.0),
                "service_completed": m.get(f'framewatch_service_completed_total{{service="{SERVICE_ID}"}}', 0.0),
            }
            row.update({k: int(v) for k, v in counters.items()})
            row["stored"] = int(m.get("framewatch_frames_stored", 0.0))
            row["alerts_dropped"] = int(m.get("framewatch_alerts_dropped_total", 0.0))
            row["in_flight"] = int(m.get("framewatch_frames_in_flight", 0.0))
        except (OSError, ValueError) as exc:
            errors.append(f"metrics: {exc!r}"[:200])
        try:
            st = json.loads(_get(self.api_url + "/api/v1/status"))
            comps = st.get("components", {})
            down = {k: v for k, v in comps.items() if not str(v).startswith("up")}  # "up" or "up (detail)"
            row["components_down"] = len(down)
            row["restarts"] = sum(st.get("restarts", {}).values())
            svc = st.get("services", {}).get(SERVICE_ID)
            row["service_registered"] = int(svc is not None and svc.get("circuit") != "evicted")
            row["internal_rss_mb"] = st.get("process", {}).get("rss_mb")
            if down:
                errors.append(f"down: {down}"[:300])
        except (OSError, ValueError) as exc:
            errors.append(f"status: {exc!r}"[:200])
        if counters:
            self.recent.append((elapsed, counters))
            # keep the newest sample at least RATE_WINDOW_SEC old, and everything after it
            while len(self.recent) > 2 and self.recent[1][0] <= elapsed - RATE_WINDOW_SEC:
                self.recent.pop(0)
            t_old, c_old = self.recent[0]
            if elapsed - t_old >= RATE_WINDOW_SEC * 0.9:
                for c in ("sampled", "inferred", "alerts", "helmet_inferred"):
                    row[f"{c}_per_min"] = round((counters[c] - c_old[c]) * 60.0 / (elapsed - t_old), 2)
        row["error"] = "; ".join(errors)
        return row


# --- analysis -----------------------------------------------------------------------------------------------------


def _num(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def load_rows(out: Path) -> list[dict[str, Any]]:
    with (out / "samples.csv").open(newline="", encoding="utf-8") as f:
        return [{k: (_num(v) if k not in ("time", "error") else v) for k, v in r.items()} for r in csv.DictReader(f)]


def _events(out: Path) -> list[dict[str, Any]]:
    p = out / "events.jsonl"
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()] if p.exists() else []


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _slope_per_h(ts: list[float], ys: list[float]) -> float | None:
    if len(ts) < 3:
        return None
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    return None if den == 0 else sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 3600.0


def analyze(out: Path, warmup_sec: float | None = None) -> dict[str, Any]:
    rows = [r for r in load_rows(out) if r.get("rss_mb") is not None]
    events = _events(out)
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    if not rows:
        raise SystemExit(f"{out}/samples.csv has no samples")
    span = rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]
    if warmup_sec is None:
        warmup_sec = min(15 * 60.0, 0.2 * span)
    after = [r for r in rows if r["elapsed_s"] >= rows[0]["elapsed_s"] + warmup_sec]

    def col(rs: list[dict[str, Any]], k: str) -> list[float]:
        return [r[k] for r in rs if r.get(k) is not None]

    def mme(k: str) -> dict[str, Any]:
        xs = col(rows, k)
        return {"min": min(xs), "max": max(xs), "start": xs[0], "end": xs[-1],
                "after_warmup_min": min(col(after, k), default=None),
                "after_warmup_max": max(col(after, k), default=None)} if xs else {}

    rss_t = [r["elapsed_s"] for r in after]
    slope = _slope_per_h(rss_t, col(after, "rss_mb"))
    counters = {}
    for c in COUNTERS:
        xs = col(rows, c)
        decreases = sum(1 for a, b in zip(xs, xs[1:]) if b < a)
        # "kept increasing": it never went down, and it went up in every quarter of the run after the warm-up
        quarters = []
        if after:
            t0, t1 = after[0]["elapsed_s"], after[-1]["elapsed_s"]
            for q in range(4):
                lo, hi = t0 + (t1 - t0) * q / 4, t0 + (t1 - t0) * (q + 1) / 4
                seg = [r[c] for r in after if lo <= r["elapsed_s"] <= hi and r.get(c) is not None]
                quarters.append(bool(seg) and seg[-1] > seg[0])
        counters[c] = {"start": xs[0] if xs else None, "end": xs[-1] if xs else None, "decreases": decreases,
                       "rose_in_every_quarter_after_warmup": all(quarters) if quarters else None}
    rates = {}
    for c in ("sampled", "inferred", "alerts", "helmet_inferred"):
        xs = col(after, f"{c}_per_min")
        rates[c + "_per_min"] = {"min": min(xs, default=None), "median": _median(xs), "max": max(xs, default=None)}
    svc_events = [e for e in events if e["event"].startswith("service")]
    fw_events = [e for e in events if e["event"].startswith("framewatch")]
    down_rows = [r for r in rows if (r.get("components_down") or 0) > 0]
    summary: dict[str, Any] = {
        "out": str(out),
        "conf": meta.get("conf"),
        "started": rows[0]["time"], "ended": rows[-1]["time"],
        "samples": len(rows), "span_h": round(span / 3600, 3),
        "warmup_sec": round(warmup_sec, 1), "samples_after_warmup": len(after),
        "rss_mb": {**mme("rss_mb"), "slope_mb_per_h_after_warmup": None if slope is None else round(slope, 3),
                   "slope_mb_per_h_all": _r(_slope_per_h([r["elapsed_s"] for r in rows], col(rows, "rss_mb"))),
                   "goal_mb_per_h": 1.0, "within_goal": None if slope is None else slope <= 1.0},
        "threads": mme("threads"), "fds": mme("fds"),
        "threads_slope_per_h_after_warmup": _r(_slope_per_h(rss_t, col(after, "threads"))),
        "fds_slope_per_h_after_warmup": _r(_slope_per_h(rss_t, col(after, "fds"))),
        "stored": mme("stored"), "spool_bytes": mme("spool_bytes"), "history_bytes": mme("history_bytes"),
        "cpu_percent_median_after_warmup": _median(col(after, "cpu_percent")),
        "counters": counters,
        "counters_kept_increasing": all(v["decreases"] == 0 for v in counters.values())
        and all(counters[c]["rose_in_every_quarter_after_warmup"] for c in ("sampled", "inferred", "alerts")),
        "rates_after_warmup": rates,
        "samples_with_components_down": len(down_rows),
        "samples_with_errors": sum(1 for r in rows if r.get("error")),
        "errors_seen": sorted({r["error"] for r in rows if r.get("error")})[:10],
        "service": {"left": sum(1 for e in svc_events if e["event"] == "service_left"),
                    "started": sum(1 for e in svc_events if e["event"] == "service_started"),
                    "samples_registered": sum(1 for r in rows if r.get("service_registered")),
                    "samples_running": sum(1 for r in rows if r.get("service_running"))},
        "framewatch": {e["event"]: {k: v for k, v in e.items() if k not in ("event",)} for e in fw_events},
        "end": meta.get("end", {}),
    }
    log = out / "framewatch.log"
    if log.exists():
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
        bad = [ln for ln in text if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", ln)]
        summary["framewatch_log"] = {"lines": len(text), "warning_lines": sum(1 for ln in text if " WARNING " in ln),
                                     "error_lines": len(bad), "first_errors": bad[:8]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "summary.txt").write_text(summary_text(summary), encoding="utf-8")
    plot(out, rows, warmup_sec, events)
    return summary


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def summary_text(s: dict[str, Any]) -> str:
    r, t, f = s["rss_mb"], s["threads"], s["fds"]
    lines = [
        f"soak (external): {s['out']}",
        f"  {s['started']} .. {s['ended']}: {s['span_h']} h, {s['samples']} samples, warm-up {s['warmup_sec']:g} s",
        f"  RSS MB: start {r.get('start')}, end {r.get('end')}, min {r.get('min')}, max {r.get('max')}; "
        f"slope after warm-up {r['slope_mb_per_h_after_warmup']} MB/h (goal <= 1: "
        f"{'met' if r['within_goal'] else 'NOT met'}), whole run {r['slope_mb_per_h_all']} MB/h",
        f"  threads: min {t.get('min')} max {t.get('max')} end {t.get('end')} "
        f"(slope {s['threads_slope_per_h_after_warmup']}/h)",
        f"  fds:     min {f.get('min')} max {f.get('max')} end {f.get('end')} (slope {s['fds_slope_per_h_after_warmup']}/h)",
        f"  stored objects: min {s['stored'].get('min')} max {s['stored'].get('max')} end {s['stored'].get('end')}; "
        f"journal bytes max {s['spool_bytes'].get('max')}; history bytes end {s['history_bytes'].get('end')}",
        f"  framewatch CPU median {s['cpu_percent_median_after_warmup']}% of one core",
        f"  counters kept increasing: {s['counters_kept_increasing']}",
    ]
    for c, v in s["counters"].items():
        lines.append(f"    {c}: {v['start']} -> {v['end']} (decreases {v['decreases']}, "
                     f"rose every quarter {v['rose_in_every_quarter_after_warmup']})")
    lines.append("  per-minute rates after warm-up (min / median / max):")
    for c, v in s["rates_after_warmup"].items():
        lines.append(f"    {c}: {v['min']} / {v['median']} / {v['max']}")
    sv = s["service"]
    lines.append(f"  service: started {sv['started']}x, left {sv['left']}x; registered in {sv['samples_registered']} "
                 f"of {s['samples']} samples (running in {sv['samples_running']})")
    lines.append(f"  samples with a component down: {s['samples_with_components_down']}; with errors: "
                 f"{s['samples_with_errors']} {s['errors_seen'][:3]}")
    for k, v in s["framewatch"].items():
        lines.append(f"  {k}: {v}")
    if s.get("end"):
        lines.append(f"  end: {s['end']}")
    if "framewatch_log" in s:
        fl = s["framewatch_log"]
        lines.append(f"  framewatch.log: {fl['lines']} lines, {fl['warning_lines']} WARNING, {fl['error_lines']} ERROR")
        lines += [f"    {ln[:200]}" for ln in fl["first_errors"]]
    return "\n".join(lines) + "\n"


def plot(out: Path, rows: list[dict[str, Any]], warmup_sec: float, events: list[dict[str, Any]]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    h = [r["elapsed_s"] / 3600 for r in rows]

    def col(k: str) -> list[float]:
        return [r.get(k) if r.get(k) is not None else float("nan") for r in rows]

    fig, axes = plt.subplots(5, 1, figsize=(11, 14), sharex=True)
    ax = axes[0]
    ax.plot(h, col("rss_mb"), label="RSS (psutil, outside)")
    after = [(x, y) for x, y in zip(h, col("rss_mb")) if x * 3600 >= rows[0]["elapsed_s"] + warmup_sec and y == y]
    slope = _slope_per_h([x * 3600 for x, _ in after], [y for _, y in after])
    if slope is not None and len(after) >= 3:
        xs = [x for x, _ in after]
        my = sum(y for _, y in after) / len(after)
        mx = sum(xs) / len(xs)
        ax.plot([xs[0], xs[-1]], [my + slope * (xs[0] - mx), my + slope * (xs[-1] - mx)], "r--",
                label=f"fit after warm-up: {slope:+.2f} MB/h")
    ax.set_ylabel("RSS MB")
    ax.legend(loc="best")
    ax = axes[1]
    ax.plot(h, col("threads"), label="threads")
    ax.plot(h, col("fds"), label="fds")
    ax.set_ylabel("count")
    ax.legend(loc="best")
    ax = axes[2]
    ax.plot(h, col("stored"), label="stored objects")
    ax.set_ylabel("objects")
    ax2 = ax.twinx()
    ax2.plot(h, [v / 1024 if v == v else v for v in col("spool_bytes")], "g", label="journal KiB")
    ax2.plot(h, [v / 1024 if v == v else v for v in col("history_bytes")], "m", label="history KiB")
    ax2.set_ylabel("KiB")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    ax = axes[3]
    for c in ("sampled", "inferred", "alerts", "helmet_inferred"):
        ax.plot(h, col(f"{c}_per_min"), label=f"{c}/min")
    ax.set_ylabel("per minute")
    ax.legend(loc="best")
    ax = axes[4]
    ax.step(h, col("service_registered"), where="post", label="service registered")
    ax.step(h, col("components_down"), where="post", label="components down")
    ax.set_ylabel("state")
    ax.set_xlabel("hours")
    ax.legend(loc="best")
    for a in axes:
        a.axvline((rows[0]["elapsed_s"] + warmup_sec) / 3600, color="grey", ls=":", lw=1)
        for e in events:
            if e["event"] == "framewatch_died":
                a.axvline(e["elapsed_s"] / 3600, color="red", lw=1.5)
    fig.suptitle(f"framewatch soak measured from outside: {out.name}")
    fig.tight_layout()
    path = out / "soak.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --- the run ------------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from .rtsp_camera import Clip, RtspServer, RtspServerError, make_h264_clip, rtsp_unavailable

    duration = args.minutes * 60 if args.minutes else args.hours * 3600
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ev = Events(out / "events.jsonl", t0)
    meta: dict[str, Any] = {"started": _now(), "duration_sec": duration, "argv": sys.argv}

    def save_meta() -> None:
        (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")

    for host_port in (S3_ENDPOINT, KAFKA_BOOTSTRAP):
        host, port = host_port.split(":")
        if not _port_open(host, int(port)):
            print(f"no server at {host_port}: start them with `bash .ci/servers.sh start`", file=sys.stderr)
            return 3
    reason = rtsp_unavailable()
    if reason is not None:
        print(f"the RTSP test camera cannot run: {reason}", file=sys.stderr)
        return 3

    stop_requested = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop_requested["signal"] = signal.Signals(signum).name
        raise _Stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    tag = uuid.uuid4().hex[:8]
    bucket, topic = f"fw-soak-{tag}", f"fw-soak-{tag}"
    camera = fw = None
    service: HelmetService | None = None
    fw_log = None
    status = 0
    try:
        clip = Clip(width=1280, height=720, fps=10, gop=10, bframes=0)
        (out / "clip").mkdir(exist_ok=True)
        camera = RtspServer(make_h264_clip(out / "clip", clip=clip), mount=[f"/cam{k}" for k in range(args.cameras)],
                            fps=clip.served_fps)
        try:
            camera.start()
        except RtspServerError as exc:
            print(f"the RTSP test camera did not start: {exc}", file=sys.stderr)
            return 3
        ev("camera_started", pid=camera.pid, urls=camera.urls)
        create_topic(topic)
        http_port = _free_port()
        conf = write_conf(out, camera.urls, bucket=bucket, topic=topic, http_port=http_port,
                          interval_ms=args.interval_ms, max_frame_count=args.max_frame_count)
        api = f"http://127.0.0.1:{http_port}"
        meta.update(conf=str(conf), bucket=bucket, topic=topic, api=api, camera_pid=camera.pid)
        check = subprocess.run([sys.executable, "-m", "framewatch.supervisor", "check", str(conf)],
                               capture_output=True, text=True, cwd=out, timeout=120)
        if check.returncode != 0:
            print(f"framewatch check failed:\n{check.stdout}{check.stderr}", file=sys.stderr)
            return 3
        fw_log = (out / "framewatch.log").open("ab")
        fw = subprocess.Popen([sys.executable, "-m", "framewatch.supervisor", "run", str(conf)], cwd=out,
                              stdin=subprocess.DEVNULL, stdout=fw_log, stderr=subprocess.STDOUT)
        meta["framewatch_pid"] = fw.pid
        save_meta()
        ev("framewatch_started", pid=fw.pid, conf=str(conf))
        deadline = time.monotonic() + 90
        while True:
            if fw.poll() is not None:
                ev("framewatch_died", exit_code=fw.returncode, phase="start-up")
                status = 2
                return 2
            try:
                _get(api + "/api/v1/status", timeout=2)
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    ev("framewatch_not_ready", after_sec=90)
                    status = 2
                    return 2
                time.sleep(0.5)
        ev("framewatch_ready", after_sec=round(time.monotonic() - t0, 1))
        service = HelmetService(out, api)
        ev("service_started", pid=service.start())
        sampler = Sampler(fw.pid, api, out / "spool", out / "alerts" / "alerts.db")
        period, off = args.service_period_min * 60, args.service_off_min * 60
        next_leave, next_back = time.monotonic() + period, None
        leaves = 0
        with (out / "samples.csv").open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
            if f.tell() == 0:
                writer.writeheader()
            t_start = time.monotonic()
            next_sample = t_start
            while True:
                now = time.monotonic()
                if fw.poll() is not None:
                    ev("framewatch_died", exit_code=fw.returncode, phase="run")
                    status = 2
                    break
                if now - t_start >= duration:
                    break
                if next_back is None and now >= next_leave:
                    how = "term" if leaves % 2 == 0 else "kill"
                    leaves += 1
                    code = service.leave(how)
                    ev("service_left", how=how, exit_code=code)
                    next_back = now + off
                elif next_back is not None and now >= next_back:
                    ev("service_started", pid=service.start())
                    next_back, next_leave = None, now + period
                if now >= next_sample:
                    import psutil

                    try:
                        row = sampler.sample(now - t_start, service.running)
                    except psutil.NoSuchProcess:
                        continue  # poll() says so next round
                    writer.writerow(row)
                    f.flush()
                    next_sample += args.sample_sec
                    if int(now - t_start) // 60 != int(now - t_start - args.sample_sec) // 60 or row["error"]:
                        print(f"[{row['time']}] {row['elapsed_s']:>7.0f}s rss {row['rss_mb']} MB thr {row['threads']} "
                              f"fds {row['fds']} stored {row.get('stored')} inferred {row.get('inferred')} "
                              f"alerts {row.get('alerts')} svc {row.get('service_registered')} {row['error']}",
                              flush=True)
                time.sleep(max(0.05, min(next_sample, next_leave if next_back is None else next_back)
                               - time.monotonic()))
    except _Stop:
        ev("interrupted", signal=stop_requested["signal"])
    except Exception as exc:  # noqa: BLE001 - recorded, then everything started is stopped
        ev("harness_error", error=repr(exc)[:500])
        status = status or (3 if fw is None else 1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        end: dict[str, Any] = {}
        if fw is not None:
            if fw.poll() is None:
                fw.send_signal(signal.SIGTERM)
                t = time.monotonic()
                try:
                    fw.wait(60)
                    end["framewatch_exit_code"] = fw.returncode
                    end["framewatch_stop_sec"] = round(time.monotonic() - t, 1)
                except subprocess.TimeoutExpired:
                    fw.kill()
                    fw.wait(10)
                    end["framewatch_exit_code"] = f"killed after 60 s ({fw.returncode})"
                ev("framewatch_stopped", **end)
                if end.get("framewatch_exit_code") != 0 and status == 0:
                    status = 1
            else:
                end["framewatch_exit_code"] = fw.returncode
                end["framewatch_died_before_stop"] = True
                status = status or 2
        if fw_log is not None:
            fw_log.close()
        if service is not None:
            end["service_exit"] = service.leave("term")
        if camera is not None:
            end["camera_exit"] = camera.stop()
        if "bucket" in meta:
            end["bucket_objects_at_end"] = bucket_objects(bucket)
            end["topic_messages"] = topic_messages(topic)
            if not args.keep:
                end["bucket"] = delete_bucket(bucket)
                end["topic"] = delete_topic(topic)
        meta["end"] = end
        meta["ended"] = _now()
        meta["exit_status"] = status
        save_meta()
        ev("ended", **end)
        if (out / "samples.csv").exists():
            try:
                s = analyze(out, None if args.warmup_min is None else args.warmup_min * 60)
                print(summary_text(s), flush=True)
            except SystemExit as exc:
                print(exc, file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=2.0, help="run this long (default 2)")
    p.add_argument("--minutes", type=float, default=None, help="run this many minutes instead (short trials)")
    p.add_argument("--out", default=None, help="output dir (default benchmarks/out/soak-external-<time>)")
    p.add_argument("--analyze", metavar="DIR", default=None,
                   help="only recompute summary.json/.txt and soak.png from DIR/samples.csv")
    p.add_argument("--warmup-min", type=float, default=None,
                   help="warm-up excluded from the fits (default: 15 min or 20%% of the run, the shorter)")
    p.add_argument("--cameras", type=int, default=4, help="RTSP test camera mounts, one intrusion task each")
    p.add_argument("--interval-ms", type=int, default=1000, help="sampling interval of every task")
    p.add_argument("--max-frame-count", type=int, default=200, help="frames kept per task (retention)")
    p.add_argument("--sample-sec", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--service-period-min", type=float, default=10.0, help="the service leaves this often")
    p.add_argument("--service-off-min", type=float, default=2.0, help="and comes back this much later")
    p.add_argument("--keep", action="store_true", help="keep the bucket and the topic")
    args = p.parse_args(argv)
    if args.analyze:
        s = analyze(Path(args.analyze).resolve(), None if args.warmup_min is None else args.warmup_min * 60)
        print(summary_text(s))
        return 0
    if args.out is None:
        args.out = str(ROOT / "benchmarks" / "out" / ("soak-external-" + time.strftime("%Y%m%d-%H%M%S")))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
