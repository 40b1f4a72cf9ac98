#!/usr/bin/env bash
# The whole GPU benchmark in one go: tiny, medium, large and xl; deltaprop manual and autodiff in
# float32 (TF32 tensor cores, JAX's default for float32 matmuls on Ampere and newer) and in bf16;
# PyTorch eager (TF32 allowed, to match), Flax NNX, Equinox and plain JAX; the float32 (TF32) and
# bf16 ceilings of an 8192³ matmul. Budget: under 5 minutes on one H100 (about 55 compiled
# programs at 1–3 s each, and ~1.5 s of timing per row).
#
# Usage, from anywhere, on a machine with one NVIDIA GPU:
#   pip install -e '.[cuda12,bench]'          # jax[cuda12]; install a CUDA build of torch for
#                                             # the PyTorch row (a CPU torch is skipped on GPU)
#   bash experiments/bench_gpu.sh             # results in benchmarks/results/<gpu-name>/
#   bash experiments/bench_gpu.sh --out /tmp/gpu --peers jax-plain   # extra flags go through
#
# Writes benchmark.json, benchmark.md (the tables for BENCHMARKS.md) and benchmark.png.
set -euo pipefail
cd "$(dirname "$0")/.."

# JAX and torch share the GPU: let JAX's allocator take half of it instead of 75%.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.5}"
# No extra XLA flags are needed for one GPU; pass your own through XLA_FLAGS if you want them.
export XLA_FLAGS="${XLA_FLAGS:-}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"

python - <<'EOF'
import jax
if jax.default_backend() != "gpu":
    raise SystemExit(
        f"JAX sees no GPU (backend {jax.default_backend()!r}): pip install -e '.[cuda12]' first"
    )
print("JAX devices:", jax.devices())
try:
    import torch
    print("torch", torch.__version__, "CUDA available:", torch.cuda.is_available())
except ImportError:
    print("torch not installed: the PyTorch row will be skipped")
EOF

nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv || true

start=$SECONDS
python experiments/benchmark.py \
  --sizes tiny,medium,large,xl \
  --bf16 \
  --repeats 5 \
  --min-seconds 0.1 \
  --ceiling-size 8192 \
  "$@"
echo "GPU benchmark took $((SECONDS - start)) s"
