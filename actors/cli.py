"""The ``framewatch`` command line: ``run [CONF]``, ``check CONF``, ``algo serve``, ``bench``, ``--version``.

``framewatch CONF`` (and ``python supervisor.py CONF``) still mean ``framewatch run CONF``: a first argument that is
not a command runs. Bare ``framewatch`` prints the usage and exits 2 instead of starting four cameras.

Exit codes: 0 normal stop, 1 cannot start (a child could not start: wrong storage credentials...), 2 bad configuration
or usage, 3 escalated (every inference slot crashed past its restart budget).
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgspec
import pykka

from .api.status import StatusLine, StatusLineHandler, render_status
from .core.config import ConfigError, Loaded, default_config_path, load_config
from .core.logstate import quiet_library_loggers
from .core.metrics import Snapshot
from .core.native_memory import bound_native_memory
from .core.supervision import StartError
from .inference import service as algo_service

if TYPE_CHECKING:
    from .system import Running

log = logging.getLogger("framewatch")

EXIT_OK, EXIT_CANNOT_START, EXIT_USAGE, EXIT_ESCALATED = 0, 1, 2, 3
EXIT_CONFIG = EXIT_USAGE  # a bad configuration is a usage error: the same code as argparse's

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
POLL_SEC = 0.5  # how often the run loop looks at the supervisor (and redraws the status line)

# What a first argument may be without meaning `run`: options of the top-level parser.
_TOP_LEVEL_OPTIONS = frozenset({"-h", "--help", "--version"})


# --- logging ------------------------------------------------------------------------------------------------------


def setup_logging(level: str) -> StatusLine:
    """Log records at ``level`` and above to stderr; returns stderr's status line, which every record clears and
    redraws (live only when stderr is a terminal). Calling it again replaces the handler instead of adding one."""
    status = StatusLine(sys.stderr)
    handler = StatusLineHandler(status)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StatusLineHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_library_loggers(level.lower() == "debug")
    return status


# --- running ------------------------------------------------------------------------------------------------------


class _Stop:
    """The SIGINT/SIGTERM handler: it only remembers the signal and wakes the run loop. Logging happens in the loop:
    a handler runs between two bytecodes of the main thread, which may be halfway through writing the status line."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.event.set()


@contextmanager
def _stop_on_signals() -> Iterator[_Stop]:
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _start(running: Callable[[Loaded], Running], loaded: Loaded) -> Running | None:
    """The started system, or None after telling why it cannot start: one line naming the setting to fix (the
    traceback at DEBUG only). Any other exception is a bug and keeps its traceback."""
    try:
        return running(loaded)
    except StartError as exc:
        log.debug("cannot start", exc_info=True)
        reason = " ".join(exc.reason.splitlines())  # one line, whatever the underlying error says
        print(f"framewatch: cannot start: {exc.setting}: {reason}", file=sys.stderr)
        return None


def _draw(status: StatusLine, snap: Snapshot | None) -> None:
    if snap is not None:
        status.show(render_status(snap, status.width()))


def _refresh(fw: Running, status: StatusLine) -> None:
    try:
        snap = fw.snapshot(fresh=False)  # the last stats tick's: polling must not shorten the stats window
    except (pykka.ActorDeadError, pykka.Timeout):
        return
    _draw(status, snap)


def _wait(fw: Running, stop: _Stop, duration: float | None, status: StatusLine) -> None:
    """Until a signal, ``duration`` seconds, an escalation or the supervisor's death; redraws the status meanwhile."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.event.is_set() and not fw.escalated.is_set() and fw.ref.is_alive():
        if status.live:
            _refresh(fw, status)
        timeout = POLL_SEC if deadline is None else min(POLL_SEC, deadline - time.monotonic())
        if timeout <= 0:
            return
        stop.event.wait(timeout)


def _log_signal(stop: _Stop, status: StatusLine) -> None:
    if stop.signum is None:
        return
    if stop.signum == signal.SIGINT:
        status.interrupted()
    log.info("received %s; shutting down", signal.Signals(stop.signum).name)


def _without_stats_log(loaded: Loaded) -> Loaded:
    """The live status line tells what the periodic ``stats:`` log line would."""
    cfg = loaded.config
    stats = msgspec.structs.replace(cfg.stats, log=False)
    return msgspec.structs.replace(loaded, config=msgspec.structs.replace(cfg, stats=stats))


def run(loaded: Loaded, duration: float | None = None, status: StatusLine | None = None, **overrides: Any) -> int:
    """Run until SIGINT/SIGTERM, ``duration`` seconds, or an escalation; returns the exit code. ``overrides`` go to
    ``Running`` (tests replace a component to crash it on purpose).

    ``status``: the line to show live stats on (``setup_logging``'s, so log records go above it). None, or a stream
    that is not a terminal: no status line, the periodic ``stats:`` log line instead.
    """
    # Not at the top: actors.system imports supervisor.py, whose main() imports this module; check and --version
    # need none of the system.
    from .system import Running

    status = status if status is not None else StatusLine(sys.stderr, live=False)
    if status.live:
        loaded = _without_stats_log(loaded)
    with _stop_on_signals() as stop, status:
        fw = _start(functools.partial(Running, **overrides), loaded)
        if fw is None:
            return EXIT_CANNOT_START
        try:
            _wait(fw, stop, duration, status)
            _log_signal(stop, status)
        finally:
            _draw(status, fw.stop())  # the final figures stay on the terminal's last line
    if fw.escalated.is_set():
        log.critical("stopped after escalation: %s", fw.escalation)
        return EXIT_ESCALATED
    return EXIT_OK


# --- commands -----------------------------------------------------------------------------------------------------


def package_version() -> str:
    try:
        return importlib.metadata.version("framewatch")
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        return "unknown"


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _load_or_exit(path: str | None) -> Loaded:
    conf = Path(path) if path else default_config_path()
    try:
        loaded = load_config(conf)
        # The embedded default belongs to the package: run-time task changes apply but are not written into it.
        return loaded if path else msgspec.structs.replace(loaded, path="")
    except ConfigError as exc:
        print(f"framewatch: bad configuration {conf}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _run_command(args: argparse.Namespace) -> int:
    status = setup_logging(args.log_level)
    loaded = _load_or_exit(args.conf)
    bound_native_memory()  # before any thread exists
    return run(loaded, args.duration, status)


def _check_command(args: argparse.Namespace) -> int:
    loaded = _load_or_exit(args.conf)
    for notice in loaded.notices:
        print(f"notice: {notice}")
    print(f"{args.conf}: OK ({len(loaded.config.enabled_tasks())} tasks enabled)")
    return EXIT_OK


def _serve_command(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    bound_native_memory()  # before any thread exists
    return algo_service.serve(args)


def _add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default="info", metavar="LEVEL",
                   help=f"log records at this level and above: {', '.join(LOG_LEVELS)} (default: info)")


def build_parser() -> tuple[argparse.ArgumentParser, Collection[str]]:
    """The parser and its command names."""
    parser = argparse.ArgumentParser(prog="framewatch", description="Edge video analytics on actors: cameras in, "
                                     "alerts out, extraction never outpacing inference.",
                                     epilog="`framewatch CONF` is short for `framewatch run CONF`.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_run = sub.add_parser("run", help="run the pipeline until SIGINT/SIGTERM or --duration")
    p_run.add_argument("conf", nargs="?", metavar="CONF",
                       help="configuration file (TOML; default: the embedded conf/default.toml)")
    p_run.add_argument("--duration", type=positive_seconds, metavar="SECONDS",
                       help="stop after this many seconds (default: run until SIGINT/SIGTERM)")
    _add_log_level(p_run)
    p_run.set_defaults(handler=_run_command)

    p_check = sub.add_parser("check", help="validate a configuration and exit (code 2 if it is bad)")
    p_check.add_argument("conf", metavar="CONF", help="configuration file (TOML) to validate")
    p_check.set_defaults(handler=_check_command)

    p_algo = sub.add_parser("algo", help="algorithm services")
    algo_sub = p_algo.add_subparsers(dest="algo_command", metavar="ALGO_COMMAND", required=True)
    p_serve = algo_sub.add_parser("serve", help="run the reference algorithm service (the built-in detector), "
                                  "registered with a framewatch")
    algo_service.add_arguments(p_serve)
    _add_log_level(p_serve)
    p_serve.set_defaults(handler=_serve_command)

    for name, command in plugin_commands().items():  # e.g. `bench`: each parses its own arguments
        sub.add_parser(name, help=f"from {command.module} (`framewatch {name} -h`)", add_help=False)
    return parser, sub.choices.keys()


def plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """Subcommands other packages register (entry point group ``framewatch.commands``, name -> ``module:main``).

    The benchmark harness registers ``bench`` this way, so the product never imports the benchmarks (which import
    the product): ``framewatch bench`` exists where they are installed."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group="framewatch.commands")}


def _with_default_command(argv: list[str], commands: Collection[str]) -> list[str]:
    """``framewatch CONF`` and ``framewatch --duration 9`` mean ``framewatch run ...``. Only with an argument: bare
    ``framewatch`` is a new user asking what it does, not a request to start the embedded default."""
    if argv and argv[0] not in commands and argv[0] not in _TOP_LEVEL_OPTIONS:
        return ["run", *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """The ``framewatch`` console script; returns the exit code (argparse's errors raise SystemExit(2))."""
    parser, commands = build_parser()
    args_list = _with_default_command(list(sys.argv[1:] if argv is None else argv), commands)
    if not args_list:
        parser.error("a command is required (`framewatch run` runs the embedded default conf; -h for help)")
    plugin = plugin_commands().get(args_list[0])
    if plugin is not None:
        return int(plugin.load()(args_list[1:]))
    args = parser.parse_args(args_list)
    return int(args.handler(args))
