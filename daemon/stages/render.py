"""Render stage: outbox/<voice>/<name>.txt becomes <name>.wav plus a <name>.json sidecar.

Long texts are rendered chunk by chunk; each finished chunk is kept under
.voicedrop/renders/ so a render killed half-way resumes at the next chunk. A text is
rendered when its .wav is missing or its sidecar names another text hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
from loguru import logger

from daemon import __version__
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
from daemon.core.jobs import Job, JobKind, JobState, Outcome, RenderData, RenderProgress
from daemon.core.ledger import Ledger
from daemon.core.paths import Root, VoicePaths
from daemon.core.worker import Blocked, Device, Rejected, Stage, StageContext, Yielded
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
    read_verdict,
    spoken_text,
)
from daemon.quality.speaker import shared_encoder
from daemon.tts.latents import NoClips, cached_latents, voice_clips
from daemon.tts.outputs import Outputs
from daemon.tts.redact import Redaction, check_brackets, redact
from daemon.tts.spec import BadCheckpoint, WeightsMissing
from daemon.tts.texts import BadText, chunk_text, read_text, split_front_matter
from daemon.weights.store import tortoise_models
from daemon.weights.voice_models import adopt_dropped

CHUNK_PAUSE_SECONDS = 0.25


class Renderer:
    """Keeps one engine loaded between jobs, for the daemon and for `voicedrop render`."""

    def __init__(self, root: Root, settings: Settings | None = None) -> None:
        self.root = root
        self.settings = settings if settings is not None else load_settings(root.config_file)
        self.whisper = shared_whisper()  # for [bracketed] prompts and the render check
        self.encoder = shared_encoder(self.settings.tts.device)  # for the render check
        self.engine = None
        self.engine_key: tuple | None = None
        self.last_used = time.monotonic()

    def models_dir(self, tts: TtsSettings, decoder: str) -> Path:
        """Where the TorToiSe weights for `decoder` are found (see daemon.weights.store)."""
        return tortoise_models(self.root, self.settings, tts.models_dir, decoder).folder

    def engine_for(self, tts: TtsSettings, decoder: str):
        from daemon.tts.engine import Engine

        key = (self.models_dir(tts, decoder), tts.device, tts.half)
        if self.engine is None or key != self.engine_key:
            self.release()
            self.engine = Engine(key[0], device=tts.device, half=tts.half)
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

    def render(
        self,
        voice: VoicePaths,
        body: str,
        settings: TtsSettings,
        tts: TtsSettings,
        output: Path,
        text_hash: str,
        before_chunk: Callable[[Path, int, int, float | None], None] | None = None,
    ) -> dict[str, Any]:
        """Render `body` into `output` (+ sidecar), resuming from finished chunks; `settings`
        are the text's (front matter applied), `tts` the voice's."""
        started = time.monotonic()
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
        chunks = chunk_text(body, engine.text_token_count, engine.max_text_tokens)
        work = self.work_dir(text_hash, generation, hashes, latents_key)
        check = self.render_check(voice)
        rendered = self.render_chunks(
            engine,
            chunks,
            latents,
            generation,
            autoregressive,
            work,
            output.name,
            before_chunk,
            check,
        )
        audio_parts = [chunk.audio for chunk in rendered]
        verdicts = [chunk.verdict for chunk in rendered]
        audio = join_chunks(audio_parts, engine.SAMPLE_RATE, settings.output_sample_rate)
        write_wav(output, audio, settings.output_sample_rate)
        total = time.monotonic() - started
        audio_seconds = audio.size / settings.output_sample_rate
        sidecar = {
            "text_sha256": text_hash,
            "voice": voice.name,
            "models": {
                name: {"path": str(path), "sha256": hashes[name]} for name, path in files.items()
            },
            "fine_tuned": autoregressive is not None,
            "seed": generation.seed,
            "settings": {
                **dataclasses.asdict(generation),
                "preset": settings.preset,
                "output_sample_rate": settings.output_sample_rate,
                "latents": tts.latents,
                "generated_mel_tokens": engine.generation_length(generation),
            },
            "chunks": len(chunks),
            "redaction": [str(chunk.redaction) for chunk in rendered],
            "latents": latents_key,
            "timings": {
                "latents_seconds": round(latent_seconds, 3),
                "check_seconds": None if check is None else round(check.seconds, 3),
                "total_seconds": round(total, 3),
            },
            "audio_seconds": round(audio_seconds, 3),
            "check": None if check is None else check_report(verdicts, check.limits),
            "real_time_factor": round(total / max(audio_seconds, 1e-9), 4),
            "device": str(getattr(engine, "device", "")),
            "voicedrop": __version__,
        }
        sidecar_text = json.dumps(sidecar, indent=1, allow_nan=False)  # standard JSON only
        write_flag(output, verdicts, check)
        Outputs.of(output).error.unlink(missing_ok=True)  # what held it back is over
        atomic.write_text(output.with_suffix(".json"), sidecar_text)
        shutil.rmtree(work, ignore_errors=True)
        self.last_used = time.monotonic()
        return sidecar

    def work_dir(
        self, text_hash: str, generation, hashes: dict[str, str], latents_key: str
    ) -> Path:
        """Finished chunks live here; any change of text, settings or model starts afresh."""
        payload = json.dumps(
            [text_hash, dataclasses.asdict(generation), hashes, latents_key], sort_keys=True
        )
        return self.root.state / "renders" / hashlib.sha256(payload.encode()).hexdigest()[:24]

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
    ) -> RenderedChunk:
        """One chunk, listened to when the check is on: rendered again with the next seed
        while it fails, up to the retries, and the best attempt kept."""
        tries: list[tuple[np.ndarray, Redaction]] = []
        attempts: list[Attempt] = []
        for attempt in range(1 + (check.limits.retries if check is not None else 0)):
            seeded = replace(generation, seed=next_seed(generation.seed, attempt))
            audio = engine.render(chunk, latents, seeded, autoregressive=autoregressive)
            audio, redaction = self.redact(audio, engine.SAMPLE_RATE, chunk)
            if check is None:
                return RenderedChunk(audio, redaction, None)
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
        return RenderedChunk(*tries[best], verdict)

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
        engine,
        chunks: list[str],
        latents,
        generation,
        autoregressive,
        work: Path,
        name: str,
        before_chunk: Callable[[Path, int, int, float | None], None] | None = None,
        check: RenderCheck | None = None,
    ) -> list[RenderedChunk]:
        """Each chunk's audio, [bracketed] prompts cut, what the cut did and what the check
        heard. Each finished chunk is kept in `work`; `before_chunk(work, done, total, eta)`
        runs before every chunk but the first this call renders, and may raise to stop there
        (Yielded)."""
        parts = []
        started = time.monotonic()
        reused = 0
        eta: float | None = None
        for index, chunk in enumerate(chunks):
            kept = RenderedChunk.load(work, index)
            if kept is not None:
                parts.append(kept)
                reused += 1
                continue
            if before_chunk is not None and index > reused:
                before_chunk(work, index, len(chunks), eta)
            rendered = self.render_checked(
                engine, index, chunk, latents, generation, autoregressive, check
            )
            rendered.save(work, index)
            parts.append(rendered)
            done = index + 1 - reused
            eta = (time.monotonic() - started) / done * (len(chunks) - index - 1)
            logger.info(
                "rendering {}: chunk {}/{} ({:.0%}, ETA {:.0f} s)",
                name,
                index + 1,
                len(chunks),
                (index + 1) / len(chunks),
                eta,
            )
        if reused:
            logger.info(
                "rendering {}: reused {} chunks finished before an interruption", name, reused
            )
        return parts


@dataclass(frozen=True)
class RenderedChunk:
    """A finished chunk: its audio, what cutting [brackets] did, and what the check heard."""

    audio: np.ndarray
    redaction: Redaction
    verdict: ChunkVerdict | None

    @staticmethod
    def files(work: Path, index: int) -> tuple[Path, Path, Path]:
        stem = f"{index:05d}"
        return work / f"{stem}.npy", work / f"{stem}.redaction", work / f"{stem}.check.json"

    @classmethod
    def load(cls, work: Path, index: int) -> RenderedChunk | None:
        """The chunk as a render killed later left it; None if it was not finished."""
        audio, redaction, verdict = cls.files(work, index)
        if not (audio.exists() and redaction.exists()):
            return None
        checked = read_verdict(verdict) if verdict.exists() else None
        return cls(np.load(audio), Redaction(redaction.read_text().strip()), checked)

    def save(self, work: Path, index: int) -> None:
        """The verdict first, the audio and its redaction last: those mark it finished."""
        audio, redaction, verdict = self.files(work, index)
        if self.verdict is not None:
            atomic.write_text(verdict, self.verdict.to_json())
        with atomic.atomic_path(audio) as tmp:
            np.save(tmp, self.audio)
        atomic.write_text(redaction, f"{self.redaction}\n")


def write_flag(output: Path, verdicts: list[ChunkVerdict | None], check: RenderCheck | None):
    """`<name>.check.txt` beside a render whose chunks still failed the check; a render that
    passed removes the flag of an earlier one."""
    flag = Outputs.of(output).check
    failed = check is not None and any(v is not None and not v.passed for v in verdicts)
    if failed:
        atomic.write_text(flag, flag_text(output.name, verdicts, check.limits))
    else:
        flag.unlink(missing_ok=True)


def join_chunks(parts: list[np.ndarray], rate: int, output_rate: int) -> np.ndarray:
    pause = np.zeros(int(CHUNK_PAUSE_SECONDS * rate), np.float32)
    joined = np.concatenate([x for part in parts for x in (part, pause)][:-1])
    if output_rate != rate:
        joined = soxr.resample(joined, rate, output_rate, quality="HQ")
    return np.clip(joined, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    with atomic.atomic_path(path) as tmp:
        sf.write(tmp, audio, rate, subtype="PCM_16", format="WAV")


class RenderStage(Stage):
    """The render job: one per version of a text. It goes before fine-tuning, which yields
    the device to it."""

    kind = JobKind.RENDER
    priority = 1  # after imports, which are quick and must never wait behind a long text
    device = Device.SHARED
    preempted_by = (JobKind.IMPORT, JobKind.RENDER)  # a long text takes turns, chunk by chunk

    def __init__(self, context: StageContext) -> None:
        super().__init__(context)
        self.renderer = Renderer(self.root, self.settings)

    def run(self, job: Job, ledger: Ledger) -> None:
        text = job.input_path
        if not text.exists() or file_sha256(text) != job.content_hash:
            if job.data.work is not None:  # the chunks of a text that changed are useless
                shutil.rmtree(job.data.work, ignore_errors=True)
            ledger.finish(job.id, RenderData(outcome=Outcome.SUPERSEDED))
            return
        voice = self.root.voice(job.voice)
        outputs = Outputs.of(text)
        try:
            body, settings, tts = self.prepare(voice, text)
            self.renderer.check_ready(voice, tts, settings.decoder)
            sidecar = self.renderer.render(
                voice,
                body,
                settings,
                tts,
                outputs.wav,
                job.content_hash,
                BetweenChunks(self, ledger, job),
            )
        except Blocked as exc:
            atomic.write_text(outputs.error, f"{exc}\n")
            raise
        outputs.error.unlink(missing_ok=True)
        seconds = sidecar["timings"]["total_seconds"]
        ledger.finish(job.id, RenderData(Outcome.RENDERED, wav=outputs.wav, seconds=seconds))
        logger.info(
            "rendered {} ({}): {:.1f} s of speech in {:.1f} s",
            text.name,
            voice.name,
            sidecar["audio_seconds"],
            seconds,
        )

    def prepare(self, voice: VoicePaths, text: Path) -> tuple[str, TtsSettings, TtsSettings]:
        try:
            voice_settings = load_voice_settings(self.settings, voice.config_file)
        except ConfigError as exc:
            raise Blocked(str(exc)) from exc
        tts, max_chars = voice_settings.tts, voice_settings.render.max_chars
        if text.stat().st_size > 4 * max_chars + MAX_YAML_BYTES:  # not even read: too long
            raise Rejected(too_long(text, text.stat().st_size, max_chars, "bytes"))
        try:
            front_matter, body = split_front_matter(read_text(text), text.name)
            settings = text_settings(tts, front_matter, text)
            check_brackets(body)
        except (BadText, ConfigError) as exc:
            raise Rejected(str(exc)) from exc
        if len(body) > max_chars:
            raise Rejected(too_long(text, len(body), max_chars, "characters"))
        if not body.strip():
            raise Rejected(
                f"{text.name} has no text to speak; write something below the front matter"
            )
        if not any(character.isalnum() for character in body):
            raise Rejected(
                f"{text.name} has nothing a voice can speak (only punctuation, symbols or "
                "emoji); write words"
            )
        return body, settings, tts

    def give_up(self, job: Job, reason: str) -> None:
        atomic.write_text(Outputs.of(job.input_path).error, f"{reason}\n")

    def on_idle(self) -> None:
        self.renderer.release_if_idle(self.settings.tts.idle_unload)

    def release(self) -> None:
        self.renderer.release()

    @classmethod
    def reconcile(cls, root: Root, ledger: Ledger) -> int:
        """Finished chunks no queued render will use again (its text changed or was deleted
        while the daemon was down) are removed."""
        active = (JobState.PENDING, JobState.RUNNING, JobState.WAITING)
        kept = {job.data.work for job in ledger.jobs(kind=JobKind.RENDER) if job.state in active}
        for work in (root.state / "renders").glob("*"):
            if work not in kept:
                shutil.rmtree(work, ignore_errors=True)
        return 0


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

    def __call__(self, work: Path, done: int, total: int, eta: float | None) -> None:
        progress = RenderProgress(done, total, None if eta is None else round(eta, 1))
        data = replace(self.job.data, progress=progress, work=work)
        self.job = self.ledger.set_data(self.job.id, data)
        if self.stage.stopping.is_set():
            raise Yielded(f"the daemon is stopping; {done} of {total} chunks kept")
        if self.ledger.has_pending(self.stage.preempted_by):
            raise Yielded(f"other work goes first; {done} of {total} chunks kept")
