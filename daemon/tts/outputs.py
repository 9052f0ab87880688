"""What a rendered text leaves beside itself: the audio (<name>.wav, .m4b… by
`render.format`), <name>.srt and <name>.vtt subtitles, the <name>.json sidecar saying how it
was made, <name>.error.txt while it cannot be rendered and <name>.check.txt while chunks fail
the render check. A new output file is named here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from daemon.book.document import BOOK_SUFFIXES
from daemon.core.files import file_sha256
from daemon.core.paths import NAME_MAX

ERROR_SUFFIX = ".error.txt"
CHECK_SUFFIX = ".check.txt"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".opus", ".m4a", ".m4b")  # book/encode.py's Format


@dataclass(frozen=True)
class Outputs:
    audio: Path
    sidecar: Path
    error: Path
    check: Path  # written while chunks fail the render check after their retries
    srt: Path
    vtt: Path

    def files(self) -> tuple[Path, ...]:
        return (self.audio, self.sidecar, self.error, self.check, self.srt, self.vtt)

    @classmethod
    def of(cls, text: Path, suffix: str = ".wav") -> Outputs:
        return cls(
            text.with_suffix(suffix),
            text.with_suffix(".json"),
            error_file(text),
            text.with_suffix(CHECK_SUFFIX),
            text.with_suffix(".srt"),
            text.with_suffix(".vtt"),
        )


def error_file(text: Path) -> Path:
    return text.with_suffix(ERROR_SUFFIX)


def is_text(path: Path) -> bool:
    """A file in outbox/<voice>/ the daemon renders (not one of the notes it writes)."""
    name = path.name.lower()
    return path.suffix.lower() in BOOK_SUFFIXES and not name.endswith((ERROR_SUFFIX, CHECK_SUFFIX))


def is_rendered(text: Path, content_hash: str, lexicon: str | None = None) -> bool:
    """Rendered when the sidecar names this very text (and, given `lexicon`, the lexicon in
    force) and the audio it names exists: so editing a text or its lexicon renders it again
    and deleting its audio brings it back."""
    sidecar = Outputs.of(text).sidecar
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("text_sha256") != content_hash:
        return False
    if lexicon is not None and recorded.get("lexicon_sha256", lexicon) != lexicon:
        return False
    audio = recorded.get("output", text.with_suffix(".wav").name)
    return isinstance(audio, str) and (text.parent / Path(audio).name).exists()


def name_problem(text: Path) -> str | None:
    """Why `text` cannot be rendered under its own name, or None: an output name longer than
    the file system takes (the render would fail at its very end, at every retry), or a text
    in the same folder whose outputs are the same files (`same.txt` and `same.TXT` both write
    `same.wav`)."""
    outputs = Outputs.of(text)
    names = [path.name for path in outputs.files()]
    names += [text.with_suffix(suffix).name for suffix in AUDIO_SUFFIXES]
    longest = max(len(name.encode("utf-8", "surrogateescape")) for name in names)
    if longest > NAME_MAX:
        return f"its outputs' names would be {longest} bytes, over {NAME_MAX}: shorten its name"
    owner = outputs_owner(text)
    if owner != text:
        return (
            f"{owner.name} already makes {outputs.sidecar.name} and its audio (the names "
            f"differ only in case or extension): rename or remove {text.name}"
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
        if is_text(path) and path.stem.casefold() == key and path.is_file()
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
