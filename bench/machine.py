"""What every benchmark records about the box it ran on."""

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
