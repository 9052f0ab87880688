"""What `voicedrop status` reports: read from the ledger and the folders, never from the daemon,
so it works the same whether the daemon runs or not."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import soundfile as sf

from daemon.core.config import shorten
from daemon.core.files import file_sha256
from daemon.core.jobs import JobKind, JobState, Outcome
from daemon.core.ledger import Ledger, open_checked
from daemon.core.paths import Root, VoicePaths
from daemon.dataset.lists import Transcripts
from daemon.quality.audit import read_audit
from daemon.quality.held import MISMATCH, SpeakerDecisions, held_clips, mismatch_warning
from daemon.service.lock import running_pid
from daemon.tts.outputs import CHECK_SUFFIX, Outputs, is_text, name_problem

DEFAULT_REAL_TIME_FACTOR = 0.3  # Whisper's speed on a CPU until a voice's own is measured
ACTIVE = (JobState.PENDING, JobState.RUNNING, JobState.WAITING)
QUEUE_SHOWN = 50  # active jobs listed (the counts cover the rest)
RECENT_RENDERS = 5  # renders listed per voice, newest first
LOSS_POINTS = 200  # points of the loss chart: its shape, small enough to poll every 2 s
METRICS_TAIL_BYTES = 1 << 20  # of a run's metrics.jsonl read for the chart (~5000 steps)
LOSS_KEYS = ("step", "loss_total", "val_loss_total")
METRICS_FILE = "metrics.jsonl"  # daemon/training/trainer.py's METRICS (importing it loads torch)


def collect(root: Root, only_voice: str | None = None) -> dict[str, Any]:
    """Raises LedgerDamaged (the CLI says what the daemon will do about it)."""
    ledger = open_checked(root.ledger_file)
    try:
        names, refused = root.voice_names()
        names = sorted(set(names) | {job.voice for job in ledger.jobs()})
        if only_voice is not None:
            root.voice(only_voice)
            names = [only_voice]
        pid = running_pid(root)
        return {
            "root": str(root.path),
            "daemon": {
                "running": pid is not None,
                "pid": pid,
                "config_changed": pid is not None and config_changed(root),
            },
            "fetch": fetch_report(root),
            "models": models_report(root),
            "disk": disk_report(root),
            "chunk_cache": cache_report(root),
            "jobs": ledger.counts(),
            "queue": queue_report(ledger, only_voice),
            "voices": {name: voice_report(root.voice(name), ledger) for name in names},
            "refused_voices": refused,
            "failed": [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "voice": j.voice,
                    "file": j.input_path.name,
                    "reason": j.last_error,
                }
                for j in ledger.jobs(state=JobState.FAILED)
                if only_voice in (None, j.voice)
            ],
        }
    finally:
        ledger.close()


def queue_report(ledger: Ledger, only_voice: str | None) -> list[dict[str, Any]]:
    """Jobs not finished, running first, each with why it waits: the first QUEUE_SHOWN."""
    queue = []
    for state in (JobState.RUNNING, JobState.PENDING, JobState.WAITING):
        queue += [
            {
                "id": job.id,
                "kind": job.kind,
                "voice": job.voice,
                "file": job.input_path.name,
                "state": job.state,
                "reason": job.last_error,
            }
            for job in ledger.jobs(state=state)
            if only_voice in (None, job.voice)
        ]
    return queue[:QUEUE_SHOWN]


def cache_report(root: Root) -> dict[str, Any]:
    """The chunk cache's size against its budget (render.cache_max_gb)."""
    from daemon.book.cache import GIB, ChunkCache
    from daemon.core.config import ConfigError, load_settings

    use = ChunkCache(root.chunk_cache).use()
    try:
        budget = load_settings(root.config_file).render.cache_max_gb
    except ConfigError:
        budget = None
    return {
        "chunks": use.chunks,
        "gb": round(use.bytes / GIB, 3),
        "budget_gb": budget,
    }


def models_report(root: Root) -> dict[str, Any]:
    """Where the TorToiSe and Whisper weights were found, and what is missing (as `doctor`)."""
    from daemon.core.config import ConfigError, load_settings
    from daemon.tts.spec import missing_weights
    from daemon.weights.store import ModelMissing, dvae_file, tortoise_models, whisper_model

    try:
        settings = load_settings(root.config_file)
    except ConfigError as exc:
        return {"problem": str(exc)}
    tts = settings.tts
    found = tortoise_models(root, settings, tts.models_dir, tts.decoder)
    try:
        whisper, whisper_problem = whisper_model(root, settings, check_name=False), None
    except ModelMissing as exc:
        whisper, whisper_problem = None, str(exc)
    dvae = dvae_file(root, settings, tts.models_dir)
    return {
        "tts": {
            "folder": str(found.folder),
            "source": found.source.value,
            "missing": missing_weights(found.folder, tts.decoder),
        },
        "whisper": whisper,
        "whisper_problem": whisper_problem,
        "fine_tuning": str(dvae) if dvae.is_file() else None,
    }


def disk_report(root: Root) -> dict[str, float]:
    """The root's disk: what renders, clips and training still have room for."""
    from daemon.book.cache import GIB

    usage = shutil.disk_usage(root.path)
    return {"free_gb": round(usage.free / GIB, 2), "total_gb": round(usage.total / GIB, 2)}


def fetch_report(root: Root) -> dict[str, Any] | None:
    """The daemon's background fetch of model weights (tts.fetch: auto), if it ran."""
    from daemon.weights.fetch import fetch_status_file

    try:
        return json.loads(fetch_status_file(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def voice_report(voice: VoicePaths, ledger: Ledger) -> dict[str, Any]:
    clips, warnings, duration = 0, [], 0.0
    for job in ledger.jobs(kind=JobKind.IMPORT, voice=voice.name, state=JobState.DONE):
        clip, analysis = job.data.clip, job.data.analysis
        if job.data.outcome != Outcome.IMPORTED or clip is None or not clip.exists():
            continue
        clips += 1
        if analysis is None:  # a rebuilt ledger knows the clip, not its analysis
            duration += sf.info(clip).duration
            continue
        duration += analysis.duration
        warnings += [
            f"{clip.name}: {warning}"
            for warning in analysis.warnings
            if not warning.startswith(MISMATCH)  # speaker.json says whether it still holds
        ]
    held = held_report(voice)
    warnings += [f"{entry['clip']}: {entry['warning']}" for entry in held]
    return {
        "clips": clips,
        "duration": round(duration, 2),
        "warnings": warnings,
        "held": held,
        "dataset": dataset_report(voice, ledger),
        "training": training_report(voice, ledger),
        "rejected": rejected_files(voice),
        "refused_texts": refused_texts(voice),
        "flagged_renders": flagged_renders(voice),
        "waiting": [
            {"file": job.input_path.name, "kind": job.kind, "reason": job.last_error}
            for job in ledger.jobs(voice=voice.name, state=JobState.WAITING)
        ],
        "rendering": render_progress(voice, ledger),
        "renders": recent_renders(voice),
    }


def held_report(voice: VoicePaths) -> list[dict[str, Any]]:
    """Clips held back as another speaker (voices/<voice>/speaker.json), with the numbers."""
    decisions = SpeakerDecisions(voice)
    return [
        {
            "clip": name,
            **asdict(decisions.clips[name].check),
            "warning": mismatch_warning(voice.name, name, decisions.clips[name].check),
        }
        for name in sorted(decisions.held())
        if (voice.clips / name).exists()
    ]


def recent_renders(voice: VoicePaths) -> list[dict[str, Any]]:
    """The newest RECENT_RENDERS renders, by their sidecars (written last, so a listed render
    is finished), with the render check's scores where it ran."""
    if not voice.outbox.is_dir():
        return []
    dated = []
    for text in voice.outbox.iterdir():
        sidecar = Outputs.of(text).sidecar
        if is_text(text) and (written := modified_at(sidecar)) is not None:
            dated.append((written, text.name, sidecar))
    renders = []
    for written, text, sidecar in sorted(dated, reverse=True)[:RECENT_RENDERS]:
        record = read_json_object(sidecar)
        audio = record.get("output")
        if not isinstance(audio, str) or not (voice.outbox / audio).is_file():
            continue
        renders.append(
            {
                "file": audio,
                "text": text,
                "seconds": record.get("audio_seconds"),
                "rendered_at": datetime.fromtimestamp(written).isoformat(timespec="seconds"),
                "check": check_scores(record.get("check")),
            }
        )
    return renders


def check_scores(check: object) -> dict[str, Any] | None:
    """The render check in numbers: the worst kept chunk's character error rate and speaker
    similarity (None: the check was off for this render)."""
    try:
        kept = [c["attempts"][c["kept"]] for c in check["chunks"] if c is not None]
        cers = [a["cer"] for a in kept]
        similarities = [a["similarity"] for a in kept if a["similarity"] is not None]
    except (KeyError, IndexError, TypeError):  # no check (it was off), or an edited sidecar
        return None
    return {
        "passed": check.get("passed"),
        "failed_chunks": check.get("failed_chunks", []),
        "max_cer": max(cers, default=None),
        "min_similarity": min(similarities, default=None),
    }


def loss_history(voice: VoicePaths) -> list[dict[str, float]]:
    """The latest training run's losses by step for the page's chart: at most LOSS_POINTS
    training and LOSS_POINTS validation points (validation is measured only every so many
    steps, so it is thinned apart), spread over the last METRICS_TAIL_BYTES of its metrics,
    and the last step."""
    runs = [(modified_at(path), path) for path in voice.training.glob(f"*/{METRICS_FILE}")]
    runs = [(written, path) for written, path in runs if written is not None]
    if not runs:
        return []
    records = []
    for line in read_tail(max(runs)[1], METRICS_TAIL_BYTES).splitlines():
        try:
            record = json.loads(line)
            records.append({k: record[k] for k in LOSS_KEYS if k in record})
        except (ValueError, TypeError):
            continue  # the line the tail cut, or one being written
    records = [r for r in records if "step" in r]
    validated = [r for r in records if "val_loss_total" in r]
    points = {r["step"]: r for r in [*thinned(records), *thinned(validated), *records[-1:]]}
    return [points[step] for step in sorted(points)]


def thinned(records: list[dict[str, float]]) -> list[dict[str, float]]:
    """Every n-th record, n chosen to leave at most LOSS_POINTS."""
    return records[:: max(1, -(-len(records) // LOSS_POINTS))]


def modified_at(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def read_tail(path: Path, limit: int) -> str:
    with open(path, "rb") as file:
        file.seek(max(0, file.seek(0, 2) - limit))
        return file.read(limit).decode("utf-8", "replace")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is gone, unreadable or not an object."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def render_progress(voice: VoicePaths, ledger: Ledger) -> list[dict[str, Any]]:
    """Texts under way (running, or paused between chunks), with chunks done and an ETA."""
    under_way = []
    for job in ledger.jobs(kind=JobKind.RENDER, voice=voice.name):
        progress = job.data.progress
        if progress is not None and job.state in (JobState.RUNNING, JobState.PENDING):
            under_way.append({"file": job.input_path.name, "state": job.state, **asdict(progress)})
    return under_way


def dataset_report(voice: VoicePaths, ledger: Ledger) -> dict[str, Any]:
    entries = Transcripts(voice).entries
    held = held_clips(voice)
    pieces = [p for name, entry in entries.items() if name not in held for p in entry["pieces"]]
    language_file = voice.dataset / "language.json"
    languages = {entry["language"] for entry in entries.values()}
    if language_file.exists():
        languages.add(json.loads(language_file.read_text(encoding="utf-8"))["language"])
    return {
        "train": count_lines(voice.dataset / "train.txt"),
        "validation": count_lines(voice.dataset / "validation.txt"),
        "minutes": round(sum(p["end"] - p["start"] for p in pieces) / 60, 2),
        "language": ", ".join(sorted(languages)) or None,
        **transcription_progress(ledger, voice.name),
        "unknown_tokens": [
            f"audio/{p['file']}: {p['unknown']!r} map to [UNK], training would drop this line"
            for p in pieces
            if p["unknown"]
        ],
        **suspect_report(voice, pieces),
    }


def suspect_report(voice: VoicePaths, pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """Lines whose audio may not say their text (dataset/audit.json), whether the lists leave
    them out, and how many lines were never heard again (transcribed before the audit)."""
    audit = read_audit(voice)
    heard = {(p.file, p.text) for p in audit.pieces}
    return {
        "suspect": [
            {
                "file": f"audio/{p.file}",
                "text": p.text,
                "heard": p.heard,
                "cer": p.cer,
                "similarity": p.similarity,
            }
            for p in audit.suspects
        ],
        "suspect_left_out": audit.drop_suspect,
        "unheard": sum((p["file"], p["text"]) not in heard for p in pieces),
    }


def training_report(voice: VoicePaths, ledger: Ledger) -> dict[str, Any]:
    from daemon.core.clock import now_local
    from daemon.core.config import ConfigError, load_settings, load_voice_settings
    from daemon.service.schedule import next_start

    jobs = ledger.jobs(kind=JobKind.TRAIN, voice=voice.name)
    finished = [j for j in jobs if j.state == JobState.DONE and j.data.outcome == Outcome.TRAINED]
    active = [j for j in jobs if j.state in ACTIVE]
    last = finished[-1].data if finished else None
    progress = active[-1].data.progress if active else None
    try:
        settings = load_voice_settings(load_settings(voice.root.config_file), voice.config_file)
        upcoming = next_start(settings.training, now_local())
    except ConfigError:
        upcoming = None
    return {
        "last": None
        if last is None
        else {
            "finished_at_text": last.finished_at_text,
            "model_sha256": last.model_sha256,
            "losses": last.losses,
            "warnings": list(last.warnings),
            "promoted": last.promoted,
            "decision": last.decision,
            "model": None if last.model is None else str(last.model),
        },
        "next": upcoming.isoformat(timespec="minutes") if upcoming else None,
        "state": active[-1].state if active else None,
        "progress": None if progress is None else dataclasses.asdict(progress),
        "note": active[-1].last_error if active else None,
        "warnings": list(last.warnings) if last else [],
        "loss_history": loss_history(voice),
    }


def transcription_progress(ledger: Ledger, voice: str) -> dict[str, Any]:
    """Clips transcribed and to go, with an ETA from this voice's measured speed."""
    jobs = ledger.jobs(kind=JobKind.TRANSCRIBE, voice=voice)
    done = [j for j in jobs if j.state == JobState.DONE and j.data.seconds is not None]
    todo = [j for j in jobs if j.state in (JobState.PENDING, JobState.RUNNING)]
    audio = sum(j.data.audio_seconds for j in done)
    factor = sum(j.data.seconds for j in done) / audio if audio else DEFAULT_REAL_TIME_FACTOR
    remaining = sum(sf.info(j.input_path).duration for j in todo if j.input_path.exists())
    return {
        "transcribed": len([j for j in jobs if j.state == JobState.DONE]),
        "to_transcribe": len(todo),
        "eta_seconds": round(remaining * factor, 1),
        "problems": [j.data.problem for j in done if j.data.problem],
    }


def count_lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.exists() else 0


def refused_texts(voice: VoicePaths) -> list[dict[str, str]]:
    """Texts in the outbox that are not rendered because of their names, by the rule intake
    applies: read from the folder, as a note beside such a text cannot always be written."""
    if not voice.outbox.is_dir():
        return []
    texts = sorted(path for path in voice.outbox.iterdir() if is_text(path))
    return [
        {"file": text.name, "reason": problem}
        for text in texts
        if text.is_file() and (problem := name_problem(text))
    ]


def flagged_renders(voice: VoicePaths) -> list[dict[str, str]]:
    """Renders written with chunks that still failed the render check: the `.check.txt`
    beside them is the truth, so listening and deleting it clears the flag."""
    if not voice.outbox.is_dir():
        return []
    flagged = []
    for note in sorted(voice.outbox.glob(f"*{CHECK_SUFFIX}")):
        try:
            summary = note.read_text(encoding="utf-8").partition("\n")[0]
        except (OSError, UnicodeDecodeError):
            continue
        flagged.append({"file": rendered_audio(note), "check": summary})
    return flagged


def rendered_audio(note: Path) -> str:
    """The audio file a note beside a text is about, as its sidecar names it."""
    sidecar = note.with_name(note.name.removesuffix(CHECK_SUFFIX) + ".json")
    try:
        output = json.loads(sidecar.read_text(encoding="utf-8")).get("output")
    except (OSError, ValueError, AttributeError):
        output = None
    return output if isinstance(output, str) else sidecar.with_suffix(".wav").name


def rejected_files(voice: VoicePaths) -> list[dict[str, str]]:
    """What sits in rejected/ now: the folder is the truth, so a file the user removed is gone."""
    if not voice.rejected.is_dir():
        return []
    reports = []
    for reason_file in sorted(voice.rejected.glob("*.reason.txt")):
        name = reason_file.name.removesuffix(".reason.txt")
        reason = reason_file.read_text(encoding="utf-8", errors="replace").strip()
        reports.append({"file": name, "reason": reason})
    return reports


def dataset_line(dataset: dict[str, Any]) -> str:
    line = (
        f"  dataset: {dataset['train']} train / {dataset['validation']} validation lines, "
        f"{dataset['minutes']:.1f} min, language {dataset['language'] or 'not yet known'}"
    )
    if dataset["to_transcribe"]:
        line += (
            f"; transcribing {dataset['to_transcribe']} more clips "
            f"(ETA {dataset['eta_seconds']:.0f} s)"
        )
    return line


def suspect_lines(name: str, dataset: dict[str, Any]) -> list[str]:
    fate = (
        "left out of training"
        if dataset["suspect_left_out"]
        else "kept (dataset.drop_suspect: true leaves it out)"
    )
    lines = [
        f"  suspect  {p['file']}: CER {p['cer']:.2f}, speaker similarity "
        f"{'-' if p['similarity'] is None else format(p['similarity'], '.2f')}, heard "
        f"{shorten(p['heard'])!r} for {shorten(p['text'])!r}; {fate}"
        for p in dataset["suspect"]
    ]
    if dataset["unheard"]:
        lines.append(
            f"  dataset  {dataset['unheard']} lines were transcribed before voicedrop heard "
            f"pieces again; `voicedrop transcribe {name}` checks them"
        )
    return lines


def training_line(training: dict[str, Any]) -> str:
    last = training["last"]
    line = "  training: " + (
        f"last {last['finished_at_text']}, loss {last['losses'].get('loss_total', 0):.3f}"
        if last
        else "never fine-tuned"
    )
    progress = training["progress"]
    if training["state"] == JobState.RUNNING and progress:
        line += (
            f"; running step {progress['step']}/{progress['total_steps']}, epoch "
            f"{progress['epoch']:.1f}, loss {progress['loss_total']:.3f}, "
            f"ETA {progress.get('eta_s') or 0:.0f} s"
        )
    elif training["state"]:
        line += f"; {training['state']}: {training['note'] or 'queued'}"
    return line + f"; next window {training['next'] or 'none'}"


def promotion_lines(last: dict[str, Any] | None) -> list[str]:
    """Whether the last fine-tune is the model renders use, and why (or why not)."""
    if last is None or last["promoted"] is None:
        return []
    if last["promoted"]:
        return [f"  promoted the last fine-tune: {last['decision']}"]
    return [
        f"  not promoted the last fine-tune, kept as {last['model']}: {last['decision']}; "
        "renders use the current model"
    ]


def rendering_line(render: dict[str, Any]) -> str:
    eta = "" if render["eta_s"] is None else f", ETA {render['eta_s']:.0f} s"
    paused = " (paused)" if render["state"] == JobState.PENDING else ""
    return f"  rendering {render['file']}: chunk {render['chunk']}/{render['chunks']}{eta}{paused}"


def config_changed(root: Root) -> bool:
    """config.yaml differs from the one the running daemon read (it needs a restart)."""
    try:
        running = root.running_config.read_text(encoding="utf-8").strip()
        return bool(running) and running != file_sha256(root.config_file)
    except OSError:
        return False


def render_text(report: dict[str, Any]) -> str:
    daemon = report["daemon"]
    jobs = report["jobs"]
    state = f"running (pid {daemon['pid']})" if daemon["running"] else "stopped"
    if daemon["config_changed"]:
        state += "; config.yaml changed since it started: restart it to use the change"
    lines = [
        f"root:    {report['root']}",
        f"daemon:  {state}",
        "jobs:    " + ", ".join(f"{jobs[state]} {state}" for state in jobs),
    ]
    if report["fetch"]:
        lines.append(f"models:  {report['fetch']['message']}")
    cache = report["chunk_cache"]
    if cache["chunks"]:
        lines.append(
            f"chunks:  {cache['chunks']} rendered chunks kept, {cache['gb']:.2f} of "
            f"{cache['budget_gb']} GB (render.cache_max_gb)"
        )
    for name, voice in report["voices"].items():
        minutes = voice["duration"] / 60
        held = f" ({len(voice['held'])} held back)" if voice["held"] else ""
        lines.append(f"\nvoice {name}: {voice['clips']} clips{held}, {minutes:.1f} min of audio")
        lines.append(dataset_line(voice["dataset"]))
        lines.append(training_line(voice["training"]))
        lines += [f"  warning  {w}" for w in voice["warnings"]]
        lines += [f"  training {w}" for w in voice["training"]["warnings"]]
        lines += promotion_lines(voice["training"]["last"])
        lines += [f"  dataset  {p}" for p in voice["dataset"]["problems"]]
        lines += [f"  dataset  {u}" for u in voice["dataset"]["unknown_tokens"]]
        lines += suspect_lines(name, voice["dataset"])
        lines += [f"  rejected {r['file']}: {r['reason']}" for r in voice["rejected"]]
        lines += [f"  refused  {r['file']!r}: {r['reason']}" for r in voice["refused_texts"]]
        lines += [f"  flagged  {f['file']}: {f['check']}" for f in voice["flagged_renders"]]
        lines += [f"  waiting  {w['file']}: {w['reason']}" for w in voice["waiting"]]
        lines += [rendering_line(r) for r in voice["rendering"]]
    for name, why in report["refused_voices"].items():
        lines.append(f"\nrefused voice folder {name!r}: {why}")
    failed = [f for f in report["failed"] if f["kind"] != JobKind.IMPORT]
    lines += [f"\nfailed {f['kind']} {f['voice']}/{f['file']}: {f['reason']}" for f in failed]
    return "\n".join(lines)
