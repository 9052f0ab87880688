"""What every benchmark shares: a description of the box, and its tables."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def describe_machine(**extra: Any) -> dict[str, Any]:
    """CPU, platform and load before the run, plus what the benchmark adds (library versions)."""
    model_names = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return {
        "cpus": os.cpu_count(),
        "cpu": model_names[0] if model_names else platform.processor(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        **extra,
    }


def text_table(rows: list[tuple[str, ...]]) -> str:
    """Left-aligned columns, for the figures a benchmark prints."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
