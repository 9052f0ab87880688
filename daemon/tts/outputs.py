"""What a rendered text leaves beside itself: <name>.wav, the <name>.json sidecar saying how
it was made, and <name>.error.txt while it cannot be rendered. A new output format is named
here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from daemon.core.files import file_sha256
from daemon.core.paths import NAME_MAX

ERROR_SUFFIX = ".error.txt"


@dataclass(frozen=True)
class Outputs:
    wav: Path
    sidecar: Path
    error: Path

    def files(self) -> tuple[Path, ...]:
        return (self.wav, self.sidecar, self.error)

    @classmethod
    def of(cls, text: Path) -> Outputs:
        return cls(text.with_suffix(".wav"), text.with_suffix(".json"), error_file(text))


def error_file(text: Path) -> Path:
    return text.with_suffix(ERROR_SUFFIX)


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


def name_problem(text: Path) -> str | None:
    """Why `text` cannot be rendered under its own name, or None: an output name longer than
    the file system takes (the render would fail at its very end, at every retry), or a text
    in the same folder whose outputs are the same files (`same.txt` and `same.TXT` both write
    `same.wav`)."""
    outputs = Outputs.of(text)
    longest = max(len(path.name.encode("utf-8", "surrogateescape")) for path in outputs.files())
    if longest > NAME_MAX:
        return f"its outputs' names would be {longest} bytes, over {NAME_MAX}: shorten its name"
    owner = outputs_owner(text)
    if owner != text:
        return (
            f"{owner.name} already makes {outputs.wav.name} (names differ only in case): "
            f"rename or remove {text.name}"
        )
    return None


def outputs_owner(text: Path) -> Path:
    """Of the texts whose names differ only in case, the one that renders: the one the
    current sidecar was made from (a second drop never overwrites a finished render), else
    the first by name (the same answer at every rescan, so they never take turns)."""
    key = text.stem.casefold()
    rivals = sorted(
        path
        for path in text.parent.iterdir()
        if path.suffix.lower() == ".txt" and path.stem.casefold() == key and path.is_file()
    )
    if len(rivals) < 2:
        return text
    rendered = [path for path in rivals if is_rendered(path, file_sha256(path))]
    return (rendered or rivals)[0]


def refusal_note(text: Path) -> Path | None:
    """Where to say why `text` is not rendered: `<name>.error.txt` (`<stem>.error.txt` may
    belong to the text it collides with); None when even that name would be too long."""
    note = text.with_name(f"{text.name}{ERROR_SUFFIX}")
    return note if len(note.name.encode("utf-8", "surrogateescape")) <= NAME_MAX else None
