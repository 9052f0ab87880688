"""Render stage: outbox/<voice>/<name>.txt (.md, .epub) becomes its audio (<name>.wav, or
an audiobook <name>.m4b with chapter marks; `render.format`), <name>.srt and <name>.vtt
subtitles and a <name>.json sidecar.

A text is read as a book (daemon/book: chapters of paragraphs), spoken sentence by sentence
after the lexicon and the number rules, each chunk checked by ear (quality/render_check.py)
and kept in the chunk cache by its content: a render killed half-way resumes at the next
chunk, and an edited paragraph re-renders only its own. The chunks are then assembled with
pauses, normalised in loudness and encoded. A text is rendered when its audio is missing or
its sidecar names another text hash or lexicon.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from loguru import logger

from daemon import __version__
from daemon.book.assembly import assemble
from daemon.book.cache import GIB, CachedChunk, ChunkCache, render_key
from daemon.book.chunks import Chunk, plan_chunks
from daemon.book.document import Document, read_document
from daemon.book.encode import EncodeError, Format, Tags, encode
from daemon.book.lexicon import Lexicon, LexiconError, lexicon_digest, prepare_for_speech
from daemon.book.subtitles import write_srt, write_vtt
from daemon.book.timeline import Pauses, Spoken, Timeline
from daemon.core import atomic
from daemon.core.config import (
    MAX_YAML_BYTES,
    ConfigError,
    Settings,
    TtsSettings,
    load_settings,
    load_voice_settings,
    shorten,
    text_settings,
)
from daemon.core.files import cached_sha256, file_sha256
from daemon.core.jobs import Job, JobKind, Outcome, RenderData, RenderProgress
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Device, Rejected, Stage, StageContext, Yielded
from daemon.dataset.lists import known_language
from daemon.dataset.whisper import shared_whisper
from daemon.quality.render_check import (
    Attempt,
    ChunkVerdict,
    RenderCheck,
    check_report,
    flag_text,
    keep_best,
    listeners,
    next_seed,
    spoken_text,
)
from daemon.quality.speaker import shared_encoder
from daemon.tts.latents import NoClips, cached_latents, voice_clips
from daemon.tts.outputs import Outputs
from daemon.tts.redact import Redaction, check_brackets, redact
from daemon.tts.spec import BadCheckpoint, WeightsMissing
from daemon.tts.texts import BadText
from daemon.weights.store import tortoise_models
from daemon.weights.voice_models import adopt_dropped

MAX_EPUB_BYTES = 512 << 20  # an EPUB's text with its images and markup


class Renderer:
    """Keeps one engine loaded between jobs, for the daemon and for `voicedrop render`."""

    def __init__(self, root: Root, settings: Settings | None = None) -> None:
        self.root = root
        self.settings = settings if settings is not None else load_settings(root.config_file)
        self.whisper = shared_whisper()  # for [bracketed] prompts and the render check
        self.encoder = shared_encoder(self.settings.tts.device)  # for the render check
        self.cache = ChunkCache(root.chunk_cache)
        self.engine = None
        self.engine_key: tuple | None = None
        self.last_used = time.monotonic()

    def models_dir(self, tts: TtsSettings, decoder: str) -> Path:
        """Where the TorToiSe weights for `decoder` are found (see daemon.weights.store)."""
        return tortoise_models(self.root, self.settings, tts.models_dir, decoder).folder

    def engine_for(self, tts: TtsSettings, decoder: str):
        from daemon.tts.engine import Engine

        key = (self.models_dir(tts, decoder), tts.device, tts.half, tts.sampler)
        if self.engine is None or key != self.engine_key:
            self.release()
            self.engine = Engine(key[0], device=tts.device, half=tts.half, sampler=tts.sampler)
            self.engine_key = key
        self.last_used = time.monotonic()
        return self.engine

    def release(self) -> None:
        if self.engine is not None:
            self.engine.release()
        self.whisper.release()
        self.encoder.release()
        self.engine = None
        self.engine_key = None

    def release_if_idle(self, idle_unload: float) -> None:
        if self.engine is not None and time.monotonic() - self.last_used > idle_unload:
            logger.info("releasing the TTS models after {:.0f} s idle", idle_unload)
            self.release()

    def check_ready(self, voice: VoicePaths, tts: TtsSettings, decoder: str) -> None:
        """Raise Blocked when rendering needs something only the user can provide."""
        from daemon.tts.spec import missing_weights

        models_dir = self.models_dir(tts, decoder)
        missing = missing_weights(models_dir, decoder)
        if missing:
            raise Blocked(
                f"missing {', '.join(missing)} in {models_dir}: run `voicedrop models fetch` "
                "(with tts.fetch: auto the daemon fetches them itself when online), or set "
                "tts.models_dir to a folder holding TorToiSe's released checkpoints; texts "
                "render once they are there"
            )
        if not voice_clips(voice):
            raise Blocked(
                f"voice {voice.name} has no clips yet: drop a few clips of the voice into "
                f"inbox/{voice.name}/ and this text renders once they are imported"
            )

    def open_session(self, voice: VoicePaths, manuscript: Manuscript) -> Session:
        """The engine loaded with the voice's model, its latents and listeners: what every
        chunk of one text renders with."""
        settings, tts = manuscript.settings, manuscript.tts
        engine = self.engine_for(tts, settings.decoder)
        adopt_dropped(voice.models, engine.spec)
        fine_tune = voice.models / "autoregressive.pth"
        autoregressive = fine_tune if fine_tune.exists() else None
        try:
            engine.load(autoregressive=autoregressive, decoder=settings.decoder)
        except (BadCheckpoint, WeightsMissing) as exc:
            raise Blocked(f"{exc}; texts render once the model files are fixed") from exc
        files = engine.model_files(autoregressive=autoregressive, decoder=settings.decoder)
        hashes = {name: cached_sha256(path) for name, path in files.items()}
        try:
            latents, latents_key, latent_seconds = cached_latents(
                engine, voice, hashes, autoregressive, tts.latents, tts.seed
            )
        except NoClips as exc:
            raise Blocked(str(exc)) from exc
        generation = settings.generation()
        check = self.render_check(voice)
        shared = render_key(
            hashes,
            dataclasses.asdict(generation),
            latents_key,
            None if check is None else dataclasses.asdict(check.limits),
            engine_numerics(engine),
        )
        return Session(
            engine,
            autoregressive,
            files,
            hashes,
            latents,
            latents_key,
            latent_seconds,
            generation,
            check,
            shared,
        )

    def chunk(self, session: Session, index: int, chunk: Chunk) -> CachedChunk:
        """One chunk from the cache, or rendered (and checked) and put there."""
        key = self.cache.key(session.cache_key, chunk.spoken)
        kept = self.cache.get(key)
        if kept is not None:
            return kept
        fresh = self.render_checked(
            session.engine,
            index,
            chunk.spoken,
            session.latents,
            session.generation,
            session.autoregressive,
            session.check,
        )
        self.cache.put(key, fresh)
        self.last_used = time.monotonic()
        return fresh

    def render(
        self,
        voice: VoicePaths,
        manuscript: Manuscript,
        outputs: Outputs,
        text_hash: str,
        before_chunk: Callable[[int, int, float | None], None] | None = None,
    ) -> dict[str, Any]:
        """Render a manuscript into `outputs` (audio, subtitles, sidecar), each chunk taken
        from the chunk cache when it was rendered before (resuming a killed render, or
        re-rendering an edited paragraph only)."""
        started = time.monotonic()
        settings, tts = manuscript.settings, manuscript.tts
        session = self.open_session(voice, manuscript)
        engine, generation, check = session.engine, session.generation, session.check
        autoregressive, files, hashes = session.autoregressive, session.files, session.hashes
        chunks = self.plan(voice, manuscript, engine)
        keys = [self.cache.key(session.cache_key, chunk.spoken) for chunk in chunks]
        rendered = self.render_chunks(session, chunks, keys, outputs.audio.name, before_chunk)
        audio, timeline = self.assemble(manuscript, chunks, rendered, engine.SAMPLE_RATE)
        rate = settings.output_sample_rate
        if rate != engine.SAMPLE_RATE:
            audio = soxr.resample(audio, engine.SAMPLE_RATE, rate, quality="HQ")
        try:
            write_outputs(outputs, manuscript, voice, audio.astype(np.float32), rate, timeline)
        except EncodeError as exc:  # the settings or the machine, never the text: it waits
            raise Blocked(
                f"could not write {outputs.audio.name} ({exc}); check render.format and "
                "render.bitrate, and the free space; its chunks are kept"
            ) from exc
        verdicts = [chunk.verdict for chunk in rendered]
        total = time.monotonic() - started
        sidecar = {
            "text_sha256": text_hash,
            "output": outputs.audio.name,
            "format": str(manuscript.format),
            "voice": voice.name,
            "title": manuscript.document.title,
            "lexicon_sha256": manuscript.lexicon_sha256,
            "models": {
                name: {"path": str(path), "sha256": hashes[name]} for name, path in files.items()
            },
            "fine_tuned": autoregressive is not None,
            "seed": generation.seed,
            "settings": {
                **dataclasses.asdict(generation),
                "preset": settings.preset,
                "output_sample_rate": rate,
                "latents": tts.latents,
                "generated_mel_tokens": engine.generation_length(generation),
            },
            "chunks": chunk_records(chunks, rendered, timeline),
            "chapters": [dataclasses.asdict(mark) for mark in timeline.chapters],
            "redaction": [str(chunk.redaction) for chunk in rendered],
            "latents": session.latents_key,
            "timings": {
                "latents_seconds": round(session.latent_seconds, 3),
                "check_seconds": None if check is None else round(check.seconds, 3),
                "total_seconds": round(total, 3),
            },
            "audio_seconds": round(timeline.duration, 3),
            "check": None if check is None else check_report(verdicts, check.limits),
            "real_time_factor": round(total / max(timeline.duration, 1e-9), 4),
            "device": str(getattr(engine, "device", "")),
            "voicedrop": __version__,
        }
        sidecar_text = json.dumps(sidecar, indent=1, allow_nan=False)  # standard JSON only
        write_flag(outputs, verdicts, check)
        outputs.error.unlink(missing_ok=True)  # what held it back is over
        atomic.write_text(outputs.sidecar, sidecar_text)  # last: it marks the text rendered
        budget = int(self.settings.render.cache_max_gb * GIB)
        self.cache.evict(budget, keep=set(keys))
        self.last_used = time.monotonic()
        return sidecar

    def plan(self, voice: VoicePaths, manuscript: Manuscript, engine) -> list[Chunk]:
        """The manuscript's chunks, each spoken as the lexicon and the number rules say."""
        document = manuscript.document
        language = known_language(voice, self.settings) or document.language or "en"

        def speak(text: str) -> str:
            return prepare_for_speech(text, manuscript.lexicon, language)

        try:
            return plan_chunks(document, speak, engine.text_token_count, engine.max_text_tokens)
        except BadText as exc:
            raise Rejected(str(exc)) from exc

    def assemble(
        self, manuscript: Manuscript, chunks: list[Chunk], rendered: list[CachedChunk], rate: int
    ) -> tuple[np.ndarray, Timeline]:
        """The chunks joined with the pauses between sentences, paragraphs and chapters."""
        rules = self.settings.render
        spoken = [
            Spoken(c.chapter, c.paragraph, c.sentence, c.written, r.audio)
            for c, r in zip(chunks, rendered, strict=True)
        ]
        titles = [chapter.title for chapter in manuscript.document.chapters]
        pauses = Pauses(
            rules.pause_sentence, rules.pause_paragraph, rules.pause_chapter, rules.crossfade
        )
        return assemble(spoken, rate, titles, pauses, rules.loudness_lufs)

    def redact(self, audio: np.ndarray, rate: int, chunk: str) -> tuple[np.ndarray, Redaction]:
        """Cut the chunk's [bracketed] prompt, finding it with the Whisper model."""
        if "[" not in chunk:
            return audio, Redaction.NONE
        from daemon.dataset.whisper import WhisperOptions
        from daemon.weights.store import ModelMissing

        try:
            options = WhisperOptions.from_settings(self.settings, self.root)
        except ModelMissing as exc:
            raise Blocked(f"cutting [bracketed] prompts needs the Whisper model: {exc}") from exc
        return redact(audio, rate, chunk, self.whisper, options, self.settings.whisper.language)

    def render_checked(
        self,
        engine,
        index: int,
        chunk: str,
        latents,
        generation,
        autoregressive: Path | None,
        check: RenderCheck | None,
    ) -> CachedChunk:
        """One chunk, listened to when the check is on: rendered again with the next seed
        while it fails, up to the retries, and the best attempt kept."""
        tries: list[tuple[np.ndarray, Redaction]] = []
        attempts: list[Attempt] = []
        for attempt in range(1 + (check.limits.retries if check is not None else 0)):
            seeded = replace(generation, seed=next_seed(generation.seed, attempt))
            audio = engine.render(chunk, latents, seeded, autoregressive=autoregressive)
            audio, redaction = self.redact(audio, engine.SAMPLE_RATE, chunk)
            if check is None:
                return CachedChunk(audio, redaction, None)
            tries.append((audio, redaction))
            heard = check.judge(
                audio, engine.SAMPLE_RATE, spoken_text(chunk, redaction), seeded.seed
            )
            attempts.append(heard)
            if heard.passes(check.limits):
                break
            logger.info(
                "chunk {} heard as {!r} (character error rate {:.2f}, speaker similarity {}){}",
                index + 1,
                shorten(heard.heard, 120),
                heard.cer,
                "-" if heard.similarity is None else f"{heard.similarity:.2f}",
                "; rendering it again with the next seed"
                if attempt < check.limits.retries
                else "; keeping the best attempt",
            )
        best = keep_best(attempts, check.limits)
        verdict = ChunkVerdict(
            index, chunk, tuple(attempts), best, attempts[best].passes(check.limits)
        )
        return CachedChunk(*tries[best], verdict)

    def render_check(self, voice: VoicePaths) -> RenderCheck | None:
        """The listeners for one text in `voice` (None with `render.check: off`): the voice's
        reference embedding and Whisper with the dataset's options and the voice's language."""
        if not self.settings.render.check:
            return None
        from daemon.weights.store import ModelMissing

        try:
            return listeners(self.root, self.settings, voice, self.whisper, self.encoder)
        except ModelMissing as exc:
            raise Blocked(
                f"the render check needs the Whisper model: {exc} (or set render.check: off)"
            ) from exc

    def render_chunks(
        self,
        session: Session,
        chunks: list[Chunk],
        keys: list[str],
        name: str,
        before_chunk: Callable[[int, int, float | None], None] | None = None,
    ) -> list[CachedChunk]:
        """Each chunk from the cache, or rendered (and checked) and put there. Before every
        chunk but the first this call renders, `before_chunk(done, total, eta)` records
        progress and may raise to stop there (Yielded): what is rendered stays cached."""
        parts = []
        started = time.monotonic()
        rendered_now = 0
        to_render = sum(not self.cache.has(key) for key in keys)  # once, not per chunk
        eta: float | None = None
        for index, (chunk, key) in enumerate(zip(chunks, keys, strict=True)):
            kept = self.cache.get(key)
            if kept is not None:
                parts.append(kept)
                continue
            if before_chunk is not None and rendered_now:
                before_chunk(index, len(chunks), eta)
            fresh = self.chunk(session, index, chunk)
            parts.append(self.cache.get(key) or fresh)  # on disk, not held: a book is long
            rendered_now += 1
            left = max(to_render - rendered_now, 0)
            eta = (time.monotonic() - started) / rendered_now * left
            logger.info(
                "rendering {}: chunk {}/{} ({:.0%}, ETA {:.0f} s)",
                name,
                index + 1,
                len(chunks),
                (index + 1) / len(chunks),
                eta,
            )
        if len(chunks) > rendered_now:
            logger.info(
                "rendering {}: {} of {} chunks were rendered before (chunk cache)",
                name,
                len(chunks) - rendered_now,
                len(chunks),
            )
        return parts


@functools.lru_cache(maxsize=2)
def shared_renderer(root: Root, settings: Settings) -> Renderer:
    """One engine per daemon: file renders and speech requests take turns on it rather than
    each loading the models."""
    return Renderer(root, settings)


def engine_numerics(engine: Any) -> dict[str, object]:
    """How the engine computes, for the chunk cache: the same settings may give other audio
    on another device, with the other sampler (their kernels differ) or in half precision
    (which acts on CUDA only), and a user switching one expects to hear its own audio."""
    cuda = engine.device.type == "cuda"
    return {"device": engine.device.type, "sampler": engine.sampler, "half": engine.half and cuda}


@dataclass(frozen=True)
class Session:
    """What every chunk of one text renders with, and what its sidecar records of it."""

    engine: Any  # daemon.tts.engine.Engine (imported with torch, only when rendering)
    autoregressive: Path | None  # the voice's fine-tuned model, if it has one
    files: dict[str, Path]
    hashes: dict[str, str]
    latents: Any
    latents_key: str
    latent_seconds: float
    generation: Any  # GenerationSettings
    check: RenderCheck | None
    cache_key: str  # what all its chunks' cache keys share


@dataclass(frozen=True)
class Manuscript:
    """A text as the render stage reads it: its document, the settings it renders with
    (the text's front matter on the voice's) and where its audio goes."""

    document: Document
    settings: TtsSettings
    tts: TtsSettings
    format: Format
    bitrate: str | None
    lexicon: Lexicon
    lexicon_sha256: str  # the files' hash when they were read (intake compares it)


def output_format(setting: str, text: Path, document: Document) -> Format:
    """`render.format`; auto: an audiobook (m4b, with chapter marks) for an EPUB or a text
    of several chapters, a wav for a plain text."""
    if setting != "auto":
        return Format(setting)
    if text.suffix.lower() == ".epub" or len(document.chapters) > 1:
        return Format.M4B
    return Format.WAV


def write_outputs(
    outputs: Outputs,
    manuscript: Manuscript,
    voice: VoicePaths,
    audio: np.ndarray,
    rate: int,
    timeline: Timeline,
) -> None:
    """The audio (tagged, with chapter marks where the format has them) and the subtitles."""
    document = manuscript.document
    tags = Tags(
        title=document.title,
        artist=voice.name,
        album=document.title,
        track=None,
        cover=document.cover,
        language=document.language,
    )
    bitrate = manuscript.bitrate
    encode(audio, rate, outputs.audio, manuscript.format, bitrate, tags, timeline.chapters)
    write_srt(timeline.cues, outputs.srt)
    write_vtt(timeline.cues, outputs.vtt)


def chunk_records(
    chunks: list[Chunk], rendered: list[CachedChunk], timeline: Timeline
) -> list[dict[str, Any]]:
    """The sidecar's chunks: where each is in the document and in the output, what it said."""
    return [
        {
            "chapter": chunk.chapter,
            "paragraph": chunk.paragraph,
            "sentence": chunk.sentence,
            "text": chunk.spoken,
            "start": round(span.start, 3),
            "end": round(span.end, 3),
            "redaction": str(done.redaction),
        }
        for chunk, done, span in zip(chunks, rendered, timeline.chunks, strict=True)
    ]


def write_flag(
    outputs: Outputs, verdicts: list[ChunkVerdict | None], check: RenderCheck | None
) -> None:
    """`<name>.check.txt` beside a render whose chunks still failed the check; a render that
    passed removes the flag of an earlier one."""
    failed = check is not None and any(v is not None and not v.passed for v in verdicts)
    if failed:
        text = flag_text(outputs.audio.name, verdicts, check.limits)
        atomic.write_text(outputs.check, text)
    else:
        outputs.check.unlink(missing_ok=True)


class RenderStage(Stage):
    """The render job: one per version of a text. It goes before fine-tuning, which yields
    the device to it."""

    kind = JobKind.RENDER
    priority = 1  # after imports, which are quick and must never wait behind a long text
    device = Device.SHARED
    # a long text takes turns, chunk by chunk; a listener waiting for speech goes first
    preempted_by = (JobKind.IMPORT, JobKind.RENDER, JobKind.SPEECH)

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.renderer = shared_renderer(self.root, self.settings)

    def run(self, job: Job, ledger: Ledger) -> None:
        text = job.input_path
        if not text.exists() or file_sha256(text) != job.content_hash:
            ledger.finish(job.id, RenderData(outcome=Outcome.SUPERSEDED))
            return
        voice = self.root.voice(job.voice)
        error = Outputs.of(text).error
        try:
            manuscript = self.prepare(voice, text)
            outputs = Outputs.of(text, manuscript.format.suffix)
            self.renderer.check_ready(voice, manuscript.tts, manuscript.settings.decoder)
            sidecar = self.renderer.render(
                voice, manuscript, outputs, job.content_hash, BetweenChunks(self, ledger, job)
            )
        except Blocked as exc:
            atomic.write_text(error, f"{exc}\n")
            raise
        seconds, check = sidecar["timings"]["total_seconds"], sidecar["check"]
        ledger.finish(
            job.id,
            RenderData(
                Outcome.RENDERED,
                wav=outputs.audio,
                seconds=seconds,
                audio_seconds=sidecar["audio_seconds"],
                check_failed_chunks=None if check is None else len(check["failed_chunks"]),
            ),
        )
        logger.info(
            "rendered {} ({}): {:.1f} s of speech in {:.1f} s",
            text.name,
            voice.name,
            sidecar["audio_seconds"],
            seconds,
        )

    def prepare(self, voice: VoicePaths, text: Path) -> Manuscript:
        """The text read as a document with its settings and lexicon; what is wrong with the
        text itself is Rejected (its .error.txt says why), what the user must fix elsewhere
        (voice.yaml, a lexicon) is Blocked."""
        try:
            voice_settings = load_voice_settings(self.settings, voice.config_file)
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc
        tts, max_chars = voice_settings.tts, voice_settings.render.max_chars
        size, limit = text.stat().st_size, max_file_bytes(text, max_chars)
        if size > limit:  # not even read
            raise Rejected(too_long(text, size, max_chars, "bytes"))
        try:
            front_matter, document = read_document(text, max_chars)
            settings = text_settings(tts, front_matter, text)
            for chapter in document.chapters:
                for paragraph in chapter.paragraphs:
                    check_brackets(paragraph)
        except (BadText, ConfigError) as exc:
            raise Rejected(str(exc)) from exc
        check_speakable(text, document, max_chars)
        digest = lexicon_digest(voice)
        try:
            lexicon = Lexicon.load(voice)
        except LexiconError as exc:
            raise Blocked(f"{exc}; texts of voice {voice.name} render once it is fixed") from exc
        fmt = output_format(self.settings.render.format, text, document)
        bitrate = self.settings.render.bitrate
        return Manuscript(document, settings, tts, fmt, bitrate, lexicon, digest)

    def give_up(self, job: Job, reason: str) -> None:
        atomic.write_text(Outputs.of(job.input_path).error, f"{reason}\n")

    def on_idle(self) -> None:
        self.renderer.release_if_idle(self.settings.tts.idle_unload)

    def release(self) -> None:
        self.renderer.release()

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """The chunk cache kept to its budget (the settings may have shrunk it); the folder
        earlier versions kept unfinished renders in is gone with them."""
        shutil.rmtree(root.state / "renders", ignore_errors=True)
        budget = load_settings(root.config_file).render.cache_max_gb
        ChunkCache(root.chunk_cache).evict(int(budget * GIB), keep=set())
        return 0


def max_file_bytes(text: Path, max_chars: int) -> int:
    """The size past which a text is refused unread: a plain text of `max_chars` characters
    (up to 4 bytes each, and front matter); an EPUB zips its text with images and markup."""
    if text.suffix.lower() == ".epub":
        return MAX_EPUB_BYTES
    return 4 * max_chars + MAX_YAML_BYTES


def check_speakable(text: Path, document: Document, max_chars: int) -> None:
    characters = document.characters()
    if characters > max_chars:
        raise Rejected(too_long(text, characters, max_chars, "characters"))
    paragraphs = [p for chapter in document.chapters for p in chapter.paragraphs]
    if not any(p.strip() for p in paragraphs):
        raise Rejected(f"{text.name} has no text to speak; write something below the front matter")
    if not any(character.isalnum() for p in paragraphs for character in p):
        raise Rejected(
            f"{text.name} has nothing a voice can speak (only punctuation, symbols or "
            "emoji); write words"
        )


def too_long(text: Path, size: int, max_chars: int, unit: str) -> str:
    return (
        f"{text.name} has {size} {unit}, more than render.max_chars ({max_chars} characters): "
        "split it into several texts, or raise render.max_chars in config.yaml"
    )


class BetweenChunks:
    """Between chunks: record progress for `status`, and step aside (the chunks are kept)
    when the daemon stops, a clip is to be imported or another text waits: a book never
    holds up a short text for hours, and texts queued together take turns."""

    def __init__(self, stage: RenderStage, ledger: Ledger, job: Job) -> None:
        self.stage, self.ledger, self.job = stage, ledger, job

    def __call__(self, done: int, total: int, eta: float | None) -> None:
        progress = RenderProgress(done, total, None if eta is None else round(eta, 1))
        data = replace(self.job.data, progress=progress)
        self.job = self.ledger.set_data(self.job.id, data)
        if self.stage.stopping.is_set():
            raise Yielded(f"the daemon is stopping; {done} of {total} chunks kept")
        if self.ledger.has_pending(self.stage.preempted_by):
            raise Yielded(f"other work goes first; {done} of {total} chunks kept")
