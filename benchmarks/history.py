"""The alert history's queries on a large database: fills one with ``--rows`` alerts (1,000,000 by default) and times
the old query API's common queries through ``History`` (each call opens its read-only connection, as an HTTP request
does), printing the median and 95th percentile in ms. The requirement: under 50 ms at 1,000,000 rows.

    python -m framewatch.benchmarks.history [--rows N | --quick] [--repeat 30] [--db PATH] [--keep]

The rows: 100 cameras of 9 task types, one alert every ~2.6 s over 30 days, detection counts 0-20 skewed low (most
alerts have 1-2), records of real size (``encode_alert`` of an alert ``make_alert`` made, ~800 bytes). The fill goes
through ``History.add_rows`` in transactions of 50,000 rows (the trim off: ``max_rows`` 0), with every index in place.
``--quick`` is 100,000 rows; ``--db`` reuses (or keeps) a file, skipping the fill when it already holds the rows.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from framewatch.actors.alerts.history import AlertQuery, History, Row, row_of
from framewatch.actors.alerts.records import make_alert, utc_iso
from framewatch.actors.analytics.rules import Decision
from framewatch.actors.core.messages import Alert, Detection, Frame

TASKS = 100
TASK_TYPES = ("人数统计", "区域入侵", "绊线人数统计", "徘徊检测", "离岗检测", "物品遗留", "跌倒检测", "吸烟检测", "安全帽检测")
SPAN_MS = 30 * 86_400_000
#: Detection counts and their weights: mostly 1-2, some 0 (``end`` records), a tail up to 20.
COUNTS = list(range(21))
COUNT_WEIGHTS = [10, 40, 20, 10, 6, 4] + [1] * 15
FILL_CHUNK = 50_000


def template() -> Alert:
    frame = Frame(task_id="cam-000", task_type=TASK_TYPES[0], seq=1, captured_at=time.time(), captured_mono=0.0,
                  image=None)
    people = [Detection(label="person", score=0.81, box=(10 + i, 20, 110 + i, 220)) for i in range(2)]
    decision = Decision(alert=True, rule="people_count", counts={"person": 2}, detections=people)
    return make_alert(frame, decision, image_key="alerts/人数统计/cam-000/20261129T062554.384Z-000000042.jpg",
                      inference_ms=41.5, backend="ssdlite-person/openvino")


def rows(n: int, end_ms: int, seed: int = 1) -> Iterator[Row]:
    """``n`` rows, oldest first, ending at ``end_ms``; ids as ``core.ids`` draws them (ms x 1000 + a sequence)."""
    rng = random.Random(seed)
    base = template()
    step = SPAN_MS / n
    start = end_ms - SPAN_MS
    for i in range(n):
        ms = int(start + i * step)
        task = rng.randrange(TASKS)
        made = utc_iso(ms / 1000)
        alert = msgspec.structs.replace(base, id=ms * 1000 + i % 1000, task_id=f"cam-{task:03d}",
                                        task_type=TASK_TYPES[task % len(TASK_TYPES)], created_at=made,
                                        updated_at=made, detection_count=rng.choices(COUNTS, COUNT_WEIGHTS)[0])
        yield row_of(alert)


def fill(history: History, n: int, end_ms: int) -> float:
    """Seconds to add ``n`` rows in transactions of ``FILL_CHUNK``."""
    began = time.perf_counter()
    chunk: list[Row] = []
    for row in rows(n, end_ms):
        chunk.append(row)
        if len(chunk) == FILL_CHUNK:
            history.add_rows(chunk)
            chunk = []
    history.add_rows(chunk)
    return time.perf_counter() - began


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Median and 95th percentile of ``call`` in ms, after one untimed warm-up call; and its last result."""
    result = call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))], result


def total_only(path: Path) -> Callable[[], object]:
    def count() -> int:
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m framewatch.benchmarks.history", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per query (after one warm-up)")
    parser.add_argument("--db", type=Path, help="database file to fill (or reuse); default: a temporary one")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="fw-history-") as tmp:
        path = args.db or Path(tmp) / "alerts.db"
        history = History.open(path, max_rows=0)
        if history.error:
            print(f"cannot open {path}: {history.error}")
            return 1
        end_ms = int(time.time() * 1000)
        if history.rows != n:
            if history.rows:
                print(f"{path} holds {history.rows:,} rows, not {n:,}: use another --db")
                return 1
            print(f"filling {path} with {n:,} rows")
            seconds = fill(history, n, end_ms)
            print(f"  {seconds:.1f} s ({n / seconds:,.0f} rows/s), {path.stat().st_size / 1e6:.0f} MB")
        newest = history.query(AlertQuery(page_size=1))
        end_ms = msgspec.json.decode(newest.records[0], type=Alert).id // 1000 if newest.records else end_ms
        week = (end_ms - 7 * 86_400_000, end_ms)
        last_of_task = -(-history.query(AlertQuery(task_id="cam-042")).total // 20)
        some_id = msgspec.json.decode(history.query(AlertQuery(page=n // 40)).records[0], type=Alert).id
        cases: list[tuple[str, Callable[[], object]]] = [
            ("no filter, page 1 (+ total)", lambda: history.query(AlertQuery())),
            ("task_id, page 1", lambda: history.query(AlertQuery(task_id="cam-042"))),
            ("task_type + last 7 days", lambda: history.query(AlertQuery(task_type=TASK_TYPES[2], start_ms=week[0],
                                                                          end_ms=week[1]))),
            ("min_detections=3", lambda: history.query(AlertQuery(min_detections=3))),
            ("min_detections=10 (~10%)", lambda: history.query(AlertQuery(min_detections=10))),
            ("task_id + min 2 + max 5 + 7 days", lambda: history.query(AlertQuery(
                task_id="cam-007", min_detections=2, max_detections=5, start_ms=week[0], end_ms=week[1]))),
            ("time range only (a day, 10 days ago)", lambda: history.query(AlertQuery(
                start_ms=end_ms - 11 * 86_400_000, end_ms=end_ms - 10 * 86_400_000))),
            ("count total only", total_only(path)),
            ("deep page: offset 50,000", lambda: history.query(AlertQuery(page=2501))),
            ("deep page: task_id, last page", lambda: history.query(AlertQuery(task_id="cam-042",
                                                                                page=last_of_task))),
            ("page_size 1000, page 1", lambda: history.query(AlertQuery(page_size=1000))),
            ("deepest page: offset rows - 20 (limit)", lambda: history.query(AlertQuery(page=n // 20))),
            ("get(id)", lambda: history.get(some_id)),
            ("task_ids", history.task_ids),
        ]
        print(f"\n{n:,} rows, {args.repeat} calls each (ms; each call opens its read-only connection)")
        print(f"{'query':<40} {'median':>8} {'p95':>8}  result")
        worst = 0.0
        for name, call in cases:
            median, p95, result = timed(call, args.repeat)
            worst = max(worst, p95)
            print(f"{name:<40} {median:8.2f} {p95:8.2f}  {describe(result)}")
        print(f"\nworst p95: {worst:.1f} ms ({'under' if worst < 50 else 'OVER'} 50 ms)")
        history.close()
    return 0


def describe(result: object) -> str:
    if hasattr(result, "records"):
        return f"{len(result.records)} items, total {result.total:,}"  # type: ignore[attr-defined]
    if isinstance(result, list):
        return f"{len(result)} task ids"
    if isinstance(result, bytes):
        return f"{len(result)} bytes"
    return str(result)


if __name__ == "__main__":
    raise SystemExit(main())
