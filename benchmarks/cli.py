"""``python -m benchmarks SCENARIO.toml [--quick] [--out DIR]`` (also ``framewatch bench``): run, print the table.

Exit codes: 0 the runs completed and framewatch's invariants held; 1 an invariant failed (see ``checks`` in the
report); 2 a bad scenario (the message names the key path); 3 this machine lacks what the scenario needs (the RTSP
test camera's packages, a reference service that would not start).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .scenario import ScenarioError, SetupError, load_scenario

EXIT_OK, EXIT_CHECKS, EXIT_SCENARIO, EXIT_SETUP = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    from framewatch.actors.core.native_memory import bound_native_memory

    bound_native_memory()  # the same malloc settings as framewatch run, so the soak measures what users run
    parser = argparse.ArgumentParser(
        prog="framewatch bench",
        description="Benchmark framewatch against the old system's behaviour (the unbounded baseline) under a load.",
    )
    parser.add_argument("scenario", help="scenario file (TOML): [bench] plus a framewatch conf under [framewatch]")
    parser.add_argument("--quick", action="store_true", help="the scenario's short variant (quick_duration_sec)")
    parser.add_argument("--out", help="output directory (default benchmarks/out/<name>-<time>)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw plots.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--keep-store", action="store_true", help="keep the runs' stored frames")
    parser.add_argument("--check", action="store_true", help="validate the scenario and exit")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"framewatch bench: bad scenario {args.scenario}: {exc}", file=sys.stderr)
        return EXIT_SCENARIO
    if args.check:
        print(f"{args.scenario}: OK (mode {sc.bench.mode})")
        return EXIT_OK
    from .harness import run_scenario  # imports OpenCV, psutil, the actors
    from .progress import Progress

    try:
        result = run_scenario(sc, path=args.scenario, quick=args.quick, out_dir=args.out,
                              progress=Progress(enabled=not args.no_progress), plots=not args.no_plots,
                              keep_store=args.keep_store)
    except SetupError as exc:
        print(f"framewatch bench: cannot run {args.scenario}: {exc}", file=sys.stderr)
        return EXIT_SETUP
    print(result.table)
    print(f"report: {result.json_path}")
    return EXIT_OK if result.report["checks"].get("ok") else EXIT_CHECKS


if __name__ == "__main__":
    sys.exit(main())
