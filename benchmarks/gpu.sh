#!/usr/bin/env bash
# The GPU smoke run, unattended, in under 13 minutes: benchmarks/gpu.py on CUDA (the offline pipeline, then the
# timings a GPU makes meaningful and the projected NYUv2 wall time), written to benchmarks/results/gpu.json, then
# the field-scale Table 6's live steps (benchmarks/results/field_table6_gpu.json).
# Needs an environment with the project installed (make creates .venv; PYTHON=... names another) and a GPU
# torch can use (runtime.device cuda's refusal says why not). Extra arguments go to gpu.py (e.g. --steps 3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c "import depthcore, torch" || { echo "error: $PYTHON cannot import depthcore and torch: run make first, or set PYTHON" >&2; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
timeout --signal=INT 480 "$PYTHON" benchmarks/gpu.py "$@"
# The field's Table 6 (benchmarks/field_table6.py): each backbone's live training step (no-grad forward, probe
# forward + backward, AdamW) measured per recipe at batch 8 under float16 autocast, and the GPU hours it projects.
exec timeout --signal=INT 300 "$PYTHON" benchmarks/field_table6.py --device cuda --steps 3 \
    --out benchmarks/results/field_table6_gpu.json
