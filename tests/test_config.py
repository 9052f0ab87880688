from pathlib import Path

import pytest

from daemon.cli import main as cli_main
from daemon.core.config import TEMPLATE, ConfigError, Settings, load_settings, load_voice_settings
from tests.conftest import voicedrop


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_template_documents_every_key_and_equals_defaults(tmp_path):
    assert load_settings(TEMPLATE) == Settings()
    text = TEMPLATE.read_text(encoding="utf-8")
    for section in ("watch", "import", "jobs", "logging", "whisper", "dataset", "tts", "training"):
        assert f"\n{section}:" in f"\n{text}"


def test_repo_config_is_the_documented_template():
    repo_config = Path(__file__).parents[1] / "config.yaml"
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
        ("training:\n  half: maybe\n", "training.half: expected true or false or one of auto"),
        ("training:\n  schedule: every night\n", "training.schedule: must be a 5-field cron line"),
        ("import:\n  extensions: wav\n", "import.extensions: expected a list"),
        ("dataset:\n  max_seconds: 20\n", "dataset.max_seconds: must be above"),
        ("tts:\n  max_mel_tokens: 0\n", "tts.max_mel_tokens: must be 1-602"),
        ("tts:\n  max_mel_tokens: 700\n", "tts.max_mel_tokens: must be 1-602"),
        ("tts:\n  latents: random\n", "tts.latents: expected one of voicedrop, tortoise"),
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
