"""`voicedrop models fetch` and the daemon's background fetch, against a local stand-in for
the Hugging Face Hub (`HubStandIn`: the real hub cannot be reached from tests) serving the
tiny model set under the released names. The tiny files are not the released ones, so
dvae.pth's pinned sha256 is swapped for the tiny file's in-process (`PINNED_SHA256`), and the
store gets the tiny set's spec.json, which no hub has."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon.cli import main as cli_main
from daemon.tts.spec import SPEC_FILE, BadCheckpoint
from daemon.weights import fetch
from daemon.weights.fetch import RELEASE_NAMES
from tests.conftest import (
    DaemonProcess,
    HubStandIn,
    configure,
    run_until_idle,
    status,
    tiny_hub_files,
    tortoise_clips,
    voicedrop,
    wait_for,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub(tiny_models: Path, monkeypatch: pytest.MonkeyPatch):
    with HubStandIn(tiny_hub_files(tiny_models)) as stand_in:
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        monkeypatch.setitem(fetch.PINNED_SHA256, "dvae.pth", sha256(tiny_models / "dvae.pth"))
        yield stand_in


@pytest.fixture
def store(root: Path, tmp_path: Path) -> Path:
    """The root's model store (empty); returns its tortoise/ folder."""
    configure(root, {"models": {"store": str(tmp_path / "store")}})
    return tmp_path / "store" / "tortoise"


def fetch_cli(root: Path, *extra: str) -> int:
    return cli_main(["models", "fetch", "--root", str(root), *extra])


def test_fetch_checks_every_file_records_it_and_the_engine_loads_them(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path, capsys
) -> None:
    from daemon.tts.engine import Engine

    assert fetch_cli(root) == 0
    assert f"{store / 'autoregressive.pth'}: fetched, sha256 checked" in capsys.readouterr().out
    manifest = json.loads((store / "manifest.json").read_text())["files"]
    assert sorted(manifest) == sorted(RELEASE_NAMES)
    for name in RELEASE_NAMES:
        assert (store / name).read_bytes() == (tiny_models / name).read_bytes()
        assert manifest[name]["sha256"] == sha256(tiny_models / name)
        assert manifest[name]["revision"] == (
            HubStandIn.COMMIT if name != "dvae.pth" else fetch.RELEASES[-1].revision
        )
    assert not list((store / fetch.PARTIAL_DIR).iterdir())

    hub.gets.clear()
    assert fetch_cli(root) == 0
    assert "already there, sha256 checked" in capsys.readouterr().out
    assert hub.gets == []  # nothing downloaded twice

    shutil.copy(tiny_models / SPEC_FILE, store)  # the tiny dims: not something a hub serves
    Engine(store, device="cpu").load()


def test_an_interrupted_download_resumes_where_it_stopped(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path
) -> None:
    size = (tiny_models / "autoregressive.pth").stat().st_size
    hub.cut_after["autoregressive.pth"] = size // 2
    assert fetch_cli(root, "--only", "autoregressive.pth") == 0
    starts = [start for name, start in hub.gets if name == "autoregressive.pth"]
    assert starts[0] == 0 and 0 < starts[1] <= size // 2  # the second request asked for the rest
    assert sha256(store / "autoregressive.pth") == sha256(tiny_models / "autoregressive.pth")


def test_a_fetch_killed_mid_file_resumes_in_the_next_run(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path, tmp_path: Path
) -> None:
    hub.rate = 2_000_000  # bytes per second: the kill lands mid-file
    command = [sys.executable, "-m", "daemon", "models", "fetch", "--root", str(root)]
    process = subprocess.Popen(
        [*command, "--only", "diffusion_decoder.pth"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_ENDPOINT": hub.url},
    )
    partial_dir = store / fetch.PARTIAL_DIR

    def partial_size() -> int:
        parts = list(partial_dir.glob("*.part")) if partial_dir.is_dir() else []
        return parts[0].stat().st_size if parts else 0

    wait_for(lambda: partial_size() > 1_500_000, timeout=30, every=0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = partial_size()
    assert not (store / "diffusion_decoder.pth").exists()
    hub.rate = None
    hub.gets.clear()
    assert fetch_cli(root, "--only", "diffusion_decoder.pth") == 0
    assert hub.gets == [("diffusion_decoder.pth", kept)]
    assert sha256(store / "diffusion_decoder.pth") == sha256(tiny_models / "diffusion_decoder.pth")


def test_a_corrupted_download_is_refused_and_not_kept(
    root: Path, store: Path, hub: HubStandIn, capsys
) -> None:
    hub.corrupt.add("clvp2.pth")
    assert fetch_cli(root, "--only", "clvp2.pth", "vocoder.pth") == 1
    error = capsys.readouterr().err
    assert "clvp2.pth: refused" in error and "nothing was kept" in error
    assert not (store / "clvp2.pth").exists()
    assert not list((store / fetch.PARTIAL_DIR).iterdir())
    manifest = json.loads((store / "manifest.json").read_text())["files"]
    assert "clvp2.pth" not in manifest and "vocoder.pth" in manifest


def test_offline_is_one_clear_line(root: Path, store: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    assert fetch_cli(root) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["voicedrop: models fetch: cannot reach http://127.0.0.1:9 (ConnectionError)"]
    assert time.monotonic() - started < 10  # no long retry loop before saying so


def test_a_store_file_changed_after_the_fetch_is_never_loaded(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path
) -> None:
    from daemon.tts.checkpoints import build_clvp, load_strict
    from daemon.tts.spec import ModelSpec

    assert fetch_cli(root, "--only", "clvp2.pth") == 0
    with open(store / "clvp2.pth", "r+b") as handle:  # same size, other bytes
        handle.seek(1000)
        handle.write(b"\x00" * 16)
    with pytest.raises(BadCheckpoint, match="voicedrop models fetch"):
        load_strict(build_clvp(ModelSpec.tiny()), store / "clvp2.pth")
    doctor = voicedrop("doctor", "--root", str(root), check=False).stdout
    assert "fail  clvp2.pth: MISMATCH" in doctor
    assert fetch_cli(root, "--only", "clvp2.pth") == 0  # fetched again
    assert sha256(store / "clvp2.pth") == sha256(tiny_models / "clvp2.pth")


def test_a_damaged_manifest_counts_as_unverified_and_the_next_fetch_rechecks(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path
) -> None:
    assert fetch_cli(root, "--only", "vocoder.pth") == 0
    (store / "manifest.json").write_text("{not json")
    doctor = voicedrop("doctor", "--root", str(root), check=False).stdout
    assert "warn  vocoder.pth: unverified" in doctor
    hub.gets.clear()
    assert fetch_cli(root, "--only", "vocoder.pth") == 0
    assert hub.gets == []  # checked against the hub's sha256, not downloaded again
    manifest = json.loads((store / "manifest.json").read_text())["files"]
    assert manifest["vocoder.pth"]["sha256"] == sha256(tiny_models / "vocoder.pth")


def test_doctor_shows_each_file_with_its_sha256_status(
    root: Path, store: Path, hub: HubStandIn
) -> None:
    assert fetch_cli(root, "--only", "autoregressive.pth", "clvp2.pth") == 0
    (store / "vocoder.pth").write_bytes(b"copied by hand")
    lines = voicedrop("doctor", "--root", str(root), check=False).stdout.splitlines()
    assert any(line.startswith("ok    autoregressive.pth: verified") for line in lines)
    assert any(line.startswith("ok    clvp2.pth: verified") for line in lines)
    assert any(line.startswith("warn  vocoder.pth: unverified") for line in lines)
    assert any(line.startswith("warn  diffusion_decoder.pth: missing") for line in lines)
    assert any(f"tts models: missing diffusion_decoder.pth in {store}" in line for line in lines)


def add_voice(root: Path, voice: str = "tom") -> None:
    for clip in tortoise_clips(voice)[:2]:
        target = root / "inbox" / voice / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, target)


def test_the_daemon_fetches_in_the_background_and_renders_once_the_files_are_in(
    root: Path, store: Path, hub: HubStandIn, tiny_models: Path, tmp_path: Path
) -> None:
    """tts.fetch: auto. The daemon's dvae.pth check uses the real pinned sha256, which the
    tiny stand-in cannot have: it is refused, said in `status`, and rendering goes on."""
    configure(root, {"models": {"store": str(store.parent)}, "tts": {"fetch": "auto", "seed": 1}})
    store.mkdir(parents=True)
    shutil.copy(tiny_models / SPEC_FILE, store)
    hub.rate = 4_000_000  # a few seconds for the set: the daemon is ready long before
    add_voice(root)
    text = root / "outbox" / "tom" / "hello.txt"
    text.parent.mkdir(parents=True)
    text.write_text("Hello there.")
    daemon = DaemonProcess(root, tmp_path / "daemon.log")
    try:
        daemon.start(env={"HF_ENDPOINT": hub.url})
        assert "voicedrop ready" in daemon.output()
        assert not (store / "autoregressive.pth").exists()  # ready before the fetch ends
        wait_for(lambda: text.with_suffix(".wav").exists(), timeout=300, every=0.5)

        def models_line() -> str:
            lines = voicedrop("status", "--root", str(root)).stdout.splitlines()
            return next((line for line in lines if line.startswith("models:")), "")

        # polled: a minute later the daemon tries again, and the line says "fetching" a while
        line = wait_for(lambda: "could not" in (found := models_line()) and found, every=1)
        assert line.startswith("models:  could not fetch dvae.pth") and "pinned" in line
        assert sorted(p.name for p in store.glob("*.pth")) == sorted(
            name for name in RELEASE_NAMES if name != "dvae.pth"
        )
    finally:
        daemon.stop()


def test_fetch_never_stays_offline_and_renders_name_the_fetch_command(
    root: Path, store: Path, hub: HubStandIn
) -> None:
    add_voice(root)
    (root / "outbox" / "tom").mkdir(parents=True)
    (root / "outbox" / "tom" / "a.txt").write_text("Hello.")
    run_until_idle(root)
    assert hub.heads == [] and hub.gets == []
    waiting = status(root)["voices"]["tom"]["waiting"]
    assert any("voicedrop models fetch" in w["reason"] for w in waiting)
    assert status(root)["fetch"] is None


def test_an_offline_daemon_starts_imports_and_says_so_in_one_status_line(
    root: Path, store: Path, daemon: DaemonProcess
) -> None:
    """tts.fetch: auto with nothing listening at the hub's address (conftest points
    HF_ENDPOINT at a closed local port)."""
    configure(root, {"models": {"store": str(store.parent)}, "tts": {"fetch": "auto"}})
    add_voice(root)
    started = time.monotonic()
    daemon.start()
    assert time.monotonic() - started < 30
    wait_for(lambda: len(list((root / "voices" / "tom" / "clips").glob("*.wav"))) == 2)
    wait_for(lambda: (status(root).get("fetch") or {}).get("state") == "offline")
    lines = [
        line
        for line in voicedrop("status", "--root", str(root)).stdout.splitlines()
        if line.startswith("models:")
    ]
    assert len(lines) == 1
    assert "cannot reach http://127.0.0.1:9" in lines[0] and "trying again in 1 min" in lines[0]
    assert "voicedrop models fetch" in lines[0]
