"""The benchmark harness end to end on a small overload (~20 s): the report's invariants hold, not its speeds.

4 synthetic cameras every 100 ms (40 samples/s wanted) against emulated inference of 40 ms on one slot (25/s), run as
framewatch and as the unbounded baseline through ``benchmarks.run_scenario``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from framewatch.benchmarks import ScenarioError, decode_scenario, run_scenario
from framewatch.benchmarks.progress import Progress
from framewatch.benchmarks.report import REPORT_FIELDS, RUN_FIELDS

SCENARIO = """
[bench]
name = "smoke"
quick_duration_sec = 7
quick_warmup_sec = 2
decode_probe_sec = 1
capacity_probe_frames = 10

[bench.cameras]
count = 4
url = "synthetic://smoke{i}?width=320&height=240&fps=25"
interval_ms = 100

[bench.inference]
backend = "emulated"
slots = 1
distribution = "uniform"
mean_ms = 40
jitter_ms = 5

[framewatch.frame_extractor]
max_frame_count = 15

[framewatch.backpressure]
high_watermark = 2
low_watermark = 1
"""

README = Path(__file__).resolve().parent.parent / "benchmarks" / "README.md"


def _documented(section: str) -> list[str]:
    """Field paths listed in the README table under the heading ``section`` (first column, in backticks)."""
    text = README.read_text()
    body = text.split(f"### {section}", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([a-z_.0-9]+)`", body, flags=re.M)


def _has(doc: dict, path: str) -> bool:
    cur = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    sc = decode_scenario(SCENARIO)
    return run_scenario(sc, path="smoke", quick=True, out_dir=tmp_path_factory.mktemp("bench"),
                        progress=Progress(enabled=False), plots=False)


def test_both_runs_ran_one_after_the_other(result):
    assert list(result.report["runs"]) == ["framewatch", "baseline"]
    assert result.report["order"].startswith("sequential")
    for run in result.report["runs"].values():
        assert run["measured_sec"] is not None and run["measured_sec"] > 5
        assert run["counts"]["inferred"] > 0


def test_conservation_holds_in_every_sampled_snapshot(result):
    for run in result.report["runs"].values():
        assert run["conservation"]["ok"], run["conservation"]["violations"]
        assert run["conservation"]["samples"] == len(run["timeseries"]) > 10
        assert all(s["conservation_ok"] for s in run["timeseries"])
        c = run["counts"]
        assert c["inferred"] == c["with_detections"] + c["without_detections"]


def test_framewatch_peak_queue_stays_within_the_high_watermark(result):
    q = result.report["runs"]["framewatch"]["queue"]
    assert q["high_watermark_total"] == 2
    assert q["peak_load"] <= q["high_watermark_total"]


def test_framewatch_skips_and_the_baseline_never_does(result):
    assert result.report["runs"]["framewatch"]["counts"]["skipped"] > 0  # 40/s wanted, 25/s possible
    assert result.report["runs"]["baseline"]["counts"]["skipped"] == 0


def test_storage_bound_holds_per_task(result):
    for run in result.report["runs"].values():
        st = run["storage"]
        assert st["bound_violations"] == []
        assert st["max_frame_count_per_task"] == 15
        assert st["max_files_per_task_after_stop"] <= 15
        assert all(s["stored"] <= 4 * 15 for s in run["timeseries"])


def test_checks_pass_and_threads_come_back_after_stop(result):
    assert result.report["checks"]["ok"], result.report["checks"]
    for run in result.report["runs"].values():
        assert run["lifecycle"]["threads_after_stop"] <= run["lifecycle"]["threads_before"]


def test_json_has_every_documented_field(result):
    doc = json.loads(Path(result.json_path).read_text())
    top = _documented("Top-level fields")
    per_run = _documented("Run fields")
    assert len(top) >= 10 and len(per_run) >= 40  # the README tables were found
    assert set(REPORT_FIELDS) <= {p.split(".")[0] for p in top}
    assert set(RUN_FIELDS) <= {p.split(".")[0] for p in per_run}
    assert [p for p in top if not _has(doc, p)] == []
    for label, run in doc["runs"].items():
        assert [p for p in per_run if not _has(run, p)] == [], label


def test_a_bad_scenario_names_the_key_path():
    with pytest.raises(ScenarioError, match=r"unknown field `duraton_sec` - at `\$.bench`"):
        decode_scenario("[bench]\nduraton_sec = 3\n")
    with pytest.raises(ScenarioError, match=r"at `\$.framewatch.backpressure`"):
        decode_scenario(SCENARIO.replace("low_watermark = 1", "low_watermark = 5"))
    with pytest.raises(ScenarioError, match=r"at `\$.bench.inference.distribution`"):
        decode_scenario(SCENARIO.replace('"uniform"', '"gaussian"'))


SHIPPED = sorted((README.parent / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_scenario_is_valid(path):
    from framewatch.benchmarks.cli import main

    assert main([str(path), "--check"]) == 0


REMOTE = """
[bench]
name = "remote-smoke"
quick_duration_sec = 4
quick_warmup_sec = 1
decode_probe_sec = 0
capacity_probe_frames = 5

[bench.cameras]
count = 2
url = "synthetic://remote{i}?width=320&height=240&fps=25"
task_type = "吸烟检测"
interval_ms = 50

[bench.inference]
backend = "remote"
latency_ms = 40
mode = "inline"
"""


def test_the_remote_backend_runs_reference_services_for_both_runs(tmp_path):
    """Services start per run, register, infer every frame framewatch sends, and are gone after (~15 s)."""
    sc = decode_scenario(REMOTE)
    report = run_scenario(sc, path="remote", quick=True, out_dir=tmp_path, progress=Progress(enabled=False),
                          plots=False).report
    assert report["probes"]["capacity"]["fps"] > 5, report["probes"]["capacity"]  # one service: <= 25/s
    assert report["checks"]["ok"], report["checks"]
    for run in report["runs"].values():
        assert run["counts"]["inferred"] > 0 and run["counts"]["failed"] == 0
        assert list(run["utilisation"]["services"]) == ["ref-0"]
        assert abs(run["utilisation"]["services"]["ref-0"]["completed"] - run["counts"]["inferred"]) <= 1
    assert report["runs"]["framewatch"]["counts"]["skipped"] > 0  # 40/s wanted, < 25/s possible


def test_remote_needs_a_task_type_only_the_services_serve():
    with pytest.raises(ScenarioError, match=r"no local detector serves .* - at `\$.bench.cameras.task_type`"):
        decode_scenario(REMOTE.replace("吸烟检测", "人数统计"))


def test_the_rtsp_clip_keys_need_the_rtsp_test_camera():
    with pytest.raises(ScenarioError, match=r"rtsp_gop needs url .* - at `\$.bench.cameras.rtsp_gop`"):
        decode_scenario(SCENARIO.replace("interval_ms = 100", "interval_ms = 100\nrtsp_gop = 50"))


def test_the_limit_is_the_detector_or_what_the_needed_decoding_leaves():
    from framewatch.benchmarks.report import limit_figures

    probes = {"capacity": {"fps": 46.0, "cpu_ms_per_frame": 40.0},
              "decode": {"modes": {"full": {"cores": 0.7}, "keyframes": {"cores": 0.2}}}}
    lim = limit_figures(probes, 46.0, 70.0, 20.0, 2)
    assert lim["box_after_needed_decode_per_s"] == 45.0  # (2 - 0.2) cores / 40 ms
    assert (lim["limit_per_s"], lim["limit_basis"]) == (45.0, "box after keyframes decoding")
    assert lim["inferred_over_target"] == round(20 / 45, 3)
    assert lim["box_after_full_decode_per_s"] == 32.5
    assert limit_figures({}, 7.8, 70.0, 7.0, 2)["limit_per_s"] == 7.8  # no probes: the detector alone


def test_the_pyav_decode_probe_modes_decode_less_and_less(tmp_path):
    """The bundled clip (a file, looped) for 0.4 s per mode: keyframes decodes a few frames, demux none."""
    from framewatch.benchmarks.probes import stream_decode_probe
    from framewatch.benchmarks.scenario import run_config, variants

    sc = decode_scenario(SCENARIO.replace('"synthetic://smoke{i}?width=320&height=240&fps=25"', '"asset:vtest_5s.mp4"')
                         .replace("count = 4", "count = 1"))
    cfg = run_config(sc, variants(sc)[0], tmp_path).config
    got = {m: stream_decode_probe(cfg, m, 0.4) for m in ("full", "keyframes", "demux")}
    assert all(r["error"] is None and r["opened"] == 1 and r["packets_per_s"] > 0 for r in got.values()), got
    assert got["full"]["decoded_per_s"] > got["keyframes"]["decoded_per_s"] > 0 == got["demux"]["decoded_per_s"]
