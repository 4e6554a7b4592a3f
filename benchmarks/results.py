"""Where the benchmarks leave their headline figures for ``benchmarks/summary.py`` (one JSON file per benchmark)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("DEPLOYFLOW_BENCH_DIR", REPO_ROOT / ".cache" / "bench"))


def save(benchmark: str, figures: dict[str, Any]) -> Path:
    """Write one benchmark's figures (replacing the previous run's)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load(benchmark: str) -> dict[str, Any] | None:
    """One benchmark's figures, or None when it has not run."""
    path = RESULTS_DIR / f"{benchmark}.json"
    if not path.exists():
        return None
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else None
