import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from daemon.cli import main as cli_main
from daemon.core.config import (
    SECTION_NAMES,
    TEMPLATE,
    ConfigError,
    Settings,
    TtsSettings,
    coerce,
    load_settings,
    load_voice_settings,
    text_settings,
)
from daemon.tts.generation import PRESETS, GenerationSettings
from tests.conftest import REPO, voicedrop


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_template_documents_every_key_and_equals_defaults(tmp_path):
    assert load_settings(TEMPLATE) == Settings()
    text = TEMPLATE.read_text(encoding="utf-8")
    for section in ("watch", "import", "jobs", "logging", "whisper", "dataset", "tts", "training"):
        assert f"\n{section}:" in f"\n{text}"


def test_template_documents_every_declared_setting_with_its_default():
    """Walks the declarations, so a setting added to a section dataclass without its line in
    the template (or a line left behind by a removed setting) fails here."""
    text = TEMPLATE.read_text(encoding="utf-8")
    documented = yaml.safe_load(text)
    renamed = {attr: name for name, attr in SECTION_NAMES.items()}
    declared_sections = [renamed.get(f.name, f.name) for f in dataclasses.fields(Settings)]
    assert list(documented) == declared_sections
    for section in dataclasses.fields(Settings):
        name = renamed.get(section.name, section.name)
        defaults = getattr(Settings(), section.name)
        keys = [item.name for item in dataclasses.fields(defaults)]
        assert sorted(documented[name]) == sorted(keys), name
        hints = typing.get_type_hints(type(defaults))
        for key in keys:
            value = coerce(documented[name][key], hints[key], TEMPLATE, f"{name}.{key}")
            assert value == getattr(defaults, key), f"{name}.{key}"
            assert f"\n  {key}:" in text, f"{name}.{key} is not on a line of its own"


def test_repo_config_is_the_documented_template():
    repo_config = REPO / "config.yaml"
    assert repo_config.read_text(encoding="utf-8") == TEMPLATE.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("watch:\n  stabel_for: 3\n", "watch.stabel_for: unknown key (did you mean 'stable_for'?)"),
        ("watch:\n  stable_for: soon\n", "watch.stable_for: expected a number, got 'soon'"),
        ("import:\n  min_seconds: -1\n", "import.min_seconds: must be 0 or more, got -1.0"),
        ("watch:\n  mode: fast\n", "watch.mode: expected one of auto, native, poll"),
        ("wacth:\n  mode: poll\n", "wacth: unknown key (did you mean 'watch'?)"),
        ("jobs:\n  max_attempts: 0\n", "jobs.max_attempts: must be at least 1"),
        ("training:\n  batch_size: big\n", "training.batch_size: expected a whole number"),
        ("training:\n  batch_size: 0\n", "training.batch_size: must be 1 or more"),
        ("training:\n  micro_batch: 0\n", "training.micro_batch: must be 1 or more"),
        ("training:\n  precision: fp8\n", "training.precision: expected one of auto, fp32, bf16"),
        ("training:\n  optimizer: sgd\n", "training.optimizer: expected one of adamw, adamw8bit"),
        ("training:\n  schedule: every night\n", "training.schedule: must be a 5-field cron line"),
        ("import:\n  extensions: wav\n", "import.extensions: expected a list"),
        ("dataset:\n  max_seconds: 20\n", "dataset.max_seconds: must be above"),
        ("dataset:\n  max_cer: 0\n", "dataset.max_cer: must be more than 0"),
        ("dataset:\n  drop_suspect: yes please\n", "dataset.drop_suspect: expected true or"),
        ("render:\n  max_cer: 0\n", "render.max_cer: must be more than 0"),
        ("render:\n  retries: -1\n", "render.retries: expected a whole number ≥ 0"),
        ("tts:\n  max_mel_tokens: 0\n", "tts.max_mel_tokens: must be 1-602"),
        ("tts:\n  max_mel_tokens: 700\n", "tts.max_mel_tokens: must be 1-602"),
        ("tts:\n  latents: random\n", "tts.latents: expected one of voicedrop, tortoise"),
        ("tts:\n  sampler: beam\n", "tts.sampler: expected one of voicedrop, tortoise"),
        ("tts:\n  diffusion_temperature: 0\n", "tts.diffusion_temperature: must be more than 0"),
        ("tts:\n  diffusion_temperature: hot\n", "tts.diffusion_temperature: expected a number"),
        ("tts:\n  top_p: 1.5\n", "tts.top_p: must be in (0, 1]"),
        ("tts:\n  temperature: 0\n", "tts.temperature: must be more than 0"),
        ("tts:\n  candidates: 0\n", "tts.candidates: must be at least 1"),
        ("tts:\n  diffusion_iterations: 1\n", "tts.diffusion_iterations: must be 2-4000"),
        ("tts:\n  diffusion_iterations: 4001\n", "tts.diffusion_iterations: must be 2-4000"),
        (
            "tts:\n  diffusion_sampler: euler\n",
            "tts.diffusion_sampler: expected one of p, ddim, dpm++2m, got 'euler'",
        ),
        ("tts:\n  cond_free_k: -1\n", "tts.cond_free_k: must be 0 or more"),
        ("tts:\n  output_sample_rate: 4000\n", "tts.output_sample_rate: must be 8000-192000"),
        ("serve:\n  port: 0\n", "serve.port: must be a TCP port, 1-65535"),
        ("serve:\n  port: 70000\n", "serve.port: must be a TCP port, 1-65535"),
        ("serve:\n  port: 10200\n", "serve.wyoming_port: must differ from serve.port"),
        ("serve:\n  max_upload_mb: 0\n", "serve.max_upload_mb: must be at least 1"),
        ("serve:\n  wyoming_model: tts-2\n", "serve.wyoming_model: must be one of tts-1, tts-1-hd"),
        ("serve:\n  api_key: ''\n", "serve.api_key: expected a non-empty text"),
        ("serve:\n  host: '::'\n", "serve.host: :: can be reached from other machines"),
        ("watch: [1, 2]\n", "watch: expected a mapping"),
        ("watch:\n  mode: poll\n  - x\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path, text, expected):
    config = write(tmp_path / "config.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(config) in str(caught.value)
    assert expected in str(caught.value)


def test_values_are_coerced(tmp_path):
    config = write(
        tmp_path / "config.yaml",
        "watch:\n  stable_for: 3\n  mode: poll\nimport:\n  extensions: [WAV, .Mp3]\n"
        "training:\n  batch_size: 8\n  lr_schedule: [1, 2]\nwhisper:\n  language: de\n",
    )
    settings = load_settings(config)
    assert settings.watch.stable_for == 3.0
    assert settings.imports.extensions == ("wav", "mp3")
    assert settings.training.batch_size == 8
    assert settings.training.lr_schedule == (1, 2)
    assert settings.whisper.language == "de"


def test_voice_yaml_overrides_and_refuses_global_sections(tmp_path):
    base = Settings()
    voice = write(tmp_path / "voice.yaml", "whisper:\n  language: ja\nimport:\n  min_seconds: 1\n")
    settings = load_voice_settings(base, voice)
    assert settings.whisper.language == "ja"
    assert settings.imports.min_seconds == 1.0
    assert settings.watch == base.watch
    write(voice, "watch:\n  mode: poll\n")
    with pytest.raises(ConfigError, match=r"only config\.yaml may set this section"):
        load_voice_settings(base, voice)


def test_daemon_refuses_to_start_with_a_bad_config(root):
    write(root / "config.yaml", "watch:\n  stable_for: -1\n")
    result = voicedrop("run", "--until-idle", "--root", str(root), check=False)
    assert result.returncode == 2
    assert "config.yaml: watch.stable_for: must be more than 0 seconds" in result.stderr


def test_init_creates_folders_and_keeps_an_existing_config(tmp_path, capsys):
    target = tmp_path / "new"
    assert cli_main(["init", str(target)]) == 0
    for folder in ("inbox", "outbox", "voices", ".voicedrop"):
        assert (target / folder).is_dir()
    assert (target / "config.yaml").read_text() == TEMPLATE.read_text()
    write(target / "config.yaml", "watch:\n  mode: poll\n")
    assert cli_main(["init", str(target)]) == 0
    assert (target / "config.yaml").read_text() == "watch:\n  mode: poll\n"


def test_a_retired_key_from_an_older_config_is_ignored_with_a_warning(tmp_path):
    """Every config.yaml `voicedrop init` wrote before had training.grad_accum: it must keep
    starting, with a line saying the key no longer does anything."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING")
    try:
        settings = load_settings(write(tmp_path / "c.yaml", "training:\n  grad_accum: 4\n"))
    finally:
        logger.remove(sink)
    assert settings == Settings()
    assert any("training.grad_accum is no longer used" in line for line in lines)


def test_generation_knobs_are_settable_at_every_level_and_null_takes_the_preset(tmp_path):
    config = write(tmp_path / "config.yaml", "tts:\n  diffusion_temperature: 0.5\n")
    settings = load_settings(config)
    assert settings.tts.generation().diffusion_temperature == 0.5
    assert settings.tts.generation().candidates == PRESETS["fast"]["candidates"]
    voice = write(tmp_path / "voice.yaml", "tts:\n  preset: ultra_fast\n  top_p: 0.5\n")
    tts = load_voice_settings(settings, voice).tts
    assert tts.candidates is None  # unset: whatever the preset in force says
    assert tts.generation() == GenerationSettings(
        preset="ultra_fast", top_p=0.5, diffusion_temperature=0.5
    )
    assert tts.generation().candidates == 16 and tts.generation().cond_free is False
    front_matter = {"diffusion_temperature": 0.25, "cond_free": True, "seed": 3}
    text = text_settings(tts, front_matter, tmp_path / "a.txt")
    generation = text.generation()
    assert (generation.diffusion_temperature, generation.cond_free) == (0.25, True)
    assert (generation.seed, generation.top_p, generation.candidates) == (3, 0.5, 16)


@pytest.mark.parametrize(
    ("front_matter", "expected"),
    [
        ({"diffusion_temperature": 0}, "front matter.diffusion_temperature: must be more than 0"),
        ({"diffusion_temperature": "hot"}, "front matter.diffusion_temperature: expected a number"),
        ({"top_p": 3}, "front matter.top_p: must be in (0, 1]"),
        ({"output_sample_rate": 100}, "front matter.output_sample_rate: must be 8000-192000"),
        ({"max_mel_tokens": 0}, "front matter.max_mel_tokens: must be 1-602"),
        ({"temprature": 0.5}, "front matter.temprature: unknown key (did you mean 'temperature'?)"),
        ({"device": "cpu"}, "front matter.device: unknown key"),
    ],
)
def test_bad_front_matter_names_the_file_and_key(tmp_path, front_matter, expected):
    with pytest.raises(ConfigError) as caught:
        text_settings(TtsSettings(), front_matter, tmp_path / "a.txt")
    assert str(caught.value).startswith(f"{tmp_path / 'a.txt'}: {expected}")


def test_a_bad_knob_in_voice_yaml_names_the_file_and_key(tmp_path):
    voice = write(tmp_path / "voice.yaml", "tts:\n  diffusion_temperature: -0.5\n")
    with pytest.raises(ConfigError) as caught:
        load_voice_settings(Settings(), voice)
    assert str(caught.value) == f"{voice}: tts.diffusion_temperature: must be more than 0"


def test_a_yaml_alias_bomb_in_config_is_refused_and_the_message_stays_short(tmp_path):
    from tests.tts.test_texts import BILLION_LAUGHS

    config = tmp_path / "config.yaml"
    config.write_text(f"watch:\n  ignore: {BILLION_LAUGHS.splitlines()[0][3:]}\n{BILLION_LAUGHS}")
    with pytest.raises(ConfigError, match="anchors and aliases") as caught:
        load_settings(config)
    assert len(str(caught.value)) < 300


def test_a_huge_value_is_quoted_short_in_the_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"watch": {"stable_for": "x" * 50_000}}))
    with pytest.raises(ConfigError, match=r"watch\.stable_for") as caught:
        load_settings(config)
    assert len(str(caught.value)) < 400
