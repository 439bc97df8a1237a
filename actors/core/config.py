"""Configuration: TOML decoded into frozen Structs, validated once at the edge.

The old system's sections keep their key names and meanings (``[frame_extractor]``, ``[frame_extractor.minio]``,
``[[frame_extractor.tasks]]``, ``[ai_analysis]``). framewatch adds ``[backpressure]``, ``[detector]``, ``[alerts]``,
``[stats]``, ``[supervision]`` and ``[http]``. The file may be the old server's whole ``config.toml``: top-level
tables and keys that are not framewatch's (the media server's own ``[base]``, ``[rtspconfig]``, ``lanip``...) are
named in one notice and otherwise ignored. Inside framewatch's tables unknown keys are errors; keys that meant
something to the old system but nothing now are accepted and reported once, at start, as ignored.

Every error names the key path (``$.frame_extractor.tasks[1].interval_ms``) and the reason; ``load_config`` raises
``ConfigError`` and the CLI exits with code 2. What cannot work is refused here, not at start: malformed camera URLs,
missing video files, a MinIO bucket S3 would refuse, an endpoint that is not host:port, missing S3 credentials.
Validation does no network I/O (it stats the local files that tasks read); environment overrides for secrets are
applied right after decoding, before the checks, so a key given only in the environment counts.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from ..analytics.rules import OLD_TASK_TYPES, decode_algo_config, error_path
from .urls import ASSET_PREFIX, ASSETS_DIR, check_endpoint, check_source_url, resolve_asset  # noqa: F401  (re-exported: sources, detectors, benchmarks use them)
from .urls import check_url_host, redact_url

#: An unset ``max_frame_count`` means this many frames per task, not "unlimited" (the old system's default).
SAFE_MAX_FRAME_COUNT = 1000
#: An unset ``save_alert_image`` stores the task's alert images: the old system had no global switch, only this default.
DEFAULT_SAVE_ALERT_IMAGE = True
T = TypeVar("T")
ENV_ACCESS_KEY = "FRAMEWATCH_MINIO_ACCESS_KEY"
ENV_SECRET_KEY = "FRAMEWATCH_MINIO_SECRET_KEY"

PositiveMs = Annotated[int, Meta(ge=1, le=86_400_000)]
Seconds = Annotated[float, Meta(gt=0, le=86_400)]
AgeSeconds = Annotated[float, Meta(gt=0, le=10 * 366 * 86_400)]  # retention ages: up to ten years


class ConfigError(Exception):
    """A configuration that cannot run; the message names the key path and the reason."""


class _Conf(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class MinioConf(_Conf):
    endpoint: str = "127.0.0.1:9000"
    """host:port of the S3/MinIO API, without scheme."""
    bucket: str = "images"
    access_key: str = ""
    """May come from FRAMEWATCH_MINIO_ACCESS_KEY instead (the environment wins)."""
    secret_key: str = ""
    """May come from FRAMEWATCH_MINIO_SECRET_KEY instead (the environment wins). Never logged."""
    use_ssl: bool = False
    base_path: str = ""
    """Prefix of every key in the bucket."""
    timeout_sec: Annotated[float, Meta(gt=0, le=300)] = 5.0

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return (
            f"MinioConf(endpoint={self.endpoint!r}, bucket={self.bucket!r}, use_ssl={self.use_ssl}, "
            f"base_path={self.base_path!r}, access_key={'***' if self.access_key else ''!r}, "
            f"secret_key={'***' if self.secret_key else ''!r})"
        )


class TaskConf(_Conf):
    id: Annotated[str, Meta(min_length=1, max_length=128)]
    task_type: str
    rtsp_url: Annotated[str, Meta(min_length=1)]
    """rtsp:// URL, a video file path, ``asset:NAME`` or ``synthetic://?width=640&height=360&fps=25``; checked by
    ``urls.check_source_url`` for every task, enabled or not (a disabled task may be enabled later)."""
    interval_ms: PositiveMs | None = None
    """Sampling interval; unset means ``frame_extractor.interval_ms``."""
    output_path: str | None = None
    """Directory of this task's frames under the storage root; unset means ``<task_type>/<id>``."""
    enabled: bool = True
    max_frame_count: Annotated[int, Meta(ge=0)] | None = None
    """Frames kept for this task; unset means the global value; 0 means unlimited (warned about)."""
    preferred_algorithm_endpoint: str | None = None
    """Pin the task to one algorithm service: its frames go only to the service registered with this ``endpoint``
    (``http(s)://HOST[:PORT]/PATH``, as the service sends it to ``/register``), never load-balanced; the old system's
    way to keep per-camera state (tripwire counting) in one service. Unset: any service of the task type."""
    config_status: Literal["unconfigured", "configured"] | None = None
    """Informational: whether the web console has drawn this task's regions yet. framewatch does not read it."""
    preview_image: str | None = None
    """Informational: the key of the web console's preview image of this camera. framewatch does not read it."""
    save_alert_image: bool | None = None
    """Store this task's alert images; unset means the global default (``DEFAULT_SAVE_ALERT_IMAGE``: stored). False:
    its alerts still go out, without an image (``image_stored: false``)."""
    max_age_sec: AgeSeconds | None = None
    """Frames older than this are deleted, whatever their count."""
    weight: Annotated[float, Meta(gt=0, le=1000)] = 1.0
    """Share of inference under overload when ``backpressure.policy = 'weighted'``."""
    loop: bool = True
    """Files only: start again at the end."""
    realtime: bool = True
    """Files and synthetic sources: deliver frames at the native rate, like a camera."""
    decoder: Literal["pyav", "opencv"] | None = None
    """This camera's decoder; unset means ``frame_extractor.decoder``."""
    algo_config: dict[str, Any] = {}
    """Task type parameters, in framewatch's form (``count_threshold``, ``roi``) or the old system's (``regions`` in
    pixels, ``algorithm_params``: ``analytics.regions``); sent to remote algorithm services exactly as written (the
    built-in rules use its typed form, ``analytics.rules.decode_algo_config``)."""
    algo_config_path: Annotated[str, Meta(min_length=1)] | None = None
    """A JSON file holding ``algo_config`` instead (as the old console saved it), relative to the conf file's
    directory. ``load_config`` reads it into ``algo_config`` and makes this path absolute; not with ``algo_config``."""


class FrameExtractorConf(_Conf):
    enable: bool = True
    interval_ms: PositiveMs = 1000
    output_dir: str = "./data/frames"
    store: Literal["local", "minio"] = "local"
    task_types: list[str] = msgspec.field(default_factory=lambda: list(OLD_TASK_TYPES))
    max_frame_count: Annotated[int, Meta(ge=0)] | None = None
    minio: MinioConf = MinioConf()
    tasks: list[TaskConf] = []
    store_queue_size: Annotated[int, Meta(ge=1, le=100_000)] = 64
    """Frames waiting to be encoded and stored; beyond it a frame is counted as not stored (inference goes on)."""
    reserve_free_mb: Annotated[float, Meta(ge=0, le=1_000_000)] = 256.0
    reserve_free_percent: Annotated[float, Meta(ge=0, le=50)] = 5.0
    """With ``store = "local"``: below this much free space on the volume of ``output_dir`` (the smaller of the two
    limits; 0 turns one off), frames and alert images are not stored, so the alert journal keeps its room; storing
    resumes when the space is back. Counted in ``store_failed``, shown in ``components.storage``."""
    jpeg_quality: Annotated[int, Meta(ge=10, le=100)] = 80
    open_timeout_ms: Annotated[int, Meta(ge=100, le=120_000)] = 3000
    read_timeout_ms: Annotated[int, Meta(ge=100, le=120_000)] = 2000
    decoder: Literal["pyav", "opencv"] = "pyav"
    """How files and streams are decoded. pyav: every packet is demuxed but only the frames inference can take are
    decoded (keyframes only while the camera gets at most about one frame per keyframe interval; whole groups of
    pictures when it gets more); opencv: every frame is decoded, taken or not. Synthetic sources ignore it."""
    stall_timeout_sec: Annotated[float, Meta(ge=0.5, le=3600)] = 10.0
    """A stream that delivers no new frame for this long is declared stalled and reopened."""
    backoff_initial_sec: Annotated[float, Meta(gt=0, le=3600)] = 1.0
    backoff_max_sec: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    backoff_reset_sec: Annotated[float, Meta(gt=0, le=86_400)] = 60.0
    """After this long without a failure, the next failure starts the backoff from the beginning again."""
    # Accepted for compatibility, ignored (reported at start):
    scan_interval_sec: float | None = None


class AiAnalysisConf(_Conf):
    enable: bool = True
    mq_type: Literal["jsonl", "kafka"] = "jsonl"
    mq_address: str = ""
    mq_topic: str = "framewatch.alerts"
    heartbeat_timeout_sec: Seconds = 60.0
    max_concurrent_infer: Annotated[int, Meta(ge=1, le=100_000)] = 300
    """Frames being inferred at once, across every backend."""
    max_queue_size: Annotated[int, Meta(ge=1, le=10_000_000)] = 50_000
    """Hard cap on frames queued for inference (the watermarks normally keep the queue far below it)."""
    save_only_with_detection: bool = False
    """True: store only alert images; False: store every inferred frame too (bounded by retention)."""
    alert_base_path: str = "alerts/"
    alert_batch_enabled: bool = True
    alert_batch_size: Annotated[int, Meta(ge=1, le=100_000)] = 100
    alert_batch_interval_sec: Annotated[float, Meta(gt=0, le=3600)] = 2.0
    mq_timeout_sec: Annotated[float, Meta(gt=0, le=300)] = 5.0
    """Longest wait for Kafka to confirm a batch (connect, metadata, delivery); past it the batch is spooled. The
    alert actor waits this long per attempt while the broker is down, so keep it short."""
    request_timeout_sec: Annotated[float, Meta(gt=0, le=300)] = 10.0
    """Longest wait for one remote algorithm service call (the old system waited 30 s)."""
    connect_timeout_sec: Annotated[float, Meta(gt=0, le=60)] = 2.0
    circuit_open_sec: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    """A service whose call failed or timed out gets no new frame for this long, then one trial frame (half-open)."""
    max_alerts_in_db: Annotated[int, Meta(ge=0)] = 1000
    """Alert rows kept in the alert history (``[alerts] history_path``), the oldest (by ``created_at``) deleted as
    each batch is added, so the bound always holds; 0 means unlimited (warned about). A row is ~1.5 KB with its
    indexes: the default keeps ~1.5 MB, 1,000,000 rows ~1.5 GB."""
    # Accepted for compatibility, ignored (reported at start):
    scan_interval_sec: float | None = None
    alert_image_move_concurrent: int | None = None
    """The old system stored frames first and moved an alert's frame into the alert path afterwards, this many moves
    at once (default 50); framewatch stores alert images directly, so nothing is moved."""


class HttpConf(_Conf):
    """The HTTP API: algorithm service registration, status, metrics, and in-flight frames for remote services.

    Serving (``actors.api.server.HttpServer``): one selector thread accepts connections and reads each request's head
    (and a small body) itself; a fixed pool of ``workers`` threads answers complete requests. A client that is slow
    to send costs a socket, never a thread."""

    enable: bool = False
    """Off unless set: a conf without ``[http]`` opens no port (the embedded default conf turns it on)."""
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8089
    """0 picks a free port (tests)."""
    public_url: str = ""
    """Base URL remote services use to fetch in-flight frames; unset means ``http://host:port``."""
    token: str = ""
    """Shared token guarding every write (``Authorization: Bearer <token>``): service registration, task changes,
    alert deletes; may come from FRAMEWATCH_API_TOKEN instead (the environment wins). Never logged."""
    token_for_reads: bool = False
    """Also require the token on reads (status, metrics, services, task and alert queries, algo_config). The console
    page itself and ``/frames/`` (each frame's URL is an unguessable, short-lived capability) stay open. Needs a
    token: without one the HTTP API refuses to start."""
    max_body_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    """Larger request bodies are refused with 413."""
    workers: Annotated[int, Meta(ge=2, le=256)] = 16
    """Threads answering requests (a fixed pool); at most half of them read a large body (> 64 KB) at once."""
    max_connections: Annotated[int, Meta(ge=8, le=65_536)] = 512
    """Open connections; past it the one idle longest (keep-alive, or a head still arriving) is closed, and when
    every connection is being answered a new one gets 503."""
    head_timeout_sec: Annotated[float, Meta(gt=0, le=600)] = 10.0
    """A request's head (request line and headers) must arrive within this many seconds of its first byte."""
    request_timeout_sec: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """Reading a request's body and writing its answer, each: past it the connection is closed."""
    keepalive_timeout_sec: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    """An idle keep-alive connection is closed after this many seconds."""
    max_services: Annotated[int, Meta(ge=1, le=10_000)] = 256
    """Registered algorithm services; one more is refused with 429 (re-registering a known id or endpoint is not
    one more)."""
    service_networks: list[str] = []
    """CIDRs (``["10.0.0.0/8", "127.0.0.1/32"]``) a service endpoint's address must be in; a host name is resolved
    at registration and each of its addresses must be. Empty: any address but link-local ones."""
    allow_link_local: bool = False
    """Accept endpoints on link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata names/addresses
    (169.254.169.254, metadata.google.internal...), which are refused by default: a registered endpoint is called
    by framewatch, so it must not be a way to reach the host's metadata service."""

    def __post_init__(self) -> None:
        for i, cidr in enumerate(self.service_networks):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"service_networks[{i}] = {cidr!r} is not a network; write a CIDR such as "
                                 "'10.0.0.0/8' or an address such as '192.168.1.20'") from None

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """``service_networks`` parsed (validated when decoding)."""
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.service_networks)

    def __repr__(self) -> str:  # the token never reaches a log line through repr()
        return (
            f"HttpConf(enable={self.enable}, host={self.host!r}, port={self.port}, public_url={self.public_url!r}, "
            f"token={'***' if self.token else ''!r}, token_for_reads={self.token_for_reads}, "
            f"max_body_bytes={self.max_body_bytes}, workers={self.workers}, max_connections={self.max_connections}, "
            f"max_services={self.max_services}, service_networks={self.service_networks!r}, "
            f"allow_link_local={self.allow_link_local})"
        )


class BackpressureConf(_Conf):
    policy: Literal["fair", "weighted", "unbounded"] = "fair"
    """fair: equal shares under overload; weighted: shares by task weight; unbounded: the old system's behaviour
    (never skip, unbounded queue), for benchmark baselines only."""
    high_watermark: Annotated[int, Meta(ge=1, le=10_000)] = 2
    """Frames queued or in flight per inference slot above which extractors skip."""
    low_watermark: Annotated[int, Meta(ge=0, le=10_000)] = 1
    """Frames per inference slot below which extractors resume."""
    tick_ms: Annotated[int, Meta(ge=1, le=1000)] = 10
    """How often the supervisor reads mailboxes and grants frames."""
    credits_ahead: Annotated[int, Meta(ge=1, le=64)] = 1
    """Credits one camera may hold at once (granted while there is room under the high watermark): more than 1 lets
    a camera sampling every frame send its next one without waiting for a grant, for fast backends."""

    def __post_init__(self) -> None:
        if self.low_watermark >= self.high_watermark:
            raise ValueError(
                f"low_watermark ({self.low_watermark}) must be below high_watermark ({self.high_watermark})"
            )


class DetectorConf(_Conf):
    backend: Literal["ssdlite", "emulated", "noop"] = "ssdlite"
    """ssdlite: the built-in person detector; emulated: sleeps ``emulated_latency_ms`` (benchmarks, tests);
    noop: returns nothing at once (measures the pipeline's own cost)."""
    runtime: Literal["auto", "openvino", "opencv"] = "auto"
    """What runs ``ssdlite``: openvino (one compiled model shared by the actors, about 1.7x the frames/s on 2 cores),
    opencv (cv2.dnn, one net per actor), or auto: openvino when it is installed and loads ``model``, else opencv
    with one warning saying why. openvino that cannot load fails the start instead."""
    actors: Annotated[int, Meta(ge=1, le=256)] = 2
    """Local inference actors (each one frame at a time)."""
    model: str = ASSET_PREFIX + "ssdlite_person.pb"
    model_config: str = ASSET_PREFIX + "ssdlite_person.pbtxt"
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.5
    threads: Annotated[int, Meta(ge=1, le=64)] = 1
    """OpenCV threads per inference actor (cv2.dnn, and the resizing before either runtime)."""
    openvino_streams: Annotated[int, Meta(ge=0, le=64)] = 0
    """Inferences OpenVINO runs at once, the cores split between them; 0: one per inference actor, at most one per
    CPU core (each actor infers one frame at a time, so more would idle)."""
    emulated_latency_ms: Annotated[float, Meta(ge=0, le=60_000)] = 50.0
    emulated_jitter_ms: Annotated[float, Meta(ge=0, le=60_000)] = 0.0
    coco_model: str = ASSET_PREFIX + "nanodet-coco-416.onnx"
    """The 80-class COCO detector (NanoDet on onnxruntime), loaded only when an enabled task needs it."""
    coco_threshold: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.35
    task_types: list[str] | None = None
    """Task types the local detectors serve; unset: every type they can detect (all but 吸烟检测 and 安全帽检测,
    whose labels only services have). A site whose algorithm service serves a type the local detector could serve
    too (a fall service) lists the others, so that type's frames go to the service alone."""
    coco_task_types: tuple[str, ...] = ("物品遗留",)
    """Task types the COCO detector serves instead of the person detector (abandoned objects need its bags; any
    other type may be listed to track people with it too)."""


class AlertsConf(_Conf):
    jsonl_path: str = "./data/alerts.jsonl"
    rotate_bytes: Annotated[int, Meta(ge=4096)] = 64 * 1024 * 1024
    """The JSON Lines file is rotated past this size."""
    keep_files: Annotated[int, Meta(ge=1, le=1000)] = 5
    """Rotated files kept (alerts.jsonl.1 ... .N)."""
    image_max_count: Annotated[int, Meta(ge=0)] = 1000
    """Alert images kept per task under ``ai_analysis.alert_base_path``; 0 means unlimited."""
    image_max_age_sec: AgeSeconds | None = None
    """Alert images older than this are deleted."""
    spool_dir: str = "./data/spool"
    """The alert journal, for every sink: each alert is appended (fsynced) here before it counts as emitted, and
    leaves once the sink confirmed it; after a crash or an outage the rest is delivered first, in order."""
    spool_max_bytes: Annotated[int, Meta(ge=4096)] = 256 * 1024 * 1024
    history_path: str | None = None
    """The alert history: a SQLite file holding every alert the sink took, bounded by
    ``ai_analysis.max_alerts_in_db``, that the old query API (``GET /api/v1/alerts``...) answers from. Unset:
    ``alerts.db`` in the directory of ``jsonl_path``; ``""``: no history (the query API answers 503)."""


class StatsConf(_Conf):
    interval_sec: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    path: str = "./data/stats.json"
    log: bool = True


class SupervisionConf(_Conf):
    restart_intensity: Annotated[int, Meta(ge=0, le=10_000)] = 5
    """At most this many restarts of one child within ``restart_period_sec``; one more and it is given up."""
    restart_period_sec: Seconds = 60.0
    shutdown_timeout_sec: Annotated[float, Meta(gt=0, le=600)] = 5.0
    """Per step of the shutdown: how long to wait before forcing."""


class Config(_Conf):
    frame_extractor: FrameExtractorConf = FrameExtractorConf()
    ai_analysis: AiAnalysisConf = AiAnalysisConf()
    backpressure: BackpressureConf = BackpressureConf()
    detector: DetectorConf = DetectorConf()
    alerts: AlertsConf = AlertsConf()
    stats: StatsConf = StatsConf()
    supervision: SupervisionConf = SupervisionConf()
    http: HttpConf = HttpConf()

    # --- derived values (pure) ---

    def task_interval_ms(self, task: TaskConf) -> int:
        return task.interval_ms if task.interval_ms is not None else self.frame_extractor.interval_ms

    def task_max_frame_count(self, task: TaskConf) -> int:
        """0 means unlimited."""
        if task.max_frame_count is not None:
            return task.max_frame_count
        if self.frame_extractor.max_frame_count is not None:
            return self.frame_extractor.max_frame_count
        return SAFE_MAX_FRAME_COUNT

    def task_decoder(self, task: TaskConf) -> Literal["pyav", "opencv"]:
        return task.decoder if task.decoder is not None else self.frame_extractor.decoder

    def task_save_alert_image(self, task: TaskConf) -> bool:
        return task.save_alert_image if task.save_alert_image is not None else DEFAULT_SAVE_ALERT_IMAGE

    def alert_history_path(self) -> str:
        """The alert history's file, "" when it is off (``alerts.history_path``)."""
        path = self.alerts.history_path
        if path is None:
            return os.path.join(os.path.dirname(self.alerts.jsonl_path), "alerts.db")
        return path

    def enabled_tasks(self) -> list[TaskConf]:
        if not self.frame_extractor.enable:
            return []
        return [t for t in self.frame_extractor.tasks if t.enabled]


class Loaded(msgspec.Struct, frozen=True):
    """A decoded configuration and what to tell the user about it at start."""

    config: Config
    notices: list[str]  # ignored keys, unlimited retention, baseline policy...
    path: str = ""
    """The file it was read from, where task changes made at run time are written back; "" (decoded from text, or
    the embedded default, which is part of the package): changes apply but are not persisted."""


#: Keys that meant something to the old system and nothing to framewatch: (section, key, why), reported when set.
_IGNORED_KEYS = (
    ("frame_extractor", "scan_interval_sec", "framewatch does not scan storage for work"),
    ("ai_analysis", "scan_interval_sec", "framewatch does not scan storage for work"),
    ("ai_analysis", "alert_image_move_concurrent", "framewatch stores alert images directly, it moves no frames"),
)


def check_config(cfg: Config) -> list[str]:
    """Cross-section rules and notices; raises ConfigError naming the key path.

    Run on the configuration as it will be used: with the environment's secrets applied (``decode_config`` does)."""
    fe = cfg.frame_extractor
    notices: list[str] = []
    ids: dict[str, int] = {}
    for i, task in enumerate(fe.tasks):
        where = f"$.frame_extractor.tasks[{i}]"
        if task.id in ids:
            raise ConfigError(f"Duplicate task id {task.id!r} (also at $.frame_extractor.tasks[{ids[task.id]}]) - at `{where}.id`")
        ids[task.id] = i
        _check_task(fe, task, where)
        if task.enabled and cfg.task_max_frame_count(task) == 0:
            notices.append(f"task {task.id!r}: max_frame_count = 0 means unlimited storage; frames will pile up")
    if fe.store == "minio":
        _check_minio(fe.minio)
    if fe.backoff_initial_sec > fe.backoff_max_sec:
        raise ConfigError("backoff_initial_sec must not exceed backoff_max_sec - at `$.frame_extractor.backoff_initial_sec`")
    if not cfg.ai_analysis.enable:
        raise ConfigError(
            "framewatch samples only the frames it infers, so analysis cannot be disabled; "
            "disable tasks instead (enabled = false) - at `$.ai_analysis.enable`"
        )
    if cfg.http.public_url and not cfg.http.public_url.startswith(("http://", "https://")):
        raise ConfigError("public_url must start with http:// or https:// - at `$.http.public_url`")
    if cfg.ai_analysis.mq_type == "kafka" and not cfg.ai_analysis.mq_address:
        raise ConfigError("mq_type = 'kafka' needs mq_address (host:port) - at `$.ai_analysis.mq_address`")
    for section, key, why in _IGNORED_KEYS:
        if getattr(getattr(cfg, section), key) is not None:
            notices.append(f"{section}.{key} is ignored: {why}")
    if fe.max_frame_count == 0:
        notices.append("frame_extractor.max_frame_count = 0 means unlimited storage by default; frames will pile up")
    if cfg.ai_analysis.max_alerts_in_db == 0:
        notices.append("ai_analysis.max_alerts_in_db = 0 means an unlimited alert history; alert rows will pile up")
    if cfg.backpressure.policy == "unbounded":
        notices.append("backpressure.policy = 'unbounded' never skips: extraction may outpace inference (baseline only)")
    if not fe.enable:
        notices.append("frame_extractor.enable = false: no task runs")
    elif not cfg.enabled_tasks():
        notices.append("no enabled task: framewatch will run but extract nothing "
                       "(add tasks to frame_extractor.tasks, or enable one)")
    return notices


def _check_task(fe: FrameExtractorConf, task: TaskConf, where: str) -> None:
    """One task's own rules. Its source is checked even when it is disabled: it may be enabled at run time."""
    if task.task_type not in fe.task_types:
        raise ConfigError(
            f"Unknown task type {task.task_type!r}: not in frame_extractor.task_types {fe.task_types} - at `{where}.task_type`"
        )
    try:
        decode_algo_config(task.task_type, task.algo_config)
    except msgspec.ValidationError as exc:
        reason, path = error_path(exc)
        if task.algo_config_path is None:
            raise ConfigError(f"{reason} - at `{where}.algo_config{path.removeprefix('$')}`") from None
        raise ConfigError(_in_algo_config_file(reason, path, task.algo_config_path, where)) from None
    _raise_at(f"{where}.rtsp_url", check_source_url, task.rtsp_url)
    if task.preferred_algorithm_endpoint is not None:
        _raise_at(f"{where}.preferred_algorithm_endpoint", check_service_endpoint, task.preferred_algorithm_endpoint)


def read_algo_config_files(cfg: Config, base_dir: Path,
                            pending: Mapping[str, dict[str, Any]] | None = None) -> Config:
    """``cfg`` with each task's ``algo_config_path`` file read into its ``algo_config`` (the path made absolute).

    Done once, as the conf is read: the rest of framewatch sees an ``algo_config`` wherever it came from. Raises
    ConfigError naming the task's key and the file; the content is checked by ``check_config`` like an inline one.
    ``pending``: absolute path -> the content a file is about to get (``conffile`` checks an edit before writing)."""
    fe = cfg.frame_extractor
    if all(task.algo_config_path is None for task in fe.tasks):
        return cfg
    tasks = [_read_algo_config_file(task, f"$.frame_extractor.tasks[{i}]", base_dir, pending or {})
             for i, task in enumerate(fe.tasks)]
    return msgspec.structs.replace(cfg, frame_extractor=msgspec.structs.replace(fe, tasks=tasks))


def _read_algo_config_file(task: TaskConf, where: str, base_dir: Path,
                           pending: Mapping[str, dict[str, Any]]) -> TaskConf:
    if task.algo_config_path is None:
        return task
    if task.algo_config:
        raise ConfigError(f"give algo_config or algo_config_path, not both - at `{where}.algo_config_path`")
    path = os.path.abspath(base_dir / task.algo_config_path)
    if path in pending:
        return msgspec.structs.replace(task, algo_config=pending[path], algo_config_path=path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"Cannot read algo_config file {path!r}: {exc.strerror} - at `{where}.algo_config_path`"
        ) from None
    try:  # a BOM is what Windows editors put first; JSON has no use for it
        algo_config = msgspec.json.decode(data.removeprefix(b"\xef\xbb\xbf"), type=dict[str, Any])
    except msgspec.ValidationError as exc:  # valid JSON, but not an object
        raise ConfigError(_in_algo_config_file(*error_path(exc), path, where)) from None
    except msgspec.DecodeError as exc:
        raise ConfigError(_in_algo_config_file(f"Not valid JSON: {exc}", "$", path, where)) from None
    return msgspec.structs.replace(task, algo_config=algo_config, algo_config_path=path)


def _in_algo_config_file(reason: str, path: str, file: str, where: str) -> str:
    """An error inside a task's algo_config file: the path inside the file, the file, and the task's key."""
    return f"{reason} - at `{path}` in {file} (algo_config_path of `{where}`)"


def check_service_endpoint(url: str) -> None:
    """An algorithm service's endpoint as it registers it: ``http(s)://HOST[:PORT][/PATH]``, without credentials
    (they would show in listings, stats and logs) and with a port from 1 to 65535. Raises ValueError; the message
    names the endpoint with any credentials replaced by ``***``."""
    try:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise ValueError("not an http:// or https:// URL; write the endpoint the service registers with, "
                             "http://HOST[:PORT]/PATH")
        if any(char.isspace() for char in url):
            raise ValueError("contains whitespace; remove it")
        if "@" in rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
            raise ValueError("credentials (user:password@) are not accepted in an endpoint; remove them and "
                             "protect the service by its network")
        check_url_host(url)
    except ValueError as exc:
        raise ValueError(f"bad algorithm service endpoint {redact_url(url)!r}: {exc}") from None


def _check_minio(minio: MinioConf) -> None:
    """What MinIO would refuse at connect, refused now (exit code 2 instead of 1 at start)."""
    where = "$.frame_extractor.minio"
    _raise_at(f"{where}.endpoint", check_endpoint, minio.endpoint)
    _raise_at(f"{where}.bucket", _check_bucket, minio.bucket)
    for key, value, variable in (("access_key", minio.access_key, ENV_ACCESS_KEY),
                                 ("secret_key", minio.secret_key, ENV_SECRET_KEY)):
        if not value:
            raise ConfigError(
                f"store = 'minio' needs an S3 {key.replace('_', ' ')}: set frame_extractor.minio.{key} "
                f"or the environment variable {variable} - at `{where}.{key}`"
            )


def _check_bucket(bucket: str) -> None:
    from minio.helpers import check_bucket_name  # minio is loaded only by the confs that use it

    try:
        check_bucket_name(bucket, strict=True)
    except ValueError as exc:
        detail = "" if str(exc).startswith("invalid bucket name") else f" ({exc})"
        raise ValueError(
            f"S3 refuses the bucket name {bucket!r}{detail}: use 3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        ) from None


def _raise_at(path: str, check: Callable[[str], object], value: str) -> None:
    """Run ``check(value)``; its ValueError becomes a ConfigError at ``path``."""
    try:
        check(value)
    except ValueError as exc:
        raise ConfigError(f"{exc} - at `{path}`") from None


def decode_toml(data: bytes | str, type_: type[T], error: type[Exception]) -> T:
    """TOML text into ``type_``; any problem raises ``error`` with msgspec's path-naming message."""
    return _convert_toml(_parse_toml(data, error), type_, error)


def _parse_toml(data: bytes | str, error: type[Exception]) -> dict[str, Any]:
    try:
        return msgspec.toml.decode(data)
    except msgspec.DecodeError as exc:
        raise error(f"Not valid TOML: {exc}") from None


#: The TOML values that are not JSON-like: kept as they are, exactly as ``msgspec.toml.decode(..., type=...)`` does.
_TOML_BUILTINS = (datetime.datetime, datetime.date, datetime.time)


def _convert_toml(document: dict[str, Any], type_: type[T], error: type[Exception]) -> T:
    """Parsed TOML into ``type_``: the conversion ``msgspec.toml.decode`` does, so errors read the same."""
    try:
        return msgspec.convert(document, type_, builtin_types=_TOML_BUILTINS, str_keys=True)
    except msgspec.ValidationError as exc:
        raise error(str(exc)) from None


#: framewatch's top-level tables (the fields of ``Config``); anything else at the top level belongs to someone else.
_OWN_TABLES = frozenset(field.encode_name for field in msgspec.structs.fields(Config))


def decode_config(data: bytes | str, base_dir: str | os.PathLike[str] = ".",
                  algo_configs: Mapping[str, dict[str, Any]] | None = None) -> Loaded:
    """Decode and validate TOML text. Raises ConfigError.

    Top-level tables and keys that are not framewatch's are left out before the strict decoding and named in one
    notice; error paths inside framewatch's tables are unchanged, since each table keeps its place in the document."""
    document = _parse_toml(data, ConfigError)
    foreign = sorted(document.keys() - _OWN_TABLES)
    own = {key: value for key, value in document.items() if key in _OWN_TABLES}
    cfg = with_env_secrets(_convert_toml(own, Config, ConfigError), os.environ)
    cfg = read_algo_config_files(cfg, Path(base_dir), algo_configs)  # the tasks' algo_config_path, relative to base_dir
    notices = [_not_used_notice(document, foreign)] if foreign else []
    return Loaded(config=cfg, notices=notices + check_config(cfg))


def _not_used_notice(document: dict[str, Any], names: list[str]) -> str:
    """``not used by framewatch: [base], [baselog], ..., lanip``: the tables, then the keys, each in name order. A name
    close to one of framewatch's tables is most likely a typo of it, which would otherwise pass unnoticed: say so."""
    entries = [_as_written(name, document[name]) + _typo_hint(name) for name in names]
    return "not used by framewatch: " + ", ".join(sorted(entries, key=lambda entry: not entry.startswith("[")))


def _typo_hint(name: str) -> str:
    # 0.75: catches [alert], [ai-analysis], [supervisor]; the media server's names all score below 0.55.
    close = difflib.get_close_matches(name, _OWN_TABLES, n=1, cutoff=0.75)
    return f" (is it [{close[0]}]?)" if close else ""


def _as_written(name: str, value: Any) -> str:
    """How the file spells a top-level entry: ``[table]``, ``[[array of tables]]`` or ``key``."""
    if isinstance(value, dict):
        return f"[{name}]"
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return f"[[{name}]]"
    return name


def with_env_secrets(cfg: Config, env: os._Environ[str] | dict[str, str]) -> Config:
    token = env.get("FRAMEWATCH_API_TOKEN") or cfg.http.token
    if token != cfg.http.token:
        cfg = msgspec.structs.replace(cfg, http=msgspec.structs.replace(cfg.http, token=token))
    minio = cfg.frame_extractor.minio
    access = env.get(ENV_ACCESS_KEY) or minio.access_key
    secret = env.get(ENV_SECRET_KEY) or minio.secret_key
    if (access, secret) == (minio.access_key, minio.secret_key):
        return cfg
    minio = msgspec.structs.replace(minio, access_key=access, secret_key=secret)
    return msgspec.structs.replace(cfg, frame_extractor=msgspec.structs.replace(cfg.frame_extractor, minio=minio))


def load_config(path: str | os.PathLike[str]) -> Loaded:
    """Read and validate a conf file. Raises ConfigError (the CLI turns it into exit code 2)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"Cannot read configuration {str(path)!r}: {exc.strerror}") from None
    loaded = decode_config(data, Path(path).parent)
    return msgspec.structs.replace(loaded, path=os.path.abspath(path))


def default_config_path() -> Path:
    """The embedded default configuration: ``conf/default.toml`` in a checkout, ``framewatch.actors.conf`` when installed."""
    checkout = Path(__file__).resolve().parents[2] / "conf" / "default.toml"
    if checkout.exists():
        return checkout
    import importlib.resources

    return Path(str(importlib.resources.files("framewatch.actors.conf") / "default.toml"))
