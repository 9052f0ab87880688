#!/usr/bin/env bash
# Run ON THE GPU MACHINE, from the repository root, in one call: installs the wheels
# bench/gpu/prepare.sh put in .whl/ (carried with the call) into /tmp/site, then runs
# bench/gpu_bench.py (renders) and bench/train_gpu_bench.py (fine-tuning), each under a time
# limit. Everything it writes goes to $OUT (bench/out/ when OUT is unset): environment.txt,
# gpu_bench.json, gpu_bench.log, train_gpu.json, train_gpu.log.
#
#   bash bench/gpu/run.sh [gpu_bench.py arguments...]
#   (through the device tool: command "bash bench/gpu/run.sh", carry [".whl"], timeout_s 600)
#
# LIMIT_S (default 340) kills the render bench; BUDGET_S (default 280) makes it skip the cases
# it predicts would end later, so a cut-short run still leaves whole cases in the JSON.
# TRAIN_LIMIT_S (default 200) kills the training bench, which writes its JSON after each
# combination; TRAIN_LIMIT_S=0 skips it; TRAIN_ARGS are its arguments (e.g. "--cpu --steps 2"
# to check the script on a machine without CUDA). Both fit the device tool's 600 s a call.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/out}
LIMIT_S=${LIMIT_S:-340}
BUDGET_S=${BUDGET_S:-280}
TRAIN_LIMIT_S=${TRAIN_LIMIT_S:-200}
read -r -a TRAIN_ARGS <<< "${TRAIN_ARGS:-}"
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT"
shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  echo "no wheels in .whl/: run bench/gpu/prepare.sh here first and carry .whl" >&2
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" "${wheels[@]}"
# transformers 4.31 refuses at import any tokenizers >= 0.14, and no cp312 wheel older than
# 0.14 exists; tortoise uses only Tokenizer.from_file and encode/decode, unchanged since.
table="$SITE/transformers/dependency_versions_table.py"
pin='"tokenizers": "tokenizers>=0.11.1,!=0.11.3,<0.14"'
grep -qF "$pin" "$table" || { echo "unexpected $table: tokenizers pin not found" >&2; exit 2; }
sed -i "s/$pin/\"tokenizers\": \"tokenizers>=0.11.1,!=0.11.3\"/" "$table"
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv || true
  python3 - <<'PY'
import importlib.metadata as md, sys
import torch
import tortoise.api  # fails here, before the bench, if the carried set does not import
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
for name in ("tortoise-tts", "transformers", "tokenizers", "huggingface-hub", "accelerate", "numpy"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "absent")
PY
} 2>&1 | tee "$OUT/environment.txt"
status=0
timeout --signal=TERM --kill-after=20 "$LIMIT_S" \
  python3 -m bench.gpu_bench --out "$OUT" --budget-s "$BUDGET_S" "$@" 2>&1 \
  | tee "$OUT/gpu_bench.log" || status=$?
if [ "$TRAIN_LIMIT_S" -gt 0 ]; then  # runs even when the render bench failed: its own figures
  timeout --signal=TERM --kill-after=20 "$TRAIN_LIMIT_S" \
    python3 -m bench.train_gpu_bench --out "$OUT" "${TRAIN_ARGS[@]}" 2>&1 | tee "$OUT/train_gpu.log" || status=$?
fi
exit "$status"
