"""Ready is part of start: a child that cannot start stops framewatch at once, with one line naming the setting."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from framewatch.actors.core.config import decode_config
from framewatch.actors.core.supervision import StartError
from framewatch.actors.system import Running

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def base_conf(tmp_path: Path, extra: str = "") -> str:
    return f"""
[frame_extractor]
output_dir = "{tmp_path}/frames"
[[frame_extractor.tasks]]
id = "cam-1"
task_type = "人数统计"
rtsp_url = "synthetic://cam-1?width=160&height=120&fps=10"
[alerts]
jsonl_path = "{tmp_path}/alerts.jsonl"
[stats]
path = "{tmp_path}/stats.json"
{extra}
"""


def broken_model(tmp_path: Path) -> str:
    model = tmp_path / "broken.pb"
    model.write_bytes(b"this is not a TensorFlow graph")
    return f'[detector]\nbackend = "ssdlite"\nmodel = "{model}"\n'


@pytest.fixture
def taken_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def run_cli(tmp_path: Path, text: str) -> tuple[int, str, float]:
    conf = tmp_path / "conf.toml"
    conf.write_text(text, encoding="utf-8")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(ROOT / "supervisor.py"), "run", str(conf), "--duration", "60"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


def cannot_start_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "cannot start" in line]


def test_a_model_that_cannot_load_exits_1_with_one_line_naming_detector_model(tmp_path):
    code, out, elapsed = run_cli(tmp_path, base_conf(tmp_path, broken_model(tmp_path)))
    assert code == 1, out
    assert cannot_start_lines(out) == [cannot_start_lines(out)[0]]
    line = cannot_start_lines(out)[0]
    assert line.startswith("framewatch: cannot start: detector.model: cannot load ")
    assert "broken.pb" in line
    assert "Traceback" not in out and "framewatch started" not in out
    assert elapsed < 30


def test_a_taken_http_port_exits_1_with_one_line_naming_http_port(tmp_path, taken_port):
    extra = f"[http]\nenable = true\nport = {taken_port}\n"
    code, out, _ = run_cli(tmp_path, base_conf(tmp_path, extra))
    assert code == 1, out
    assert cannot_start_lines(out) == [
        f"framewatch: cannot start: http.port: cannot listen on 127.0.0.1:{taken_port}: Address already in use "
        "(choose another [http] port, or set enable = false)"
    ]
    assert "Traceback" not in out


def test_a_spool_directory_that_cannot_be_made_exits_1_naming_alerts_spool_dir(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    text = base_conf(tmp_path).replace(
        "[alerts]\n", f'[ai_analysis]\nmq_type = "kafka"\nmq_address = "127.0.0.1:9"\n'
                      f'[alerts]\nspool_dir = "{tmp_path}/a-file/spool"\n')
    code, out, _ = run_cli(tmp_path, text)
    assert code == 1, out
    [line] = cannot_start_lines(out)
    assert line.startswith(f"framewatch: cannot start: alerts.spool_dir: cannot use '{tmp_path}/a-file/spool': ")
    assert "Traceback" not in out


@pytest.mark.parametrize("failure", ["model", "port"])
def test_a_failed_start_leaves_no_framewatch_thread(tmp_path, taken_port, failure):
    extra = broken_model(tmp_path) if failure == "model" else f"[http]\nenable = true\nport = {taken_port}\n"
    before = set(threading.enumerate())
    with pytest.raises(StartError) as info:
        Running(decode_config(base_conf(tmp_path, extra)))
    assert info.value.setting == ("detector.model" if failure == "model" else "http.port")
    wait_for(lambda: set(threading.enumerate()) <= before, 5, "every thread of the failed start to end")
