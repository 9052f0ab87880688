"""The commands a user types: status (text and JSON) and doctor."""

import subprocess
import sys

from tests.conftest import cli_main, configure, run_until_idle, status, voicedrop, write_wav


def test_status_json_has_the_documented_keys(root):
    write_wav(root / "inbox" / "alice" / "a.wav", 4.0)
    write_wav(root / "inbox" / "alice" / "b.wav", 2.0, seed=1)
    (root / "inbox" / "alice" / "c.wav").write_text("not audio")
    (root / "outbox" / "bob").mkdir(parents=True)
    run_until_idle(root)
    report = status(root)
    assert set(report["jobs"]) == {"pending", "running", "waiting", "failed", "done"}
    assert report["jobs"]["done"] == 2 and report["jobs"]["failed"] == 1
    alice = report["voices"]["alice"]
    assert alice["clips"] == 2 and abs(alice["duration"] - 6.0) < 0.01
    assert [r["file"] for r in alice["rejected"]] == ["c.wav"]
    assert any(w.startswith("b.wav: short") for w in alice["warnings"])
    assert report["voices"]["bob"]["clips"] == 0
    assert report["daemon"]["running"] is False


def test_status_text_and_voice_filter(root):
    write_wav(root / "inbox" / "alice" / "a.wav", 4.0)
    write_wav(root / "inbox" / "bob" / "b.wav", 4.0, seed=3)
    run_until_idle(root)
    text = voicedrop("status", "--root", str(root)).stdout
    assert "voice alice: 1 clips, 0.1 min of audio" in text
    # The test root has no Whisper model, so each clip's transcription waits for one.
    assert "0 pending, 0 running, 2 waiting, 2 done, 0 failed" in text
    assert "waiting  a.wav: the Whisper model" in text
    only = voicedrop("status", "--root", str(root), "--json", "bob").stdout
    assert '"bob"' in only and '"alice"' not in only


def test_doctor_reports_packages_models_device_and_folders(root):
    result = voicedrop("doctor", "--root", str(root), check=False)
    lines = result.stdout.splitlines()
    for name in (
        "python",
        "torch",
        "tortoise-tts",
        "faster-whisper",
        "audio decoders",
        "whisper model",
        "tts models",
        "device",
        "free disk",
        "folder",
    ):
        assert any(line[6:].startswith(name + ":") for line in lines), name
    assert any("tts models: missing autoregressive.pth" in line for line in lines)
    assert "fail  whisper model" in result.stdout
    assert result.returncode == 1
    store = root.parent / "store"
    configure(root, {"models": {"store": str(store)}})
    whisper = store / "whisper-base"
    whisper.mkdir(parents=True)
    (whisper / "model.bin").write_bytes(b"")
    healthy = voicedrop("doctor", "--root", str(root), check=False)
    assert healthy.returncode == 0, healthy.stdout


HEAVY_MODULES = ("torch", "scipy", "av", "tortoise", "faster_whisper", "ctranslate2")
STATUS_IMPORTS = """
import contextlib, io, sys
from daemon.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["status", "--root", sys.argv[1]]) == 0
print(",".join(name for name in {heavy!r} if name in sys.modules))
"""


def test_status_starts_without_the_ml_stack(root):
    """`voicedrop status` only reads the ledger and folders: it must answer at once, not pay
    for torch, scipy or PyAV (a fresh interpreter; this one has them loaded already)."""
    code = STATUS_IMPORTS.format(heavy=HEAVY_MODULES)
    result = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_a_mistyped_root_is_refused_and_nothing_is_created(tmp_path, capsys):
    typo = tmp_path / "roto"
    for command in (["run", "--until-idle"], ["status"], ["transcribe", "tom"]):
        assert cli_main([*command, "--root", str(typo)]) == 2
        assert "is not a voicedrop root" in capsys.readouterr().err
    assert not typo.exists()


def test_a_bad_log_rotation_is_a_one_line_error_not_a_traceback(root, capsys):
    configure(root, {"logging": {"rotation": "whenever it feels right"}})
    assert cli_main(["run", "--until-idle", "--root", str(root)]) == 2
    error = capsys.readouterr().err
    assert "logging.rotation: 'whenever it feels right' is neither a size" in error
    assert "Traceback" not in error
