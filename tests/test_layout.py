"""The package's boundaries, checked on the source: no import cycles, no SQL outside the
ledger, and nothing under core/ or service/ pulls in torch, scipy or PyAV when imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "daemon"
HEAVY = ("torch", "scipy", "av", "tortoise", "faster_whisper")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def top_level_imports(path: Path, known: set[str]) -> set[str]:
    """daemon modules imported when `path` is imported (not those inside functions)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daemon"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
    return found


def test_no_module_imports_itself_in_a_cycle():
    known = modules()
    graph = {name: top_level_imports(path, set(known)) & set(known) for name, path in known.items()}
    for name in graph:  # a package imports its __init__ first: that edge is not a cycle
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*trail, dep])
            if dep not in state:
                visit(dep, [*trail, dep])
        state[name] = "closed"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_sql_is_written_only_in_the_ledger():
    offenders = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path.name != "ledger.py" and (".execute(" in path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_core_and_service_import_no_ml_or_audio_stack():
    names = sorted(n for n in modules() if n.split(".")[1:2] in (["core"], ["service"]))
    names.remove("daemon.service.daemon")  # it wires in the stages: checked below
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_the_daemon_starts_without_torch():
    """torch comes with the first render or fine-tune, not with start-up or an import."""
    code = "import sys, daemon.service.daemon, daemon.cli; print('torch' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr


def test_asking_for_the_device_does_not_import_torch():
    """Whisper runs in a daemon that may never render: it must not pay torch's 500 MB."""
    code = (
        "import sys; from daemon.core.device import resolve_device; "
        "print(resolve_device('auto'), 'torch' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.split()[1:] == ["False"], loaded.stderr
