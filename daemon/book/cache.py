"""Rendered chunks kept by their content, so an edited paragraph re-renders only its own
chunks and a render killed half-way resumes at the next chunk.

    .voicedrop/chunks/<key[:2]>/<key>.npy     the chunk's audio (float32, the engine's rate)
    .voicedrop/chunks/<key[:2]>/<key>.json    what cutting [brackets] did, the check's verdict

The key is a sha256 of the chunk's spoken text (after the lexicon and normalisation) and of
everything else that shapes its audio: the model files' hashes, the generation settings and
seed, the voice's latents and the render check's limits (`RenderKey`). The budget
(`render.cache_max_gb`) is kept after each render by removing the least recently used
chunks; a chunk's modification time is its last use.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from daemon.core import atomic
from daemon.quality.render_check import ChunkVerdict
from daemon.tts.redact import Redaction

GIB = 1 << 30


@dataclass(frozen=True)
class CachedChunk:
    """A finished chunk: its audio, what cutting [brackets] did, and what the check heard."""

    audio: np.ndarray
    redaction: Redaction
    verdict: ChunkVerdict | None


@dataclass(frozen=True)
class CacheUse:
    """What `status` shows of the cache."""

    chunks: int
    bytes: int


def render_key(*parts: object) -> str:
    """One hash of what every chunk of a render shares (models, settings, latents, limits)."""
    payload = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class ChunkCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(self, render: str, spoken: str) -> str:
        return hashlib.sha256(f"{render}\0{spoken}".encode()).hexdigest()

    def files(self, key: str) -> tuple[Path, Path]:
        base = self.folder / key[:2] / key
        return base.with_suffix(".npy"), base.with_suffix(".json")

    def has(self, key: str) -> bool:
        return self.files(key)[0].exists()

    def get(self, key: str) -> CachedChunk | None:
        """The chunk if it was kept (and marks it used); a damaged entry is dropped."""
        audio_file, meta_file = self.files(key)
        if not audio_file.exists():
            return None
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
            audio = np.load(audio_file, mmap_mode="r", allow_pickle=False)  # read when used
            verdict = meta["verdict"]
            if audio.dtype != np.float32 or audio.ndim != 1:
                raise ValueError(f"not mono float32: {audio.dtype} {audio.shape}")
            chunk = CachedChunk(
                audio,
                Redaction(meta["redaction"]),
                None if verdict is None else ChunkVerdict.from_json(json.dumps(verdict)),
            )
        except (OSError, ValueError, TypeError, KeyError, EOFError):
            self.drop(key)
            return None
        for path in (audio_file, meta_file):
            os.utime(path)  # now: its last use, for eviction
        return chunk

    def put(self, key: str, chunk: CachedChunk) -> None:
        """The description first, the audio last: the audio's presence marks it complete."""
        audio_file, meta_file = self.files(key)
        verdict = None if chunk.verdict is None else asdict(chunk.verdict)
        meta = {"redaction": str(chunk.redaction), "verdict": verdict}
        atomic.write_text(meta_file, json.dumps(meta, ensure_ascii=False, allow_nan=False))
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(chunk.audio, dtype=np.float32), allow_pickle=False)
        atomic.write_bytes(audio_file, buffer.getvalue())

    def drop(self, key: str) -> None:
        for path in self.files(key):
            path.unlink(missing_ok=True)

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, bytes, key) of every complete chunk."""
        found = []
        for audio_file in self.folder.glob("??/*.npy"):
            try:
                stat = audio_file.stat()
                meta = audio_file.with_suffix(".json").stat().st_size
            except OSError:
                continue
            found.append((stat.st_mtime, stat.st_size + meta, audio_file.stem))
        return found

    def use(self) -> CacheUse:
        entries = self.entries()
        return CacheUse(len(entries), sum(size for _, size, _ in entries))

    def evict(self, budget_bytes: int, keep: set[str]) -> int:
        """Remove the least recently used chunks until the cache fits `budget_bytes`, never
        those in `keep` (the render that just finished, which may be assembled again);
        returns how many were removed."""
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, key in entries:
            if total <= budget_bytes:
                break
            if key in keep:
                continue
            self.drop(key)
            total -= size
            removed += 1
        return removed
