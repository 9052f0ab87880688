"""daemon.book.cache: chunks kept by content, least recently used evicted, damage tolerated."""

from __future__ import annotations

import os
import time

import numpy as np

from daemon.book.cache import CachedChunk, ChunkCache, render_key
from daemon.quality.render_check import Attempt, ChunkVerdict
from daemon.tts.redact import Redaction


def chunk(seconds: float = 1.0, seed: int = 0) -> CachedChunk:
    audio = np.random.default_rng(seed).uniform(-0.5, 0.5, int(24000 * seconds))
    verdict = ChunkVerdict(0, "Hi.", (Attempt(0, "hi", 0.0, 0.9),), 0, True)
    return CachedChunk(audio.astype(np.float32), Redaction.NONE, verdict)


def test_a_chunk_comes_back_as_it_was_kept(tmp_path):
    cache = ChunkCache(tmp_path)
    key = cache.key(render_key({"model": "a"}, 0), "Hello there.")
    assert cache.get(key) is None
    kept = chunk()
    cache.put(key, kept)
    back = cache.get(key)
    assert np.array_equal(back.audio, kept.audio) and back.verdict == kept.verdict
    assert back.redaction is Redaction.NONE


def test_the_key_changes_with_the_text_and_with_what_shapes_the_audio():
    cache = ChunkCache(None)
    same = cache.key(render_key("models", "seed 0"), "Hello.")
    assert same == cache.key(render_key("models", "seed 0"), "Hello.")
    assert same != cache.key(render_key("models", "seed 1"), "Hello.")
    assert same != cache.key(render_key("models", "seed 0"), "Hello!")


def test_the_least_recently_used_go_first_and_the_last_render_is_kept(tmp_path):
    cache = ChunkCache(tmp_path)
    keys = [cache.key("r", f"sentence {i}") for i in range(4)]
    for index, key in enumerate(keys):
        cache.put(key, chunk(seed=index))
        old = time.time() - 100 + index
        for path in cache.files(key):
            os.utime(path, (old, old))
    cache.get(keys[0])  # used just now: the most recent
    one = cache.use().bytes // 4
    removed = cache.evict(2 * one, keep={keys[1]})
    assert removed == 2
    assert [cache.get(k) is not None for k in keys] == [True, True, False, False]


def test_a_damaged_chunk_is_rendered_again_not_a_crash(tmp_path):
    cache = ChunkCache(tmp_path)
    key = cache.key("r", "Hello.")
    cache.put(key, chunk())
    audio, meta = cache.files(key)
    audio.write_bytes(audio.read_bytes()[:100])
    assert cache.get(key) is None and not audio.exists() and not meta.exists()
