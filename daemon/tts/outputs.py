"""What a rendered text leaves beside itself: <name>.wav, the <name>.json sidecar saying how
it was made, and <name>.error.txt while it cannot be rendered. A new output format is named
here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outputs:
    wav: Path
    sidecar: Path
    error: Path

    @classmethod
    def of(cls, text: Path) -> Outputs:
        return cls(text.with_suffix(".wav"), text.with_suffix(".json"), error_file(text))


def error_file(text: Path) -> Path:
    return text.with_suffix(".error.txt")


def is_rendered(text: Path, content_hash: str) -> bool:
    """Rendered when the wav exists and its sidecar names this very text: so editing a text
    renders it again and deleting its wav brings it back."""
    outputs = Outputs.of(text)
    if not (outputs.wav.exists() and outputs.sidecar.exists()):
        return False
    try:
        recorded = json.loads(outputs.sidecar.read_text(encoding="utf-8")).get("text_sha256")
    except (OSError, ValueError):
        return False
    return recorded == content_hash
