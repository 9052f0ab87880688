"""Copy a wheel without the files under some folders (tortoise-tts's example voices, which the
GPU bench never reads), keeping its RECORD true so pip installs it as any other wheel.

    python -m bench.gpu.slim_wheel SOURCE.whl DEST_DIR --drop tortoise/voices/
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path


def slim_wheel(source: Path, destination: Path, dropped: tuple[str, ...]) -> Path:
    """Write `source`'s name into `destination`, leaving out every entry under `dropped`."""
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / source.name
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            if item.filename.startswith(dropped):
                continue
            data = old.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = _without_entries(data.decode(), dropped).encode()
            new.writestr(item, data)
    return target


def _without_entries(record: str, dropped: tuple[str, ...]) -> str:
    return "".join(line for line in record.splitlines(True) if not line.startswith(dropped))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--drop", action="append", required=True, help="a folder prefix")
    args = parser.parse_args()
    target = slim_wheel(args.source, args.destination, tuple(args.drop))
    print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
