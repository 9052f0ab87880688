"""Every setting in one validated place: config.yaml, overridden per voice by voice.yaml.

A typo must stop the daemon at start-up with the file, the key and what is allowed,
instead of being silently ignored and surprising the user at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from loguru import logger

from daemon.tts.generation import (
    SPEECH_MODELS,
    TRAINED_DIFFUSION_STEPS,
    GenerationKnobs,
    GenerationSettings,
)

AUDIO_EXTENSIONS = (
    "wav",
    "flac",
    "mp3",
    "ogg",
    "oga",
    "opus",
    "m4a",
    "aac",
    "webm",
    "mka",
    "wma",
    "aiff",
    "aif",
    "caf",
    "mp4",
)


MAX_YAML_BYTES = 64 << 10  # config.yaml, voice.yaml, a text's front matter


class ConfigError(Exception):
    """A setting a user must fix; the message names the file and the key."""


@dataclass(frozen=True)
class WatchSettings:
    mode: Literal["auto", "native", "poll"] = "auto"
    stable_for: float = 2.0
    poll_interval: float = 2.0
    rescan_every: float = 300.0
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImportSettings:
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS
    min_seconds: float = 0.6
    min_sample_rate: int = 8000
    warn_short_seconds: float = 3.0
    warn_long_seconds: float = 15.0
    max_duration: float = 1200.0  # bounds the memory an import takes
    max_bytes: int = 1 << 30
    # The speaker check (daemon.quality.speaker); bench/speaker_bench.py justifies both.
    min_speaker_similarity: float = 0.8
    speaker_reference_clips: int = 3


@dataclass(frozen=True)
class JobSettings:
    max_attempts: int = 3
    retry_delay: float = 30.0


@dataclass(frozen=True)
class LogSettings:
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    rotation: str = "10 MB"
    retention: int = 5


@dataclass(frozen=True)
class WhisperSettings:
    model: str = "whisper-base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "auto"
    language: str | None = None
    beam_size: int = 5
    vad_filter: bool = True
    word_timestamps: bool = True
    condition_on_previous_text: bool = False
    threads: int = 0


@dataclass(frozen=True)
class DatasetSettings:
    min_seconds: float = 0.6
    max_seconds: float = 11.6
    validation_share: float = 0.05
    validation_text_length: int = 12
    validation_audio_length: float = 1.0
    trim_silence: bool = True
    start_offset: float = 0.0
    end_offset: float = 0.0
    max_cer: float = 0.3  # espeak pieces: 0-0.13 said right, 0.71-0.86 another sentence
    min_similarity: float = 0.6  # tom's pieces 0.73-0.95 (short ones lowest), espeak's 0.39
    drop_suspect: bool = False


@dataclass(frozen=True)
class TtsSettings(GenerationKnobs):
    """The generation knobs (declared once, in daemon.tts.generation) and how to run them."""

    models_dir: str | None = None
    fetch: Literal["auto", "never"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    half: bool = False
    latents: Literal["voicedrop", "tortoise"] = "voicedrop"
    sampler: Literal["voicedrop", "tortoise"] = "voicedrop"  # how, not what: an engine option
    output_sample_rate: int = 24000
    idle_unload: float = 600.0

    def generation(self) -> GenerationSettings:
        """What the engine samples with: these knobs, the unset ones from the preset."""
        return GenerationSettings.from_knobs(self)


@dataclass(frozen=True)
class TrainingSettings:
    schedule: str = "0 1 * * *"
    until: str = "07:00"
    catch_up: float = 21600.0
    epochs: int = 50
    learning_rate: float = 1e-4
    batch_size: int | Literal["auto"] = 128
    micro_batch: int | Literal["auto"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    optimizer: Literal["adamw", "adamw8bit"] = "adamw"
    checkpointing: bool | Literal["auto"] = "auto"
    text_lr_weight: float | Literal["auto"] = "auto"
    mel_lr_weight: float = 1.0
    lr_schedule: tuple[int, ...] = (2, 4, 9, 18, 25, 33, 50, 59)
    validate_every: int = 5
    save_every: int = 5
    # A finished run's model replaces the voice's current one only if it is not worse by
    # these margins on the hold-out lines (daemon.quality.promotion)
    promote_max_cer_rise: float = 0.02
    promote_max_similarity_drop: float = 0.02
    promote_max_loss_rise: float = 0.02
    promote_texts: int = 8


@dataclass(frozen=True)
class ModelsSettings:
    store: str | None = None


@dataclass(frozen=True)
class RenderSettings:
    max_chars: int = 1_000_000  # bounds a book's chunks, render time and memory (~15 h)
    check: bool = True
    max_cer: float = 0.3
    min_similarity: float = 0.6  # each retry costs a render: only a clearly other speaker
    retries: int = 2
    format: Literal["auto", "wav", "flac", "mp3", "opus", "m4a", "m4b"] = "auto"
    bitrate: str | None = None  # e.g. "96k"; None: the format's own default
    pause_sentence: float = 0.25
    pause_paragraph: float = 0.75
    pause_chapter: float = 2.0
    crossfade: float = 0.01
    loudness_lufs: float | None = -18.0
    cache_max_gb: float = 2.0


@dataclass(frozen=True)
class ServeSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765
    wyoming_port: int | None = 10200  # Wyoming's usual TTS port; None: no Wyoming server
    wyoming_model: str = "tts-1"  # what Wyoming speaks with: a name /v1/models lists
    api_key: str | None = None
    max_input_chars: int = 4096  # a speech request's text (OpenAI's own limit); books: outbox/
    max_queued_per_client: int = 4  # speech requests one client may have queued or streaming
    speech_timeout: float = 600.0  # s a request may wait for its next sentence
    open_metrics: bool = True  # /metrics answers without api_key (Prometheus scrapes)
    open_page: bool = True  # the status page's reads (status, render audio) without api_key
    max_upload_mb: int = 1024  # MiB: import.max_bytes' default, past which a clip is refused


@dataclass(frozen=True)
class Settings:
    watch: WatchSettings = field(default_factory=WatchSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    logging: LogSettings = field(default_factory=LogSettings)
    whisper: WhisperSettings = field(default_factory=WhisperSettings)
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    models: ModelsSettings = field(default_factory=ModelsSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)


TEMPLATE = Path(__file__).with_name("config_template.yaml")

# `import` is a keyword, so the field is `imports`; users write `import:` in YAML.
SECTION_NAMES = {"import": "imports"}
GLOBAL_ONLY_SECTIONS = ("watch", "jobs", "logging", "models", "serve")
# Keys earlier versions wrote into every config.yaml: ignored with a warning, not refused.
RETIRED_SETTINGS = {
    "training.grad_accum": "gradient accumulation now follows from training.batch_size and "
    "training.micro_batch",
    "training.half": "training.precision replaces it (fp16 for what half: true did)",
}
# Offsets may move a cut earlier, and a negative length penalty favours shorter candidates;
# every other number is a size, a time, a rate or a weight.
SIGNED_SETTINGS = (
    "dataset.start_offset",
    "dataset.end_offset",
    "tts.length_penalty",
    "render.loudness_lufs",
)
MAX_MEL_TOKENS = 602  # the released autoregressive model's 604 less its start and stop codes
# What a text's front matter may set: the generation knobs and the rate of its wav.
FRONT_MATTER_KEYS = (*(f.name for f in dataclasses.fields(GenerationKnobs)), "output_sample_rate")
FRONT_MATTER = "front matter"  # how errors name the section a text's front matter sets


def is_count_or_auto(value: int | str) -> bool:
    return value == "auto" or (isinstance(value, int) and value >= 1)


def is_clock_time(text: str) -> bool:
    hours, _, minutes = text.partition(":")
    return hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60


def is_cron(text: str) -> bool:
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError:
        return False
    return True


def is_port(value: int) -> bool:
    return 1 <= value <= 65535


def is_loopback(host: str) -> bool:
    """Only `localhost` and loopback addresses count: any other name may resolve elsewhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def above_zero(value: float) -> bool:
    return value > 0


def at_least_one(value: int) -> bool:
    return value >= 1


# Values that pass the type check but cannot work, for config.yaml, voice.yaml and front
# matter alike; a None (the preset's value) is never checked.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "watch.stable_for": (above_zero, "must be more than 0 seconds"),
    "watch.poll_interval": (above_zero, "must be more than 0 seconds"),
    "watch.rescan_every": (at_least_one, "must be at least 1 second"),
    "jobs.max_attempts": (at_least_one, "must be at least 1"),
    "import.max_duration": (at_least_one, "must be at least 1 second"),
    "import.max_bytes": (at_least_one, "must be at least 1 byte"),
    "import.min_speaker_similarity": (
        lambda similarity: similarity <= 1,
        "must be 0-1 (a cosine similarity; 0 turns the speaker check off)",
    ),
    "import.speaker_reference_clips": (
        lambda clips: clips >= 2,
        "must be at least 2 (their spread is measured clip against clip)",
    ),
    "render.max_chars": (at_least_one, "must be at least 1"),
    "tts.seed": (lambda seed: seed < 2**32, "must be below 4294967296 (2**32)"),
    "dataset.validation_share": (lambda share: share < 1, "must be below 1"),
    "dataset.max_cer": (above_zero, "must be more than 0 (1 or more: no piece is suspect)"),
    "dataset.min_similarity": (
        lambda similarity: similarity <= 1,
        "must be at most 1 (a cosine similarity; 0 or less: any speaker passes)",
    ),
    "render.max_cer": (above_zero, "must be more than 0 (1 or more: every render passes)"),
    "render.min_similarity": (
        lambda similarity: similarity <= 1,
        "must be at most 1 (a cosine similarity; 0 or less: any speaker passes)",
    ),
    "render.retries": (lambda retries: retries >= 0, "must be 0 or more"),
    "render.bitrate": (
        lambda rate: re.fullmatch(r"[1-9][0-9]{0,3}k", rate) is not None,
        'must be kilobits per second like "96k" (1k-9999k)',
    ),
    "render.pause_sentence": (lambda s: 0 <= s <= 10, "must be 0-10 seconds"),
    "render.pause_paragraph": (lambda s: 0 <= s <= 10, "must be 0-10 seconds"),
    "render.pause_chapter": (lambda s: 0 <= s <= 30, "must be 0-30 seconds"),
    "render.crossfade": (lambda s: 0 <= s <= 0.1, "must be 0-0.1 seconds"),
    "render.loudness_lufs": (lambda lufs: -40 <= lufs <= -5, "must be -40 to -5 LUFS"),
    "render.cache_max_gb": (lambda gb: gb >= 0, "must be 0 or more (0 keeps no chunks)"),
    "tts.max_mel_tokens": (
        lambda tokens: 1 <= tokens <= MAX_MEL_TOKENS,
        f"must be 1-{MAX_MEL_TOKENS} (mel codes per chunk, 20 per second of speech)",
    ),
    "tts.candidates": (at_least_one, "must be at least 1"),
    "tts.temperature": (above_zero, "must be more than 0"),
    "tts.top_p": (lambda top_p: 0 < top_p <= 1, "must be in (0, 1]"),
    "tts.repetition_penalty": (above_zero, "must be more than 0"),
    "tts.diffusion_iterations": (
        lambda steps: 2 <= steps <= TRAINED_DIFFUSION_STEPS,
        f"must be 2-{TRAINED_DIFFUSION_STEPS} (the steps the decoder was trained on)",
    ),
    "tts.diffusion_temperature": (above_zero, "must be more than 0"),
    "tts.output_sample_rate": (lambda rate: 8000 <= rate <= 192000, "must be 8000-192000 (Hz)"),
    "training.batch_size": (is_count_or_auto, "must be 1 or more"),
    "training.micro_batch": (is_count_or_auto, "must be 1 or more"),
    "training.until": (is_clock_time, "must be a time like 07:00"),
    "training.schedule": (is_cron, "must be a 5-field cron line"),
    "training.promote_texts": (at_least_one, "must be at least 1"),
    "serve.port": (is_port, "must be a TCP port, 1-65535"),
    "serve.wyoming_port": (is_port, "must be a TCP port, 1-65535, or null (no Wyoming server)"),
    "serve.wyoming_model": (
        lambda name: name in SPEECH_MODELS,
        f"must be one of {', '.join(SPEECH_MODELS)}",
    ),
    "serve.max_input_chars": (
        lambda chars: 1 <= chars <= 100_000,
        "must be 1-100000 characters (long texts go into outbox/)",
    ),
    "serve.max_queued_per_client": (at_least_one, "must be at least 1"),
    "serve.speech_timeout": (above_zero, "must be more than 0 seconds"),
    "serve.max_upload_mb": (at_least_one, "must be at least 1 (MiB a file uploaded may have)"),
}


def load_settings(config_file: Path) -> Settings:
    """Read config.yaml; a missing file means all defaults. A text read before is not parsed
    again: `status`, the status page and /metrics read it at every poll."""
    if not config_file.exists():
        return Settings()
    return parsed_settings(config_file, read_yaml_text(config_file))


@functools.lru_cache(maxsize=32)
def parsed_settings(config_file: Path, text: str) -> Settings:
    """Settings are frozen, so one parse of a text can be shared; an error is raised anew
    each time (nothing is cached for it)."""
    data = yaml_mapping(text, config_file)
    return check_ranges(apply_overrides(Settings(), data, config_file), config_file)


def check_ranges(settings: Settings, source: Path) -> Settings:
    """RANGES and signs of every section, then the limits that tie two settings together."""
    for section_name in yaml_section_names():
        section = getattr(settings, SECTION_NAMES.get(section_name, section_name))
        check_section(section, section_name, section_name, source)
    dataset = settings.dataset
    if not dataset.min_seconds < dataset.max_seconds <= 11.6:
        raise ConfigError(
            f"{source}: dataset.max_seconds: must be above dataset.min_seconds and at most "
            "11.6 (TorToiSe's 255995 samples)"
        )
    check_serve(settings.serve, source)
    return settings


def check_serve(serve: ServeSettings, source: Path) -> None:
    """The server answers whoever reaches it: beyond this machine only with a key."""
    if not serve.enabled:
        return
    if serve.api_key is None and not is_loopback(serve.host):
        raise ConfigError(
            f"{source}: serve.host: {shorten(serve.host)} can be reached from other machines, "
            "so serve.api_key must be set (a long random text that clients send as a bearer "
            "token); or keep serve.host: 127.0.0.1"
        )
    if serve.wyoming_port == serve.port:
        raise ConfigError(f"{source}: serve.wyoming_port: must differ from serve.port")


def check_section(section: Any, name: str, label: str, source: Path) -> None:
    """One section's values against RANGES, then the sign rule; `name` is the section RANGES
    knows it by, `label` what the error calls it (front matter sets the tts section)."""
    values = {item.name: getattr(section, item.name) for item in dataclasses.fields(section)}
    for key, value in values.items():
        check, allowed = RANGES.get(f"{name}.{key}", (None, ""))
        if check is not None and value is not None and not check(value):
            raise ConfigError(f"{source}: {label}.{key}: {allowed}")
    for key, value in values.items():
        if f"{name}.{key}" in SIGNED_SETTINGS or isinstance(value, bool):
            continue
        if isinstance(value, int | float) and value < 0:
            raise ConfigError(f"{source}: {label}.{key}: must be 0 or more, got {value}")


def text_settings(tts: TtsSettings, front_matter: dict[str, Any], source: Path) -> TtsSettings:
    """A text's tts settings: its front matter on top of the voice's, checked by the same
    declarations and RANGES as config.yaml."""
    text = override_section(tts, front_matter, source, FRONT_MATTER, FRONT_MATTER_KEYS)
    check_section(text, "tts", FRONT_MATTER, source)
    return text


def load_voice_settings(base: Settings, voice_file: Path) -> Settings:
    """Apply voices/<voice>/voice.yaml on top of the global settings."""
    if not voice_file.exists():
        return base
    data = read_yaml_mapping(voice_file)
    for section in data:
        if section in GLOBAL_ONLY_SECTIONS:
            raise ConfigError(
                f"{voice_file}: {section}: only config.yaml may set this section; "
                f"voice.yaml may set {', '.join(voice_sections())}"
            )
    return check_ranges(apply_overrides(base, data, voice_file), voice_file)


def voice_sections() -> list[str]:
    return [name for name in yaml_section_names() if name not in GLOBAL_ONLY_SECTIONS]


def yaml_section_names() -> list[str]:
    renamed = {v: k for k, v in SECTION_NAMES.items()}
    return [renamed.get(f.name, f.name) for f in dataclasses.fields(Settings)]


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    return yaml_mapping(read_yaml_text(path), path)


def read_yaml_text(path: Path) -> str:
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_YAML_BYTES >> 10} KiB; settings never are")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc})") from exc


def yaml_mapping(text: str, path: Path) -> dict[str, Any]:
    try:
        data = load_small_yaml(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(base: Settings, data: dict[str, Any], source: Path) -> Settings:
    sections = {}
    for section, values in data.items():
        attr = SECTION_NAMES.get(section, section)
        if section not in yaml_section_names():
            raise ConfigError(unknown_key_message(source, str(section), yaml_section_names()))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {section}: expected a mapping of settings")
        sections[attr] = override_section(getattr(base, attr), values, source, section)
    return dataclasses.replace(base, **sections)


def override_section(
    current: Any,
    values: dict[str, Any],
    source: Path,
    section: str,
    allowed: tuple[str, ...] | None = None,
) -> Any:
    """`current` with `values` checked and applied; `allowed` narrows the keys (front matter
    sets only some of the tts section)."""
    hints = typing.get_type_hints(type(current))
    names = list(allowed or (f.name for f in dataclasses.fields(current)))
    changes = {}
    for key, value in values.items():
        where = f"{section}.{shorten(str(key), 60)}"
        if where in RETIRED_SETTINGS:
            logger.warning("{}: {} is no longer used: {}", source, where, RETIRED_SETTINGS[where])
            continue
        if key not in names:
            raise ConfigError(unknown_key_message(source, where, names))
        changes[key] = coerce(value, hints[key], source, where)
    return dataclasses.replace(current, **changes)


def load_small_yaml(text: str) -> Any:
    """YAML for settings: at most MAX_YAML_BYTES, and no anchors or aliases, with which a few
    hundred bytes expand into gigabytes (the "billion laughs"). ValueError says what is
    wrong, briefly."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise ValueError(f"larger than {MAX_YAML_BYTES >> 10} KiB; settings never are")
    try:
        for token in yaml.scan(text):
            if isinstance(token, yaml.AnchorToken | yaml.AliasToken):
                raise ValueError("YAML anchors and aliases (& and *) are not accepted here")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {shorten(str(exc), 300)}") from None
    except RecursionError:  # [[[[…]]]] a few thousand deep
        raise ValueError("nested too deeply to be settings") from None


def shorten(text: str, limit: int = 120) -> str:
    """User data quoted in a message (a log line, a reason file) is cut to `limit`."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def unknown_key_message(source: Path, where: str, allowed: list[str]) -> str:
    last = where.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(last, allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{source}: {where}: unknown key{hint}; allowed here: {', '.join(allowed)}"


def coerce(value: Any, hint: Any, source: Path, where: str) -> Any:
    """Check `value` against a type hint; accept ints for floats and lists for tuples."""
    try:
        checked = coerce_value(value, hint)
    except ValueError as exc:
        raise ConfigError(f"{source}: {where}: {exc}, got {shorten(repr(value))}") from None
    if where == "import.extensions":
        return tuple(ext.lower().lstrip(".") for ext in checked)
    return checked


def coerce_value(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return coerce_union(value, typing.get_args(hint))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(str, choices))}")
        return value
    if origin is tuple:
        return coerce_tuple(value, typing.get_args(hint)[0])
    return coerce_scalar(value, hint)


def coerce_union(value: Any, options: tuple[Any, ...]) -> Any:
    if value is None and type(None) in options:
        return None
    messages = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce_value(value, option)
        except ValueError as exc:
            messages.append(str(exc).removeprefix("expected "))
    raise ValueError("expected " + " or ".join(messages))


def coerce_tuple(value: Any, item_hint: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {type_name(item_hint)}")
    return tuple(coerce_value(item, item_hint) for item in value)


def coerce_scalar(value: Any, hint: type) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    elif hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and math.isfinite(value):
            return float(value)
    elif hint is str and isinstance(value, str) and value:
        return value
    raise ValueError(f"expected {type_name(hint)}")


def type_name(hint: Any) -> str:
    return {
        bool: "true or false",
        int: "a whole number ≥ 0",
        float: "a number",
        str: "a non-empty text (quote it)",
    }.get(hint, str(hint))
