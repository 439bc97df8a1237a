"""Scenario files: a framewatch conf under ``[framewatch]`` plus the load under ``[bench]``, validated at the edge.

A scenario decodes into frozen Structs that forbid unknown fields, so a typo fails at once with the key path
(``Object contains unknown field `duraton_sec` - at `$.bench```). The ``[framewatch]`` table is exactly a framewatch
conf (the sections of ``conf/default.toml``); ``[bench.cameras]``, when present, replaces its task list with
``count`` generated cameras, and ``[bench.inference]`` chooses the backend and the slot count.

``run_config`` derives the conf of one run (framewatch as configured, or the baseline: the same conf with
``backpressure.policy = "unbounded"``), with every path moved under the run's own directory. It performs the same
cross-section checks as ``framewatch check``; errors name ``$.framewatch...`` or ``$.bench...`` key paths.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from framewatch.actors.analytics.rules import PEOPLE_COUNTING
from framewatch.actors.system import served_locally
from framewatch.actors.core import config as fwconfig
from framewatch.actors.core.config import Config, ConfigError, Loaded, TaskConf
from msgspec import Meta

from .rtsp_camera import DEFAULT_GOP, Clip

Sec = Annotated[float, Meta(gt=0, le=7 * 86_400)]

RTSP_TEST_SCHEME = "rtsp-test://"
"""``[bench.cameras] url = "rtsp-test://MOUNT"``: the harness starts the GStreamer RTSP test camera serving the bundled
clip on loopback, one mount per distinct ``MOUNT`` (``rtsp-test://cam{i}``: one camera each), and rewrites the URL to
``rtsp://127.0.0.1:PORT/MOUNT`` before the probes; it stops the server after the runs."""
_MOUNT = re.compile(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")


class ScenarioError(Exception):
    """A scenario that cannot run; the message names the key path and the reason."""


class SetupError(Exception):
    """The scenario is valid but this machine lacks what it needs (the RTSP test camera's packages, a service that
    would not start)."""


DecodeMode = Literal["full", "keyframes", "demux"]


class _S(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Cameras(_S):
    count: Annotated[int, Meta(ge=1, le=1000)]
    url: Annotated[str, Meta(min_length=1)]
    """Source URL template; ``{i}`` is the camera number (0-based): ``synthetic://cam{i}?width=768&height=576&fps=25``,
    ``asset:vtest_5s.mp4``, ``/path/clip.mp4``, ``rtsp://host/stream{i}``, or ``rtsp-test://cam{i}`` (the RTSP test
    camera, started by the harness: see ``RTSP_TEST_SCHEME``)."""
    id: Annotated[str, Meta(min_length=1)] = "cam-{i:02d}"
    """Task id template."""
    task_type: str = PEOPLE_COUNTING
    interval_ms: fwconfig.PositiveMs | None = None
    """Sampling interval of every camera; unset means ``bench.interval_ms``, then the conf's ``interval_ms``."""
    realtime: bool = True
    """Files and synthetic sources at their native rate (like a camera); false: as fast as they decode."""
    loop: bool = True
    weight: Annotated[float, Meta(gt=0, le=1000)] = 1.0
    algo_config: dict[str, Any] = {}
    rtsp_width: Annotated[int, Meta(ge=16, le=4096, multiple_of=2)] | None = None
    """``rtsp-test://`` only: the test camera's clip scaled to this width (unset: the bundled clip's 768; with only
    one of width/height set the other keeps the aspect)."""
    rtsp_height: Annotated[int, Meta(ge=16, le=4096, multiple_of=2)] | None = None
    rtsp_fps: Annotated[float, Meta(gt=0, le=120)] | None = None
    """``rtsp-test://`` only: the clip re-timed to this rate and served at it (unset: the bundled clip's 10)."""
    rtsp_gop: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_GOP
    """``rtsp-test://`` only: a keyframe every this many frames."""
    rtsp_bframes: Annotated[int, Meta(ge=0, le=16)] | None = None
    """``rtsp-test://`` only: B-frames between references (0: none; unset: the encoder's default)."""


_CLIP_KEYS = ("rtsp_width", "rtsp_height", "rtsp_fps", "rtsp_gop", "rtsp_bframes")


class Inference(_S):
    backend: Literal["emulated", "ssdlite", "noop", "remote"] = "emulated"
    """emulated: sleeps a latency drawn from ``distribution``; ssdlite: the real built-in detector; noop: nothing;
    remote: ``services`` reference algorithm services (``framewatch algo serve`` subprocesses) registered with each
    run's framewatch over its HTTP API (enabled on a free port for the run)."""
    slots: Annotated[int, Meta(ge=1, le=256)] | None = None
    """Inference actors; unset means the conf's ``detector.actors``. remote: not used (services x max_concurrency)."""
    services: Annotated[int, Meta(ge=1, le=64)] = 1
    """remote: how many reference services each run starts."""
    max_concurrency: Annotated[int, Meta(ge=1, le=256)] = 1
    """remote: each service's ``--max-concurrency`` (its slots in framewatch's pool)."""
    latency_ms: Annotated[float, Meta(ge=0, le=60_000)] = 0.0
    """remote: each service's ``--latency-ms`` (a sleep per call, on top of its detector)."""
    mode: Literal["url", "inline"] = "url"
    """remote: url (the service fetches the JPEG from framewatch) or inline (the JPEG in the request body)."""
    detector: Literal["noop", "ssdlite"] = "noop"
    """remote: the services' ``--detector``."""
    distribution: Literal["constant", "uniform", "lognormal"] = "constant"
    mean_ms: Annotated[float, Meta(gt=0, le=60_000)] = 50.0
    """Mean latency of the emulated backend, in ms."""
    jitter_ms: Annotated[float, Meta(ge=0, le=60_000)] = 0.0
    """uniform: latency in ``mean_ms +- jitter_ms``."""
    sigma: Annotated[float, Meta(ge=0, le=3)] = 0.3
    """lognormal: the sigma of the underlying normal; mu is chosen so the mean is ``mean_ms``."""
    detect_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.0
    """emulated: fraction of frames on which one 'person' is found (exercises alerts and alert images)."""
    seed: int | None = 1


class RetentionScale(_S):
    objects: Annotated[list[Annotated[int, Meta(ge=0, le=10_000_000)]], Meta(min_length=1, max_length=8)] = msgspec.field(
        default_factory=lambda: [1000, 100_000])
    """Objects pre-populated in the local store before start, one run per value, spread evenly over the tasks; each
    task's ``max_frame_count`` is set to its share, so the store holds that many objects through the run."""
    keep_store: bool = False
    """Keep the pre-populated store directories after the run (they can be large)."""


class Bench(_S):
    name: str = ""
    description: str = ""
    mode: Literal["compare", "retention"] = "compare"
    """compare: framewatch as configured, then the baseline; retention: framewatch once per ``retention.objects``."""
    duration_sec: Sec = 60.0
    """Measured time of each run, after warm-up."""
    warmup_sec: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    quick_duration_sec: Sec = 20.0
    """``--quick``: measured time of each run."""
    quick_warmup_sec: Annotated[float, Meta(ge=0, le=3600)] = 5.0
    sample_interval_sec: Annotated[float, Meta(ge=0.05, le=60)] = 0.5
    baseline: bool = True
    """compare mode: also run the baseline (the old system's behaviour: never skip, unbounded queue)."""
    order: Literal["framewatch-first", "baseline-first"] = "framewatch-first"
    interval_ms: fwconfig.PositiveMs | None = None
    """Sets ``frame_extractor.interval_ms`` (every camera without its own interval)."""
    cameras: Cameras | None = None
    inference: Inference = Inference()
    retention: RetentionScale = RetentionScale()
    decode_probe_sec: Annotated[float, Meta(ge=0, le=600)] = 3.0
    """Seconds of decoding the sources alone (half one source, half all of them at once); 0 skips it."""
    decode_probe_modes: list[DecodeMode] = []
    """Also decode every camera's stream at once with PyAV in each of these modes, ``decode_probe_sec`` each,
    measuring the process's CPU: full (every frame), keyframes (``skip_frame = "NONKEY"``), demux (no decode)."""
    capacity_probe_frames: Annotated[int, Meta(ge=0, le=100_000)] = 30
    """Frames run through the inference backend alone, on ``slots`` threads; 0 skips it."""
    max_rss_growth_mb: Annotated[float, Meta(gt=0, le=1_000_000)] = 3000.0
    """A run whose process RSS grows by more than this ends early (reported): the baseline's unbounded queue holds
    decoded frames in memory (~1.3 MB each at 768x576) and would otherwise take the whole machine."""
    drain_timeout_sec: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """After measuring, frames still queued are run through a zero-latency detector so the run stops quickly."""


class Scenario(_S):
    bench: Bench = Bench()
    framewatch: Config = Config()


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One system run of a scenario."""

    label: str  # "framewatch", "baseline", "objects=1000"...
    policy: str
    preexisting: int = 0  # retention mode: objects pre-populated in the store


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming the key path."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {str(path)!r}: {exc.strerror}") from None
    return decode_scenario(data)


def decode_scenario(data: bytes | str) -> Scenario:
    sc = fwconfig.decode_toml(data, Scenario, ScenarioError)
    # Build every variant's conf once now, so a bad combination fails before anything starts (the RTSP test camera's
    # URLs as they will be once it runs: its port is only known then).
    checked = sc
    if sc.bench.cameras is not None:
        _camera_tasks(sc)  # the URL and id templates
        _check_clip_keys(sc.bench.cameras)
    if sc.bench.cameras is not None and sc.bench.cameras.url.startswith(RTSP_TEST_SCHEME):
        checked = with_rtsp_test_server(sc, "rtsp://127.0.0.1:8554")
    for variant in variants(sc):
        run_config(checked, variant, Path("/nonexistent/bench-check"))
    if sc.bench.mode == "compare" and not sc.framewatch.frame_extractor.tasks and sc.bench.cameras is None:
        raise ScenarioError("no camera: set [bench.cameras] or [[framewatch.frame_extractor.tasks]] - at `$.bench`")
    return sc


def _check_clip_keys(cams: Cameras) -> None:
    """The ``rtsp_*`` keys describe the RTSP test camera's clip: refused with any other URL."""
    if cams.url.startswith(RTSP_TEST_SCHEME):
        return
    default = Cameras(count=1, url="-")
    for key in _CLIP_KEYS:
        if getattr(cams, key) != getattr(default, key):
            raise ScenarioError(f"{key} needs url = \"rtsp-test://MOUNT\" (it sets the RTSP test camera's clip) - "
                                f"at `$.bench.cameras.{key}`")


def rtsp_test_clip(sc: Scenario) -> Clip:
    """The RTSP test camera's clip as ``[bench.cameras]`` declares it (``rtsp_width``...; defaults: today's clip)."""
    cams = sc.bench.cameras
    if cams is None:
        return Clip()
    return Clip(width=cams.rtsp_width, height=cams.rtsp_height, fps=cams.rtsp_fps, gop=cams.rtsp_gop,
                bframes=cams.rtsp_bframes)


def variants(sc: Scenario) -> list[Variant]:
    b = sc.bench
    policy = sc.framewatch.backpressure.policy
    if b.mode == "retention":
        return [Variant(label=f"objects={n}", policy=policy, preexisting=n) for n in b.retention.objects]
    out = [Variant(label="framewatch", policy=policy)]
    if b.baseline:
        out.append(Variant(label="baseline", policy="unbounded"))
    if b.order == "baseline-first":
        out.reverse()
    return out


def slots(sc: Scenario) -> int:
    """Inference slots serving the cameras: remote, every service's max_concurrency; else the local actors."""
    inf = sc.bench.inference
    if inf.backend == "remote":
        return inf.services * inf.max_concurrency
    return inf.slots or sc.framewatch.detector.actors


def rtsp_test_mounts(sc: Scenario) -> list[str]:
    """The RTSP test camera's mounts the scenario's cameras use (``/cam0``...); empty when it uses none."""
    cams = sc.bench.cameras
    if cams is None or not cams.url.startswith(RTSP_TEST_SCHEME):
        return []
    return sorted({"/" + t.rtsp_url[len(RTSP_TEST_SCHEME):] for t in _camera_tasks(sc)})


def with_rtsp_test_server(sc: Scenario, base_url: str) -> Scenario:
    """``sc`` with its ``rtsp-test://`` camera URLs pointing at the running test camera (``rtsp://127.0.0.1:PORT``)."""
    r = msgspec.structs.replace
    cams = sc.bench.cameras
    assert cams is not None and cams.url.startswith(RTSP_TEST_SCHEME)
    url = base_url.rstrip("/") + "/" + cams.url[len(RTSP_TEST_SCHEME):]
    return r(sc, bench=r(sc.bench, cameras=r(cams, url=url)))


def durations(sc: Scenario, quick: bool) -> tuple[float, float]:
    """(warm-up, measured) seconds."""
    b = sc.bench
    return (b.quick_warmup_sec, b.quick_duration_sec) if quick else (b.warmup_sec, b.duration_sec)


def _camera_tasks(sc: Scenario) -> list[TaskConf]:
    cams = sc.bench.cameras
    assert cams is not None
    tasks = []
    for i in range(cams.count):
        try:
            url = cams.url.format(i=i)
        except (KeyError, IndexError, ValueError) as exc:
            raise ScenarioError(f"bad template {cams.url!r} ({exc}); use {{i}} for the camera number - at `$.bench.cameras.url`") from None
        try:
            task_id = cams.id.format(i=i)
        except (KeyError, IndexError, ValueError) as exc:
            raise ScenarioError(f"bad template {cams.id!r} ({exc}); use {{i}} for the camera number - at `$.bench.cameras.id`") from None
        if url.startswith(RTSP_TEST_SCHEME) and not _MOUNT.fullmatch(url[len(RTSP_TEST_SCHEME):]):
            raise ScenarioError(f"bad RTSP test camera URL {url!r}: want rtsp-test://MOUNT, MOUNT of letters, digits, "
                                "'.', '_', '-', '~' and '/' - at `$.bench.cameras.url`")
        tasks.append(TaskConf(
            id=task_id, task_type=cams.task_type, rtsp_url=url, interval_ms=cams.interval_ms, realtime=cams.realtime,
            loop=cams.loop, weight=cams.weight, algo_config=dict(cams.algo_config),
        ))
    return tasks


def run_config(sc: Scenario, variant: Variant, run_dir: Path) -> Loaded:
    """The validated conf of one run: paths under ``run_dir``, the variant's policy, the scenario's load."""
    r = msgspec.structs.replace
    cfg = sc.framewatch
    b = sc.bench
    fe = cfg.frame_extractor
    tasks = _camera_tasks(sc) if b.cameras is not None else list(fe.tasks)
    fe = r(fe, output_dir=str(run_dir / "store"), tasks=tasks,
           interval_ms=b.interval_ms if b.interval_ms is not None else fe.interval_ms)
    if fe.store == "minio":  # one prefix per run, so runs never see each other's objects
        fe = r(fe, minio=r(fe.minio, base_path="/".join(p for p in (fe.minio.base_path.strip("/"), "bench", run_dir.name) if p)))
    if variant.preexisting:
        enabled = [t for t in tasks if t.enabled] or tasks
        per_task = max(1, math.ceil(variant.preexisting / max(len(enabled), 1)))
        fe = r(fe, max_frame_count=per_task, tasks=[r(t, max_frame_count=None) for t in tasks])
    inf = b.inference
    http = cfg.http
    if inf.backend == "remote":
        # The services alone must serve the cameras: a task type a local detector serves would also go to it.
        # One local actor (noop) stays, serving no camera; the pool counts only slots serving a camera.
        local = sorted({t.task_type for t in tasks if t.enabled and served_locally(cfg, t)})
        if local:
            where = "$.bench.cameras.task_type" if b.cameras is not None else "$.framewatch.frame_extractor.tasks"
            raise ScenarioError(f"backend remote needs task types no local detector serves (e.g. 吸烟检测), so only "
                                f"the services infer; the person detector serves {', '.join(local)} - at `{where}`")
        det = r(cfg.detector, backend="noop", actors=1)
        http = r(http, enable=True, port=0, public_url="")  # each run's own API, on a free port, for its services
    else:
        det = r(cfg.detector, backend=inf.backend, actors=slots(sc))
    cfg = r(
        cfg,
        http=http,
        frame_extractor=fe,
        backpressure=r(cfg.backpressure, policy=variant.policy),
        detector=det,
        alerts=r(cfg.alerts, jsonl_path=str(run_dir / "alerts.jsonl"), spool_dir=str(run_dir / "spool")),
        stats=r(cfg.stats, path=str(run_dir / "stats.json")),
    )
    try:
        cfg = fwconfig.with_env_secrets(cfg, os.environ)
        notices = fwconfig.check_config(cfg)  # the cross-section rules of `framewatch check`
    except ConfigError as exc:
        msg = str(exc).replace("`$.", "`$.framewatch.")
        if b.cameras is not None and "$.framewatch.frame_extractor.tasks[" in msg:
            msg = msg.split(" - at `")[0] + " - at `$.bench.cameras`"
        raise ScenarioError(msg) from None
    return Loaded(config=cfg, notices=notices)


def demand_fps(cfg: Config) -> float:
    """Samples per second wanted by every enabled task together."""
    return sum(1000 / cfg.task_interval_ms(t) for t in cfg.enabled_tasks())


def high_watermark_total(cfg: Config, n_slots: int) -> int:
    return min(cfg.backpressure.high_watermark * n_slots, cfg.ai_analysis.max_queue_size)
