"""The command line (actors/cli.py) and the live status line (actors/api/status.py)."""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import threading
import types
from typing import Any

import msgspec
import pytest
from framewatch.actors import cli
from framewatch.actors.api.status import ECHO_MARGIN, StatusLine, StatusLineHandler, render_status
from framewatch.actors.core.config import default_config_path, load_config
from framewatch.actors.core.metrics import Snapshot
from framewatch.actors.core.supervision import StartError

STATUS = "cams=4 infer=12.5/s"


def make_snapshot(**totals: Any) -> Snapshot:
    counts = dict(sampled=130_482, skipped=4_211, inferred=126_000, failed=17, in_flight=3, with_detections=90_000,
                  without_detections=36_000, stored=800, inferred_per_s=12.5, extracted_per_s=12.7, success_rate=0.99)
    counts.update(totals)
    camera = {**counts, "state": "running"}
    del camera["success_rate"]
    return msgspec.convert({
        "time": "2024-05-01T12:00:00Z", "uptime_sec": 3725.0, "window_sec": 5.0,
        "cameras": {f"cam-{k}": camera for k in range(4)},
        "totals": counts,
        "inference": {"avg_ms": 80.0, "p95_ms": 121.4, "max_ms": 300.0, "frame_age_p50_ms": 90.0,
                      "frame_age_p95_ms": 240.0, "busy": 0.853, "slots": 2, "failures_by_reason": {}},
        "mailboxes": {},
        "backpressure": {"policy": "fair", "paused": False, "level": 2, "high": 4, "low": 2, "peak_load": 4},
        "alerts": {"emitted": 1523, "written": 1520, "dropped": 0, "batch_queue": 3, "spooled": 0},
        "process": {"rss_mb": 231.4, "threads": 41, "open_fds": 30, "cpu_percent": 120.0},
        "components": {}, "restarts": {},
    }, Snapshot)


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: ``\\r`` returns to column 0, ``\\x1b[K`` erases to the end of the line,
    ``\\n`` starts a new one, anything else overwrites the cell under the cursor."""
    lines: list[str] = []
    line: list[str] = []
    col, i = 0, 0
    while i < len(raw):
        if raw.startswith("\x1b[K", i):
            del line[col:]
            i += 3
            continue
        ch = raw[i]
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(line))
            line, col = [], 0
        else:
            line[col:col + 1] = [ch]
            col += 1
        i += 1
    return [*lines, "".join(line)]


@pytest.fixture
def terminal() -> FakeTerminal:
    return FakeTerminal()


@pytest.fixture
def logger(terminal):
    """A logger writing "LEVEL message" to the fake terminal, above its status line."""
    status = StatusLine(terminal)
    handler = StatusLineHandler(status)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("framewatch")
    log.addHandler(handler)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        yield log, status
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture
def restore_root_logging():
    """cli.main sets up the root logger; put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    return info.value.code


# --- render_status ------------------------------------------------------------------------------------------------

KEY_FIGURES = ["cams=4", "infer=12.5/s", "skip=4211", "in_flight=3", "alerts=1520/1523", "busy=85%", "p95=121ms"]


def test_at_80_columns_the_status_line_fits_and_shows_the_key_figures_in_order_of_importance():
    line = render_status(make_snapshot(), 80 - ECHO_MARGIN)  # what an 80-column terminal leaves it
    assert len(line) <= 80 - ECHO_MARGIN
    positions = [line.index(figure) for figure in KEY_FIGURES]
    assert positions == sorted(positions)


def test_at_200_columns_the_status_line_adds_the_other_figures_after_the_key_ones():
    narrow, wide = render_status(make_snapshot(), 80), render_status(make_snapshot(), 200)
    assert len(wide) <= 200
    assert wide.startswith(narrow) and len(wide) > len(narrow)
    for figure in ["failed=17", "inferred=126k", "sampled=130k", "extract=12.7/s", "age95=240ms", "rss=231MB",
                   "threads=41", "up=1h02m"]:
        assert figure in wide


def test_at_40_columns_the_status_line_still_fits_and_starts_with_the_cameras():
    line = render_status(make_snapshot(), 40)
    assert len(line) <= 40 and line.startswith("cams=4 infer=12.5/s")


def test_large_counts_are_abbreviated_so_the_line_keeps_its_length_over_a_long_run():
    line = render_status(make_snapshot(skipped=999_999, in_flight=12_345), 200)
    assert "skip=1.0M" in line and "in_flight=12.3k" in line


def test_the_status_line_never_exceeds_its_width_whatever_the_width_or_the_figures():
    snaps = [make_snapshot(), make_snapshot(skipped=10**15, in_flight=10**9, inferred_per_s=123456.78)]
    for snap in snaps:
        for width in range(0, 260):
            assert len(render_status(snap, width)) <= width, width


# --- arguments ----------------------------------------------------------------------------------------------------


def test_version_prints_the_package_name_and_version_and_exits_0(capsys):
    assert exit_code(["--version"]) == 0
    assert capsys.readouterr().out == f"framewatch {cli.package_version()}\n"
    assert cli.package_version() != "unknown"  # the test environment installs framewatch


def test_bare_framewatch_prints_the_usage_and_exits_2_instead_of_running(capsys):
    assert exit_code([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: framewatch") and "a command is required" in err


def test_a_first_argument_that_is_not_a_command_means_run(capsys, restore_root_logging, tmp_path):
    missing = tmp_path / "missing.toml"
    assert exit_code([str(missing)]) == 2
    assert f"framewatch: bad configuration {missing}: Cannot read configuration" in capsys.readouterr().err


def test_log_level_accepts_only_real_levels_in_any_case(capsys):
    assert exit_code(["run", "--log-level", "verbose"]) == 2
    assert "argument --log-level: invalid choice: 'verbose'" in capsys.readouterr().err
    parser, _ = cli.build_parser()
    assert parser.parse_args(["run", "--log-level", "DEBUG"]).log_level == "debug"


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
def test_duration_must_be_a_positive_finite_number_of_seconds(capsys, value):
    assert exit_code(["run", "--duration", value]) == 2
    assert f"argument --duration: must be a positive number of seconds, not {value}" in capsys.readouterr().err


def _parsers(parser: argparse.ArgumentParser, path: str = "") -> dict[str, argparse.ArgumentParser]:
    found = {path: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.update(_parsers(child, f"{path} {name}".strip()))
    return found


def _without_help(parser: argparse.ArgumentParser) -> list[str]:
    return [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
            if not a.help and not isinstance(a, argparse._SubParsersAction)]


@pytest.mark.parametrize("command", [
    "", "run", "check",
    "algo serve",
])
def test_every_option_and_positional_has_help_text(command):
    parser, _ = cli.build_parser()
    assert _without_help(_parsers(parser)[command]) == []


def test_check_prints_the_notices_then_ok_with_the_number_of_enabled_tasks(capsys, tmp_path):
    conf = tmp_path / "off.toml"
    conf.write_text("[frame_extractor]\nenable = false\n", encoding="utf-8")
    assert cli.main(["check", str(conf)]) == 0
    out = capsys.readouterr().out
    assert out == f"notice: frame_extractor.enable = false: no task runs\n{conf}: OK (0 tasks enabled)\n"


# --- the status line and the log ----------------------------------------------------------------------------------


def test_a_log_record_clears_the_status_line_is_written_whole_and_the_status_is_redrawn_after_it(terminal, logger):
    log, status = logger
    status.show(STATUS)
    log.warning("storage down")
    raw = terminal.getvalue()
    assert raw == f"\r{STATUS}\x1b[K" + "\r\x1b[K" + "WARNING storage down\n" + f"{STATUS}\x1b[K"
    assert screen(raw) == ["WARNING storage down", STATUS]
    for line in screen(raw):
        assert not ("storage down" in line and "cams=" in line)


def test_after_ctrl_c_the_shutdown_log_starts_on_a_clean_line(terminal, logger):
    log, status = logger
    terminal.write("^C")  # the terminal's echo, where the cursor is: at the start of a line with no status yet
    status.interrupted()
    log.info("received SIGINT; shutting down")
    status.show(STATUS)
    terminal.write("^C")  # and at the end of a status
    status.interrupted()
    log.info("shutdown: stopping sources")
    assert screen(terminal.getvalue()) == ["INFO received SIGINT; shutting down", "INFO shutdown: stopping sources",
                                           STATUS]


def test_close_leaves_the_last_status_on_its_own_line_and_later_records_below_it(terminal, logger):
    log, status = logger
    status.show("cams=4 infer=1.0/s")
    status.show(STATUS)  # rewritten in place
    status.close()
    log.critical("stopped after escalation: every inference slot was given up")
    assert terminal.getvalue().endswith(f"{STATUS}\x1b[K\nCRITICAL stopped after escalation: every inference slot "
                                        "was given up\n")
    assert screen(terminal.getvalue()) == [STATUS, "CRITICAL stopped after escalation: every inference slot was "
                                                   "given up", ""]


def test_off_a_terminal_there_is_no_status_line_only_the_log():
    stream = io.StringIO()
    status = StatusLine(stream)
    handler = StatusLineHandler(status)
    status.show(STATUS)
    with status.cleared():
        stream.write("a record\n")
    status.close()
    assert not status.live and stream.getvalue() == "a record\n"
    handler.close()


# --- the run loop, on a stand-in for actors.system.Running -------------------------------------------------------


class FakeRunning:
    """Running's API (actors/system.py), and what a test makes it do."""

    start_error: Exception | None = None
    escalate_with = ""
    interrupt_on_snapshot = False  # SIGINT arrives while the run loop polls
    last: FakeRunning | None = None

    def __init__(self, loaded: Any) -> None:
        if self.start_error is not None:
            raise self.start_error
        type(self).last = self
        self.loaded = loaded
        self.escalated = threading.Event()
        self.escalation = self.escalate_with
        if self.escalate_with:
            self.escalated.set()
        self.ref = types.SimpleNamespace(is_alive=lambda: True)
        self.final: Snapshot | None = None
        self.stopped = False

    def snapshot(self, fresh: bool = True) -> Snapshot:
        assert fresh is False
        if self.interrupt_on_snapshot:
            signal.raise_signal(signal.SIGINT)
        return make_snapshot(inferred_per_s=1.0)

    def stop(self) -> Snapshot:
        self.stopped = True
        self.final = make_snapshot()
        return self.final


@pytest.fixture
def running(monkeypatch):
    """cli.run starts FakeRunning (a fresh subclass per test, so settings do not leak)."""
    fake = type("Running", (FakeRunning,), {})
    monkeypatch.setitem(sys.modules, "framewatch.actors.system", types.SimpleNamespace(Running=fake))
    return fake


@pytest.fixture(scope="module")
def loaded():
    return load_config(default_config_path())


def test_when_a_child_cannot_start_run_prints_one_line_naming_the_setting_and_returns_1(running, loaded, capsys):
    running.start_error = StartError("frame_extractor.minio.bucket", "bucket name 'Frames' is invalid")
    assert cli.run(loaded, duration=5) == 1
    assert capsys.readouterr().err == ("framewatch: cannot start: frame_extractor.minio.bucket: "
                                       "bucket name 'Frames' is invalid\n")


def test_an_error_other_than_start_error_while_starting_is_a_bug_and_keeps_its_traceback(running, loaded):
    running.start_error = ZeroDivisionError("division by zero")
    with pytest.raises(ZeroDivisionError):
        cli.run(loaded, duration=5)


def test_an_escalation_stops_the_run_with_exit_code_3_and_logs_the_reason(running, loaded, caplog):
    running.escalate_with = "every inference slot was given up"
    with caplog.at_level(logging.INFO, logger="framewatch"):
        assert cli.run(loaded) == 3
    assert running.last.stopped
    assert "stopped after escalation: every inference slot was given up" in caplog.messages


def test_on_a_terminal_run_draws_the_status_turns_the_stats_log_off_and_ends_on_the_final_status(
        running, loaded, terminal, logger):
    _, status = logger
    assert cli.run(loaded, duration=0.01, status=status) == 0
    fw = running.last
    assert fw.stopped and fw.loaded.config.stats.log is False
    final = render_status(fw.final, status.width())
    assert screen(terminal.getvalue()) == [final, ""]
    assert "infer=1.0/s" in terminal.getvalue()  # the status drawn while running


def test_off_a_terminal_run_keeps_the_stats_log_line(running, loaded):
    assert cli.run(loaded, duration=0.01) == 0
    assert running.last.loaded.config.stats.log is True


def test_sigint_while_running_logs_the_shutdown_on_a_fresh_line_and_exits_0(running, loaded, terminal, logger):
    _, status = logger
    running.interrupt_on_snapshot = True
    before = signal.getsignal(signal.SIGINT)
    assert cli.run(loaded, status=status) == 0
    lines = screen(terminal.getvalue())
    assert lines[0] == "INFO received SIGINT; shutting down"
    assert lines[-2:] == [render_status(running.last.final, status.width()), ""]
    assert signal.getsignal(signal.SIGINT) is before  # restored
