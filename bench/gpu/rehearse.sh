#!/usr/bin/env bash
# Run HERE, after prepare.sh: the GPU machine's call rehearsed on this CPU, so a broken
# wheel set or import costs no device time. It builds (once) a CPython 3.12 venv holding the
# GPU machine's versions of what the benches import from its own site-packages (torch and
# torchaudio 2.11.0, numpy 2.x, transformers 5.x and huggingface-hub 1.x, which the carried
# wheels must shadow, and the rest of its list that tortoise, librosa and the daemon touch),
# then runs run.sh with it at reduced lengths: the render bench's --quick on one preset and
# the training bench's --cpu. Needs a python3.12 (pyenv's here) and PyPI; ~5 GB in $VENV.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY312=${PY312:-$(command -v python3.12 || echo /root/.pyenv/versions/3.12.1/bin/python3.12)}
VENV=${VENV:-/tmp/gpu-rehearsal-venv}
OUT=${OUT:-/tmp/gpu-rehearsal-out}
if [ ! -x "$VENV/bin/python3" ]; then
  "$PY312" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # versions as the GPU machine's image held them in 2026-11 (README.md, "GPU benchmark")
  "$VENV/bin/pip" install -q torch==2.11.0 torchaudio==2.11.0 numpy scipy einops tqdm regex \
    requests pyyaml safetensors accelerate lazy-loader numba scikit-learn msgpack psutil \
    prometheus-client "huggingface_hub>=1" "transformers>=5" tokenizers==0.23.2
fi
rm -rf "$OUT"
PATH="$VENV/bin:$PATH" OUT="$OUT" SITE="$OUT/site" TRAIN_ARGS="--cpu --steps 2" \
  bash bench/gpu/run.sh --quick --presets ultra_fast --codes 4
ls -1 "$OUT"
