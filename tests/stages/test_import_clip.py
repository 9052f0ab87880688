"""The import stage through the real daemon: formats in, normalised clips out, bad input
explained in rejected/, originals never lost."""

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from daemon.audio import clips
from daemon.core.jobs import JobKind, JobState, SpeakerCheck
from daemon.core.ledger import Ledger
from daemon.core.paths import Root
from daemon.tts.latents import voice_clips
from tests.conftest import (
    WHISPER_BASE,
    configure,
    ffmpeg,
    ffmpeg_encode,
    imported_clips,
    run_until_idle,
    status,
    tortoise_clips,
    voiced_signal,
    voicedrop,
    wait_for,
    write_wav,
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_formats(folder: Path) -> dict[str, float]:
    """One clip per format the import must read; returns name → duration in seconds."""
    durations = {}
    for subtype, rate in (
        ("PCM_16", 8000),
        ("PCM_24", 16000),
        ("PCM_32", 44100),
        ("FLOAT", 48000),
        ("PCM_16", 22050),
    ):
        name = f"{subtype.lower()}_{rate}.wav"
        write_wav(folder / name, 2.0, rate, seed=rate, subtype=subtype)
        durations[name] = 2.0
    stereo = np.stack([voiced_signal(2.5, 44100, 1), voiced_signal(2.5, 44100, 2)], axis=1)
    sf.write(folder / "stereo.wav", stereo, 44100)
    six = np.stack([voiced_signal(2.0, 48000, s) for s in range(6)], axis=1)
    sf.write(folder / "surround.wav", six, 48000, subtype="PCM_24")
    durations |= {"stereo.wav": 2.5, "surround.wav": 2.0}
    source = write_wav(folder.parent / "source.wav", 3.0, 44100, seed=7)
    for name, options in (
        ("clip.flac", ()),
        ("clip.mp3", ("-b:a", "128k")),
        ("clip.ogg", ("-c:a", "libvorbis")),
        ("clip.m4a", ("-c:a", "aac")),
    ):
        ffmpeg_encode(source, folder / name, *options)
        durations[name] = 3.0
    return durations


def test_every_common_format_becomes_a_22050_hz_float_clip(root):
    inbox = root / "inbox" / "formats"
    durations = make_formats(inbox)
    hashes = {name: sha256(inbox / name) for name in durations}
    run_until_idle(root)
    report = status(root)
    assert report["jobs"]["failed"] == 0 and report["voices"]["formats"]["clips"] == len(durations)
    voice = root / "voices" / "formats"
    for name, seconds in durations.items():
        clip = voice / "clips" / f"{Path(name).stem}.wav"
        info = sf.info(clip)
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "FLOAT"), name
        assert abs(info.duration - seconds) < 0.06, (name, info.duration)
        assert sha256(voice / "originals" / name) == hashes[name], "original changed"
    assert list(inbox.iterdir()) == []


def test_tortoise_voice_clips_import_with_their_analysis(root):
    clips = tortoise_clips("tom")
    assert clips, "tortoise-tts ships voices/tom"
    for clip in clips:
        (root / "inbox" / "tom").mkdir(exist_ok=True)
        (root / "inbox" / "tom" / clip.name).write_bytes(clip.read_bytes())
    run_until_idle(root)
    report = status(root)["voices"]["tom"]
    expected = sum(sf.info(c).duration for c in clips)
    assert report["clips"] == len(clips)
    assert abs(report["duration"] - expected) < 0.05 * len(clips)


def bad_corpus(folder: Path, outside: Path) -> dict[str, str]:
    """At least 15 kinds of unusable input; returns file name → phrase its reason must hold."""
    folder.mkdir(parents=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("these are my notes, not audio\n" * 20)
    (folder / "noise.mp3").write_bytes(np.random.default_rng(1).bytes(50_000))
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x64",
        "-frames:v",
        "1",
        "-f",
        "image2",
        "-c:v",
        "png",
        str(folder / "picture.wav"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-t",
        "2",
        "-an",
        str(folder / "video_only.mp4"),
    )
    sf.write(folder / "header_only.wav", np.zeros(0, np.float32), 22050)
    whole = write_wav(folder.parent / "whole.wav", 6.0).read_bytes()
    (folder / "cut_short.wav").write_bytes(whole[: len(whole) // 3])
    flac = ffmpeg_encode(folder.parent / "whole.wav", folder.parent / "whole.flac").read_bytes()
    (folder / "cut_short.flac").write_bytes(flac[: len(flac) // 3])
    write_wav(folder / "blip.wav", 0.3)
    sf.write(folder / "zeros.wav", np.zeros(44100, np.float32), 22050)
    hiss = 1e-4 * np.random.default_rng(2).standard_normal(44100)
    sf.write(folder / "hiss.wav", hiss.astype(np.float32), 22050, subtype="FLOAT")
    sf.write(folder / "dc.wav", np.full(44100, 0.5, np.float32), 22050, subtype="FLOAT")
    nan = voiced_signal(2.0)
    nan[1000:1010] = np.nan
    sf.write(folder / "nan.wav", nan, 22050, subtype="FLOAT")
    inf = voiced_signal(2.0)
    inf[5] = np.inf
    sf.write(folder / "inf.wav", inf, 22050, subtype="FLOAT")
    write_wav(folder / "telephone.wav", 2.0, rate=4000)
    (folder / "report.docx").write_bytes(b"PK\x03\x04 not really a document")
    (outside / "real.wav").write_bytes(write_wav(outside / "src.wav", 2.0).read_bytes())
    os.symlink(outside / "real.wav", folder / "link.wav")
    return {
        "empty.wav": "is empty (0 bytes)",
        "notes.wav": "cannot read notes.wav as audio",
        "noise.mp3": "Failed to find two consecutive MPEG audio frames",
        "picture.wav": "holds no audio, only: video (png)",
        "video_only.mp4": "holds no audio, only: video (h264)",
        "header_only.wav": "audio header but holds no samples",
        "cut_short.wav": "header announces 6.00 s but only 2.00 s",
        "cut_short.flac": "flac: decode_frame() failed",
        "blip.wav": "too short: 0.30 s",
        "zeros.wav": "nothing but silence: after removing DC offset the peak is -120",
        "hiss.wav": "nothing but silence",
        "dc.wav": "nothing but silence",
        "nan.wav": "contains 10 NaN samples",
        "inf.wav": "contains 1 infinite samples",
        "telephone.wav": "sample rate 4000 Hz is below the minimum",
        "report.docx": ".docx is not an audio file type",
        "link.wav": "is a symbolic link",
    }


def test_bad_input_is_rejected_with_a_specific_reason_and_kept(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = root / "inbox" / "bad"
    expected = bad_corpus(folder, outside)
    before = {name: (folder / name).read_bytes() for name in expected if name != "link.wav"}
    target_before = sha256(outside / "real.wav")
    run_until_idle(root)  # exits 0: bad input never stops the daemon
    rejected = folder / "rejected"
    reasons = sorted(p.name.removesuffix(".reason.txt") for p in rejected.glob("*.reason.txt"))
    assert reasons == sorted(expected)
    for name, phrase in expected.items():
        reason = (rejected / f"{name}.reason.txt").read_text()
        assert phrase in reason, (name, reason)
        if name in before:
            assert (rejected / name).read_bytes() == before[name], f"{name} changed"
    assert (rejected / "link.wav").is_symlink()
    assert sha256(outside / "real.wav") == target_before
    assert imported_clips(root, "bad") == []
    write_wav(folder / "good.wav", 2.0)
    run_until_idle(root)
    report = status(root)["voices"]["bad"]
    assert report["clips"] == 1 and len(report["rejected"]) == len(expected)


def test_same_content_twice_is_imported_once(root):
    inbox = root / "inbox" / "dup"
    write_wav(inbox / "first.wav", 2.0)
    (inbox / "copy.wav").write_bytes((inbox / "first.wav").read_bytes())
    run_until_idle(root)
    (kept,) = imported_clips(root, "dup")
    reasons = list((inbox / "rejected").glob("*.reason.txt"))
    assert len(reasons) == 1 and "already imported" in reasons[0].read_text()
    (original,) = (root / "voices/dup/originals").iterdir()
    assert original.stem == kept.stem
    (inbox / "again.wav").write_bytes(original.read_bytes())
    run_until_idle(root)
    assert len(imported_clips(root, "dup")) == 1
    assert len(list((inbox / "rejected").glob("*.reason.txt"))) == 2


def test_name_clashes_never_overwrite(root):
    inbox = root / "inbox" / "clash"
    write_wav(inbox / "take.wav", 2.0, seed=1)
    run_until_idle(root)
    write_wav(inbox / "take.wav", 2.5, seed=2)
    run_until_idle(root)
    names = sorted(p.name for p in (root / "voices/clash/originals").iterdir())
    assert names == ["take-2.wav", "take.wav"]
    assert [p.name for p in imported_clips(root, "clash")] == ["take-2.wav", "take.wav"]
    assert abs(sf.info(root / "voices/clash/clips/take-2.wav").duration - 2.5) < 0.01


def test_a_failing_import_is_retried_then_rejected_with_the_error(root):
    inbox = root / "inbox" / "stuck"
    write_wav(inbox / "clip.wav", 2.0)
    (root / "voices" / "stuck").mkdir(parents=True)
    (root / "voices" / "stuck" / "clips").write_text("a file where a folder belongs")
    result = run_until_idle(root)
    assert result.stderr.count("retrying in") == 2
    reason = (inbox / "rejected" / "clip.wav.reason.txt").read_text()
    assert "failed 3 times" in reason and "FileExistsError" in reason
    assert status(root)["jobs"]["failed"] == 1


def test_a_broken_voice_yaml_makes_clips_wait_until_fixed(root, daemon):
    voice = root / "voices" / "picky"
    voice.mkdir(parents=True)
    (voice / "voice.yaml").write_text("import:\n  min_secnds: 1\n")
    configure(root, {"watch": {"rescan_every": 1}})  # waiting jobs are probed every second
    daemon.start()
    write_wav(root / "inbox" / "picky" / "clip.wav", 2.0)
    wait_for(lambda: status(root)["jobs"]["waiting"] == 1, timeout=30)
    waiting = status(root)["voices"]["picky"]["waiting"]
    assert "voice.yaml: import.min_secnds: unknown key" in waiting[0]["reason"]
    assert (root / "inbox" / "picky" / "clip.wav").exists()
    (voice / "voice.yaml").write_text("import:\n  min_seconds: 1\n")
    wait_for(lambda: imported_clips(root, "picky"), timeout=30)


def test_voice_yaml_rules_apply_per_voice(root):
    voice = root / "voices" / "strict"
    voice.mkdir(parents=True)
    (voice / "voice.yaml").write_text("import:\n  min_seconds: 2.5\n")
    write_wav(root / "inbox" / "strict" / "short.wav", 2.0)
    write_wav(root / "inbox" / "relaxed" / "short.wav", 2.0)
    run_until_idle(root)
    assert imported_clips(root, "strict") == []
    assert len(imported_clips(root, "relaxed")) == 1
    reason = (root / "inbox/strict/rejected/short.wav.reason.txt").read_text()
    assert "at least 2.5 s" in reason


def test_analysis_warnings_follow_tortoise_guidance(root):
    inbox = root / "inbox" / "guide"
    write_wav(inbox / "short.wav", 1.5)
    write_wav(inbox / "long.wav", 20.0)
    write_wav(inbox / "good.wav", 9.0)
    run_until_idle(root)
    warnings = status(root)["voices"]["guide"]["warnings"]
    assert any(w.startswith("short.wav: short") for w in warnings)
    assert any(w.startswith("long.wav: long") for w in warnings)
    assert not any(w.startswith("good.wav") for w in warnings)


def test_a_file_replaced_during_its_import_loses_neither_file(root, monkeypatch):
    """`mv other.wav inbox/v/long.wav` while long.wav is decoded. The user's mv is made to
    land exactly mid-import by running it from inside the decoder (a stand-in for timing)."""
    first = write_wav(root / "inbox" / "swap" / "long.wav", 3.0, seed=1)
    first_bytes = first.read_bytes()
    other = write_wav(root / "other.wav", 1.5, seed=2)
    real_decode = clips.decode

    def decode_while_replaced(path, *limits):
        if other.exists():
            os.replace(other, first)  # the user's mv, mid-import
        return real_decode(path, *limits)

    monkeypatch.setattr(clips, "decode", decode_while_replaced)
    run_until_idle(root)
    originals = root / "voices" / "swap" / "originals"
    kept = {p.name: p.read_bytes() for p in originals.iterdir()}
    assert first_bytes in kept.values(), "the first file's bytes are nowhere"
    assert len(kept) == 2, "the replacement is imported as a drop of its own"
    for clip in imported_clips(root, "swap"):  # each clip is made from its own original
        assert abs(sf.info(clip).duration - sf.info(originals / clip.name).duration) < 0.01
    assert list((root / "inbox" / "swap").glob("*.wav")) == []


def test_a_copy_that_paused_and_goes_on_mid_import_is_imported_whole_once(root, monkeypatch):
    """A copier that stalled longer than watch.stable_for writes the rest while the file is
    imported. The copier's second half is made to land inside the decoder (a stand-in for
    timing): the partial file must be neither imported nor rejected."""
    whole = write_wav(root / "whole.wav", 3.0, seed=3).read_bytes()
    dropped = root / "inbox" / "stall" / "talk.wav"
    dropped.parent.mkdir(parents=True)
    dropped.write_bytes(whole[: len(whole) // 2])
    real_decode = clips.decode

    def decode_while_the_copy_goes_on(path, *limits):
        try:
            return real_decode(path, *limits)  # the half file: "cut short"
        finally:
            if dropped.exists() and dropped.stat().st_size < len(whole):
                with open(dropped, "r+b") as handle:  # the copier's open file: same inode
                    handle.seek(0, os.SEEK_END)
                    handle.write(whole[len(whole) // 2 :])

    monkeypatch.setattr(clips, "decode", decode_while_the_copy_goes_on)
    run_until_idle(root)
    (original,) = (root / "voices" / "stall" / "originals").iterdir()
    assert original.read_bytes() == whole
    (clip,) = imported_clips(root, "stall")
    assert abs(sf.info(clip).duration - 3.0) < 0.01
    assert not (root / "inbox" / "stall" / "rejected").exists()


def dataset_lines(root: Path, voice: str) -> list[str]:
    dataset = root / "voices" / voice / "dataset"
    return [
        line
        for split in ("train.txt", "validation.txt")
        for line in (dataset / split).read_text(encoding="utf-8").splitlines()
    ]


def speaker_checks(root: Path, voice: str) -> dict[str, SpeakerCheck | None]:
    """Each imported clip's speaker check, as its import job recorded it."""
    ledger = Ledger(root / ".voicedrop" / "ledger.sqlite3")
    try:
        jobs = ledger.jobs(kind=JobKind.IMPORT, voice=voice, state=JobState.DONE)
        return {job.data.clip.name: job.data.analysis.speaker for job in jobs}
    finally:
        ledger.close()


def test_a_clip_of_another_speaker_is_held_back_until_kept(root):
    """tom's four clips, then one of train_grace: hers is flagged and left out of the latents'
    clip set and the dataset lists (also after a lost ledger) until `voicedrop keep`."""
    configure(root, {"whisper": {"model": str(WHISPER_BASE), "language": "en"}})
    inbox = root / "inbox" / "tom"
    inbox.mkdir(parents=True)
    for clip in tortoise_clips("tom"):
        shutil.copyfile(clip, inbox / clip.name)
    run_until_idle(root)
    shutil.copyfile(tortoise_clips("train_grace")[0], inbox / "grace.wav")
    run_until_idle(root)

    checks = speaker_checks(root, "tom")
    assert checks["4.wav"] is not None and not checks["4.wav"].mismatch, "tom matches tom"
    assert checks["grace.wav"].mismatch and checks["grace.wav"].compared_with == 4
    voice = Root.at(root).voice("tom")
    (root / ".voicedrop" / "ledger.sqlite3").unlink()  # the decision lives in the folders
    run_until_idle(root)
    report = status(root)["voices"]["tom"]
    (held,) = report["held"]
    assert held["clip"] == "grace.wav" and held["similarity"] < held["threshold"]
    assert held["threshold"] <= held["typical_low"] <= held["typical_high"]
    (warning,) = [w for w in report["warnings"] if "speaker_mismatch" in w]
    assert warning.startswith("grace.wav: speaker_mismatch") and "voicedrop keep tom" in warning
    text = voicedrop("status", "--root", str(root)).stdout
    assert "5 clips (1 held back)" in text and "warning  grace.wav: speaker_mismatch" in text
    assert [clip.name for clip in voice_clips(voice)] == ["1.wav", "2.wav", "3.wav", "4.wav"]
    lines = dataset_lines(root, "tom")
    assert any(line.startswith("audio/1_") for line in lines)
    assert not any(line.startswith("audio/grace_") for line in lines)

    kept = voicedrop("keep", "--root", str(root), "tom", "grace.wav")
    assert "keeps grace.wav" in kept.stdout
    assert "grace.wav" in [clip.name for clip in voice_clips(voice)]
    assert any(line.startswith("audio/grace_") for line in dataset_lines(root, "tom"))
    report = status(root)["voices"]["tom"]
    assert report["held"] == [] and not any("speaker_mismatch" in w for w in report["warnings"])
    again = voicedrop("keep", "--root", str(root), "tom", "grace.wav", check=False)
    assert again.returncode == 1 and "holds no clip 'grace.wav' back" in again.stderr
