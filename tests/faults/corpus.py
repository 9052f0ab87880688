"""The attack corpus: what a hostile or careless user drops, in one place, for the
fault-injection test and bench/attack_bench.py. Each file's bytes are returned so the
invariants can be checked afterwards: nothing dropped is lost or changed."""

from __future__ import annotations

import codecs
import hashlib
from collections import Counter
from pathlib import Path

from tests.conftest import status, write_wav
from tests.tts.test_texts import BILLION_LAUGHS

VOICE = "tom"
SPARSE_BYTES = 1200 << 20  # over import.max_bytes' default, yet nothing on disk


def drop_clips(inbox: Path) -> None:
    """Good, duplicated, hostile-named, empty, damaged and oversized clips."""
    inbox.mkdir(parents=True, exist_ok=True)
    good = write_wav(inbox / "good.wav", 1.0, seed=1)
    (inbox / "copy of good.wav").write_bytes(good.read_bytes())
    write_wav(inbox / "pipe|name.wav", 1.0, seed=2)
    write_wav(inbox / "new\nline.wav", 1.0, seed=3)
    write_wav(inbox / (("é" * 118) + ".wav"), 1.0, seed=4)
    (inbox / "empty.wav").write_bytes(b"")
    (inbox / "not audio.wav").write_text("this is not a recording")
    half = write_wav(inbox / "cut short.wav", 2.0, seed=5)
    half.write_bytes(half.read_bytes()[: half.stat().st_size // 2])
    with open(write_wav(inbox / "sparse.wav", 1.0, seed=6), "r+b") as handle:
        handle.truncate(SPARSE_BYTES)
    (inbox / "notes.docx").write_bytes(b"PK\x03\x04 not a clip")


def drop_texts(outbox: Path) -> None:
    """Texts that must each be refused with a short reason, or wait for weights."""
    outbox.mkdir(parents=True, exist_ok=True)
    texts = {
        "hello.txt": "Hello there.",
        "bomb.txt": f"---\n{BILLION_LAUGHS}---\nHello.",
        "book.txt": "A sentence to say. " * 55_000,  # over render.max_chars
        "emoji.txt": "🎉🎉 🙂",
        "inf.txt": "---\ntemperature: .inf\n---\nHello.",
        "seed.txt": "---\nseed: 99999999999999999999999\n---\nHello.",
        "same.txt": "Hello.",
        "same.TXT": "Hello again.",
        ("t" * 248) + ".txt": "Hello.",
    }
    for name, content in texts.items():
        (outbox / name).write_text(content, encoding="utf-8")
    (outbox / "notepad.txt").write_bytes(codecs.BOM_UTF16_LE + "Hi.".encode("utf-16-le"))
    (outbox / "binary.txt").write_bytes(b"\x00\x01\x02 binary")


def drop(root: Path, staging: Path) -> tuple[Counter[str], dict[Path, bytes]]:
    """The corpus, made in `staging` and moved into `root` at once (as a user's `mv` drops
    files): the sha256 of every clip dropped, and every text's bytes."""
    inbox, outbox = root / "inbox" / VOICE, root / "outbox" / VOICE
    drop_clips(staging / "inbox")
    drop_texts(staging / "outbox")
    clips = Counter(sha256(path) for path in (staging / "inbox").iterdir())
    texts = {outbox / path.name: path.read_bytes() for path in (staging / "outbox").iterdir()}
    for folder, target in ((staging / "inbox", inbox), (staging / "outbox", outbox)):
        target.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():
            path.rename(target / path.name)
    return clips, texts


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def kept_clips(root: Path) -> Counter[str]:
    """Every clip's bytes wherever voicedrop may keep them: still in the inbox, in
    originals/, or in rejected/ beside a reason."""
    inbox = root / "inbox" / VOICE
    places = [
        *(p for p in inbox.iterdir() if p.is_file()),
        *(root / "voices" / VOICE / "originals").glob("*"),
        *(p for p in (inbox / "rejected").glob("*") if not p.name.endswith(".reason.txt")),
    ]
    return Counter(sha256(path) for path in places)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".voicedrop-tmp-*")]


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (Linux: VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def settled(root: Path) -> bool:
    """Every clip taken from the inbox, and nothing left to run."""
    left = [p for p in (root / "inbox" / VOICE).iterdir() if p.is_file()]
    jobs = status(root)["jobs"]
    return not left and jobs["pending"] == jobs["running"] == 0
