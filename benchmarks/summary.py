"""The last lines of `make bench`: one per target of issue 11, in a fixed form a script can read.

    .venv/bin/python benchmarks/summary.py

Reads what benchmarks/migrations.py, cold_start.py and workflow.py left in .cache/bench/ (run them first); exits 1
naming any benchmark whose figures are missing. Asserts no target: the figures are for reading.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.results import RESULTS_DIR, load

LINES = (
    ("workflow", "overhead_ratio_vs_bash", "overhead ratio vs bash: {:.2f}"),
    ("workflow", "stopped_to_noticed_seconds", "stopped-to-noticed seconds: {:.1f}"),
    ("workflow", "transitions_per_happy_release", "transitions per happy release: {:d}"),
    ("cold_start", "cold_start_ratio_worst_step", "cold start ratio vs boto3 (worst step): {:.2f}"),
    ("cold_start", "package_size_mb", "package size MB: {:.1f}"),
    ("migrations", "dbmigrate_at_head_seconds", "dbmigrate at head seconds: {:.2f}"),
)


def main() -> int:
    missing = sorted({name for name, _, _ in LINES if load(name) is None})
    if missing:
        print(f"benchmarks/summary.py: no figures from {', '.join(missing)} in {RESULTS_DIR}", file=sys.stderr)
        return 1
    for name, key, form in LINES:
        figures = load(name)
        assert figures is not None
        print(form.format(figures[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
