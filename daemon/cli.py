"""The `voicedrop` command: a thin layer that parses arguments and calls the stages."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from daemon import __version__
from daemon.core.config import TEMPLATE, ConfigError, Settings, load_settings
from daemon.core.ledger import LedgerDamaged, open_checked
from daemon.core.paths import Root, VoiceNameError, VoicePaths

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, VoiceNameError) as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LedgerDamaged as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicedrop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"voicedrop {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create config.yaml and the folders")
    init.add_argument("root", nargs="?", default=".", type=Path)
    init.set_defaults(handler=cmd_init)

    run = commands.add_parser("run", help="run the daemon on a root")
    add_root(run)
    run.add_argument("--until-idle", action="store_true", help="exit once nothing is left to do")
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser("status", help="show jobs and voices")
    add_root(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("voice", nargs="?")
    status.set_defaults(handler=cmd_status)

    transcribe = commands.add_parser("transcribe", help="rebuild a voice's dataset")
    add_root(transcribe)
    transcribe.add_argument("voice")
    transcribe.set_defaults(handler=cmd_transcribe)

    train = commands.add_parser("train", help="fine-tune a voice (tonight, or --now)")
    add_root(train)
    train.add_argument("voice")
    train.add_argument("--now", action="store_true", help="start now instead of in the window")
    train.set_defaults(handler=cmd_train)

    keep = commands.add_parser(
        "keep", help="use a clip the import held back as another speaker (see status)"
    )
    add_root(keep)
    keep.add_argument("voice")
    keep.add_argument("clip", help="the clip's name, as status shows it (grace.wav)")
    keep.set_defaults(handler=cmd_keep)

    render = commands.add_parser("render", help="render one text with a voice, now")
    add_root(render)
    render.add_argument("voice")
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("text", nargs="?", help="the text to speak")
    source.add_argument("--file", type=Path, help="a text file (front matter allowed)")
    render.add_argument("-o", "--output", type=Path, help="where to write the WAV")
    render.set_defaults(handler=cmd_render)

    models = commands.add_parser("models", help="model files")
    models_commands = models.add_subparsers(required=True, metavar="ACTION")
    tiny = models_commands.add_parser("tiny", help="write a tiny random model set (tests, demos)")
    tiny.add_argument("directory", type=Path)
    tiny.set_defaults(handler=cmd_models_tiny)
    use = models_commands.add_parser(
        "use", help="render a voice with a fine-tune (voicedrop's or ai-voice-cloning's *_gpt.pth)"
    )
    add_root(use)
    use.add_argument("voice")
    use.add_argument("file", type=Path, help="the autoregressive checkpoint")
    use.set_defaults(handler=cmd_models_use)
    rollback = models_commands.add_parser(
        "rollback", help="render a voice with the model its current one replaced (again: undo)"
    )
    add_root(rollback)
    rollback.add_argument("voice")
    rollback.set_defaults(handler=cmd_models_rollback)
    fetch = models_commands.add_parser(
        "fetch", help="download TorToiSe's released weights into the model store"
    )
    add_root(fetch)
    fetch.add_argument("--dir", type=Path, help="fetch into DIR instead of the store's tortoise/")
    fetch.add_argument("--only", nargs="+", metavar="NAME", help="only these files (e.g. dvae.pth)")
    fetch.set_defaults(handler=cmd_models_fetch)

    doctor = commands.add_parser("doctor", help="check dependencies, models, device, disk")
    add_root(doctor)
    doctor.set_defaults(handler=cmd_doctor)
    return parser


def add_root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=".", type=Path, help="working root (default: .)")


def open_root(path: Path) -> tuple[Root, Settings]:
    """An initialised root: a typo in --root must not start a second, empty one."""
    root = Root.at(path)
    if not root.config_file.is_file():
        raise ConfigError(
            f"{root.path} is not a voicedrop root (it has no config.yaml): pass the right "
            f"--root, or run `voicedrop init {path}` to make one there"
        )
    return root, load_settings(root.config_file)


def cmd_init(args: argparse.Namespace) -> int:
    root = Root.at(args.root)
    for folder in (root.inbox, root.outbox, root.voices, root.state):
        folder.mkdir(parents=True, exist_ok=True)
    if root.config_file.exists():
        load_settings(root.config_file)
        print(f"{root.config_file} exists and is valid; left as it is")
    else:
        shutil.copyfile(TEMPLATE, root.config_file)
        print(f"wrote {root.config_file}")
    print(f"drop clips into {root.inbox}/<voice>/ and texts into {root.outbox}/<voice>/")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.core.logs import setup_logging
    from daemon.service.daemon import Daemon
    from daemon.service.lock import AlreadyRunning

    root, settings = open_root(args.root)
    setup_logging(settings.logging, root.log_dir)
    try:
        return Daemon(root, settings).run(until_idle=args.until_idle)
    except AlreadyRunning as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1
    except (OSError, sqlite3.OperationalError) as exc:  # before the worker could take it
        free = shutil.disk_usage(root.path).free >> 20
        print(
            f"voicedrop: cannot start on {root.path}: {exc} ({free} MiB free on its disk); "
            "it starts once the disk has room and its folders are writable",
            file=sys.stderr,
        )
        return 1


def cmd_status(args: argparse.Namespace) -> int:
    from daemon.report.status import collect, render_text

    root, _ = open_root(args.root)
    report = collect(root, args.voice)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Queue a rebuild; run it here unless a daemon already serves the root."""
    from daemon.service.lock import running_pid
    from daemon.stages.transcribe import queue_rebuild

    root, settings = open_root(args.root)
    voice = root.voice(args.voice)
    ledger = open_checked(root.ledger_file)
    queued = queue_rebuild(ledger, voice)
    ledger.close()
    pid = running_pid(root)
    if pid is not None:
        print(f"queued {queued} clips of {voice.name}; the running daemon (pid {pid}) does them")
        return 0
    if run_in_foreground(root, settings, "transcribe"):
        return 1
    print(f"transcribed {queued} clips of {voice.name}")
    return 0


def run_in_foreground(root: Root, settings: Settings, command: str) -> int:
    """Run the queued jobs of the kinds `command` runs (see daemon.stages), here, holding the
    root's lock like a daemon would."""
    from daemon.core.logs import setup_logging
    from daemon.core.worker import StageContext, Worker
    from daemon.service.lock import AlreadyRunning, InstanceLock
    from daemon.stages import build_stages

    setup_logging(settings.logging, root.log_dir)
    lock = InstanceLock(root)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1
    try:
        stages = build_stages(StageContext(root, settings), foreground=command)
        Worker(root.ledger_file, settings, stages).drain()
    finally:
        lock.release()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Queue a fine-tune; with --now and no daemon running, run it here."""
    from daemon.core.clock import now_local
    from daemon.service.lock import running_pid
    from daemon.service.schedule import next_start
    from daemon.stages.train import queue_training

    root, settings = open_root(args.root)
    voice = root.voice(args.voice)
    ledger = open_checked(root.ledger_file)
    queued = queue_training(root, ledger, voice.name, now=args.now)
    ledger.close()
    if not queued and not args.now:
        print(f"voice {voice.name}: nothing new to train on (or no dataset yet)")
        return 0
    if not queued:
        print(f"voicedrop: voice {voice.name} has no dataset yet", file=sys.stderr)
        return 1
    pid = running_pid(root)
    if pid is not None or not args.now:
        upcoming = next_start(settings.training, now_local())
        who = f"the running daemon (pid {pid})" if pid else "the daemon"
        when = "now" if args.now else f"in the next window ({upcoming:%Y-%m-%d %H:%M})"
        print(f"queued fine-tuning of {voice.name}; {who} runs it {when}")
        return 0
    return run_in_foreground(root, settings, "train")


def cmd_keep(args: argparse.Namespace) -> int:
    """Record the decision in the voice's folder and rewrite the dataset lists with the clip's
    lines; the latents follow by themselves (their key covers the clips they are made from)."""
    from daemon.core.config import load_voice_settings
    from daemon.dataset.lists import Transcripts, write_lists
    from daemon.quality.held import NotHeld, SpeakerDecisions

    root, settings = open_root(args.root)
    voice = root.voice(args.voice)
    decisions = SpeakerDecisions(voice)
    name = args.clip if args.clip in decisions.clips else f"{Path(args.clip).stem}.wav"
    try:
        kept = decisions.keep(name)
    except NotHeld as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1
    transcripts = Transcripts(voice)
    if transcripts.entries:
        write_lists(voice, transcripts, load_voice_settings(settings, voice.config_file))
    pieces = len(transcripts.entries.get(name, {}).get("pieces", []))
    print(
        f"voice {voice.name} keeps {name} (similarity {kept.check.similarity:.2f}): its "
        f"{pieces} dataset lines are in the lists, and the next render's latents use it"
    )
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """The daemon's render path for one text, in the foreground."""
    import tempfile

    root, settings = open_root(args.root)
    voice = root.voice(args.voice)
    if args.file is not None:
        return render_file(root, settings, voice, args.file.resolve(), args.output)
    with tempfile.TemporaryDirectory(prefix="voicedrop-render-") as scratch:
        source = Path(scratch) / "text.txt"
        source.write_text(args.text, encoding="utf-8")
        return render_file(root, settings, voice, source, args.output)


def render_file(
    root: Root, settings: Settings, voice: VoicePaths, source: Path, output: Path | None
) -> int:
    """Without -o the audio goes beside the current folder's files under a free name (an
    earlier render is never overwritten unless -o names it); -o's extension picks the
    format (book.mp3), else `render.format` does."""
    import dataclasses

    from daemon.book.encode import Format
    from daemon.core.files import file_sha256
    from daemon.core.logs import setup_logging
    from daemon.core.paths import free_name
    from daemon.core.worker import Blocked, Rejected, StageContext
    from daemon.stages.render import RenderStage
    from daemon.tts.outputs import Outputs

    setup_logging(settings.logging, None)
    stage = RenderStage(StageContext(root, settings))
    try:
        manuscript = stage.prepare(voice, source)
        if output is not None and output.suffix.lower() in {f.suffix for f in Format}:
            fmt = next(f for f in Format if f.suffix == output.suffix.lower())
            manuscript = dataclasses.replace(manuscript, format=fmt)
        suffix = manuscript.format.suffix
        target = output.resolve() if output else free_name(Path.cwd(), f"{source.stem}{suffix}")
        outputs = Outputs.of(target, target.suffix)
        stage.renderer.check_ready(voice, manuscript.tts, manuscript.settings.decoder)
        sidecar = stage.renderer.render(voice, manuscript, outputs, file_sha256(source))
    except (Blocked, Rejected) as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {target} ({sidecar['audio_seconds']:.1f} s of speech)")
    return 0


def cmd_models_tiny(args: argparse.Namespace) -> int:
    from daemon.tts.tiny import write_tiny_models

    for path in write_tiny_models(args.directory):
        print(f"wrote {path}")
    return 0


def cmd_models_use(args: argparse.Namespace) -> int:
    """Check the file strictly against the voice's model dimensions, then copy it in."""
    from daemon.core.config import load_voice_settings
    from daemon.tts.spec import BadCheckpoint, ModelSpec
    from daemon.weights.store import tortoise_models
    from daemon.weights.voice_models import use_model

    root, settings = open_root(args.root)
    voice = root.voice(args.voice)
    tts = load_voice_settings(settings, voice.config_file).tts
    try:
        spec = ModelSpec.read(tortoise_models(root, settings, tts.models_dir, tts.decoder).folder)
        record = use_model(voice.models, args.file.resolve(), spec, "models use")
    except BadCheckpoint as exc:
        print(f"voicedrop: {exc}; voice {voice.name} keeps the model it had", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"voicedrop: could not put the model into {voice.models} ({exc.strerror or exc}); "
            f"the file is fine, voice {voice.name} keeps the model it had",
            file=sys.stderr,
        )
        return 1
    print(f"voice {voice.name} now renders with {args.file} (sha256 {record.sha256[:12]}…)")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    """Swap the voice's model for the one it replaced; not while that voice is training."""
    from daemon.weights.voice_models import NoPreviousModel, rollback

    root, _ = open_root(args.root)
    voice = root.voice(args.voice)
    trainer = training_pid(root, voice.name)
    if trainer is not None:
        print(
            f"voicedrop: voice {voice.name} is being fine-tuned (pid {trainer}), which may "
            "replace its model: roll back once that run is over",
            file=sys.stderr,
        )
        return 1
    try:
        record = rollback(voice.models)
    except NoPreviousModel as exc:
        print(f"voicedrop: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"voicedrop: could not put the previous model back in {voice.models} "
            f"({exc.strerror or exc}); voice {voice.name} keeps the model it had",
            file=sys.stderr,
        )
        return 1
    print(
        f"voice {voice.name} renders with its previous model again (sha256 "
        f"{record.sha256[:12]}…); `voicedrop models rollback {voice.name}` again undoes this"
    )
    return 0


def training_pid(root: Root, voice: str) -> int | None:
    """The pid of the daemon (or `voicedrop train`) running a train job of `voice`."""
    from daemon.core.jobs import JobKind, JobState
    from daemon.service.lock import running_pid

    pid = running_pid(root)
    if pid is None:
        return None  # a job left running by a killed daemon is not running
    ledger = open_checked(root.ledger_file)
    try:
        jobs = ledger.jobs(kind=JobKind.TRAIN, voice=voice, state=JobState.RUNNING)
    finally:
        ledger.close()
    return pid if jobs else None


def cmd_models_fetch(args: argparse.Namespace) -> int:
    from daemon.core.logs import setup_logging
    from daemon.weights.fetch import FetchError, fetch_into
    from daemon.weights.store import tortoise_store

    root, settings = open_root(args.root)
    setup_logging(settings.logging, None)
    folder = args.dir.resolve() if args.dir else tortoise_store(root, settings)
    try:
        outcome = fetch_into(folder, args.only)
    except FetchError as exc:
        print(f"voicedrop: models fetch: {exc}", file=sys.stderr)
        return 1
    for name in outcome.present:
        print(f"{folder / name}: already there, sha256 checked")
    for name in outcome.fetched:
        print(f"{folder / name}: fetched, sha256 checked")
    for why in outcome.failed.values():
        print(f"voicedrop: models fetch: {why}", file=sys.stderr)
    return 1 if outcome.failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Also before `init`: it checks the machine as much as the root."""
    from daemon.report.doctor import run_checks

    root = Root.at(args.root)
    settings = load_settings(root.config_file)
    checks = run_checks(root, settings)
    for check in checks:
        print(check)
    return 1 if any(check.level == "fail" for check in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
