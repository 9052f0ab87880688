#!/usr/bin/env bash
# Run HERE, on a machine that reaches PyPI: fills .whl/ (git-ignored) with the wheels the GPU
# machine lacks to run bench/gpu_bench.py, for its CPython 3.12 on manylinux x86_64.
#
# The GPU machine has its own torch, torchaudio, numpy, scipy, scikit-learn, numba, einops,
# tqdm, regex, requests, pyyaml, safetensors, accelerate and lazy-loader (see the device's
# KINDS.md); it lacks tortoise-tts and what tortoise imports beyond those, and its transformers
# (5.x) and huggingface-hub (1.x) are too new for tortoise-tts 3.0.0. Versions below are this
# project's pinned ones (the .venv), so both machines run the same tortoise stack; except
# tokenizers: no cp312 wheel below 0.14 exists, tortoise only calls Tokenizer.from_file and
# encode/decode on it, and bench/gpu/run.sh lifts transformers 4.31's "<0.14" import check.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DEST=.whl
TARGET=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
WHEELS=(
  transformers==4.31.0 huggingface-hub==0.36.2 tokenizers==0.23.2
  rotary-embedding-torch==0.9.1 unidecode==1.4.0
  inflect==7.6.0 typeguard==4.6.1 jaraco.functools==4.6.0 more-itertools==11.2.1
  librosa==0.11.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 soxr==1.1.0 audioread==3.1.0
  pooch==1.9.0 platformdirs==4.14.9 decorator==5.3.2
  loguru==0.7.3
)
SDIST_ONLY=(tortoise-tts==3.0.0 progressbar==2.5)  # pure Python, no wheel on PyPI

rm -rf "$DEST" && mkdir -p "$DEST"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: "${TARGET[@]}" -d "$DEST" "${WHEELS[@]}"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
"$PY" -m pip wheel --quiet --no-deps -w "$BUILD" "${SDIST_ONLY[@]}"
# tortoise's wheel carries 37 MB of example voices the bench never reads: dropped
"$PY" -m bench.gpu.slim_wheel "$BUILD"/tortoise_tts-3.0.0-*.whl "$DEST" --drop tortoise/voices/
mv "$BUILD"/progressbar-2.5-*.whl "$DEST"/

# The set installs as run.sh installs it, for CPython 3.12 manylinux: every tag fits, one
# version of each package.
"$PY" -m pip install --quiet --no-index --no-deps --only-binary=:all: "${TARGET[@]}" \
  --target "$BUILD/site" "$DEST"/*.whl
ls -1 "$DEST"
du -sh "$DEST"
