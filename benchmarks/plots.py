"""Plots of a report (matplotlib, the optional ``bench`` extra): one PNG, one column per run, side by side.

Rows: rates over time (extracted, inferred), the inference queue (frames queued or being inferred, and the writer's
mailbox), stored frames over time (objects in storage, objects written), and the frame-age histogram. Without
matplotlib, ``plot_report`` returns None and the report says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rates(ts: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for a, b in zip(ts, ts[1:]):
        dt = b["t"] - a["t"]
        if dt > 0:
            xs.append(b["t"])
            ys.append((b[key] - a[key]) / dt)
    return xs, ys


def plot_report(report: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = [r for r in report["runs"].values() if r.get("timeseries")]
    if not runs:
        return None
    fig, axes = plt.subplots(4, len(runs), figsize=(6.5 * len(runs), 13), squeeze=False)
    warmup = report["scenario"].get("warmup_sec") or 0
    for col, r in enumerate(runs):
        ts = r["timeseries"]
        t = [x["t"] for x in ts]
        ax = axes[0][col]
        for key, label in (("extracted", "extracted /s"), ("inferred", "inferred /s")):
            xs, ys = _rates(ts, key)
            ax.plot(xs, ys, label=label)
        demand = (r.get("rates") or {}).get("demand_per_s")
        if demand:
            ax.axhline(demand, color="grey", ls=":", label="wanted /s")
        ax.set_title(f"{r['label']} ({r['policy']}): rates")
        ax.set_ylabel("frames / s")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)

        ax = axes[1][col]
        ax.plot(t, [x["in_flight"] for x in ts], label="queued + inferring")
        ax.plot(t, [x["writer_mailbox"] for x in ts], label="writer mailbox")
        hw = (r.get("queue") or {}).get("high_watermark_total")
        if hw and r["policy"] != "unbounded":
            ax.axhline(hw, color="red", ls=":", label="high watermark")
        ax.set_title("inference queue (frames)")
        ax.legend(loc="upper left", fontsize=8)

        ax = axes[2][col]
        ax.plot(t, [x["stored"] for x in ts], label="objects stored (retention index)")
        ax.plot(t, [x["written"] for x in ts], label="objects written since start")
        ax.set_title("storage")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("s since start")
        for row in range(3):
            if warmup:
                axes[row][col].axvspan(0, warmup, color="grey", alpha=0.12)

        ax = axes[3][col]
        hist = (r.get("frame_age_ms") or {}).get("histogram")
        if hist:
            edges = hist["edges_ms"]
            labels = [f"<{_short(e)}" if e is not None else f">={_short(edges[k])}" for k, e in enumerate(edges[1:])]
            ax.bar(range(len(hist["counts"])), hist["counts"])
            ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
        fa = r.get("frame_age_ms") or {}
        ax.set_title(f"frame age at inference: p50 {fa.get('p50')} p95 {fa.get('p95')} max {fa.get('max')} ms",
                     fontsize=9)
        ax.set_ylabel("frames")
    fig.suptitle(f"{report['scenario']['name'] or report['scenario']['path']}: {report['order']}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def _short(ms: float) -> str:
    return f"{ms / 1000:g}s" if ms >= 1000 else f"{ms:g}ms"
