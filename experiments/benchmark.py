"""Time deltaprop's training step (manual and autodiff, float32 and bf16) against peer libraries.

    python experiments/benchmark.py                       # tiny, medium, large (+ xl on GPU)
    python experiments/benchmark.py --sizes tiny --quick  # a smoke run in seconds
    python experiments/benchmark.py --peers pytorch-eager,jax-plain --no-bf16 --grads manual

Peers need `pip install -e '.[bench]'` (torch, flax, equinox); a missing one is skipped with a
note. Writes benchmark.json, benchmark.md (tables) and benchmark.png (bar chart) into --out,
default benchmarks/results/<device>. See BENCHMARKS.md for the method and the goals.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax

# benchmarking.py and peers.py sit beside this script, so its directory (sys.path[0]) finds them.
from benchmarking import (
    PEERS,
    WORKLOADS,
    BenchConfig,
    device_name,
    format_markdown,
    run_benchmark,
    write_report,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help=f"comma-separated, from {','.join(WORKLOADS)} "
                        "(default: tiny,medium,large; plus xl on GPU; tiny with --quick)")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help=f"comma-separated from {','.join(PEERS)}, or 'none'")
    parser.add_argument("--grads", default="manual,autodiff",
                        help="deltaprop gradients to time: manual, autodiff or both")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also time deltaprop with bf16 matmuls (float32 master weights)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=0.2,
                        help="each repeat runs at least this long")
    parser.add_argument("--ceiling-size", type=int,
                        help="n of the n^3 ceiling matmul (default 2048 on CPU, 8192 on GPU)")
    parser.add_argument("--torch-tf32", action=argparse.BooleanOptionalAction, default=True,
                        help="on CUDA, let torch use TF32 for float32 matmuls as XLA does")
    parser.add_argument("--torch-threads", type=int,
                        help="torch.set_num_threads for the PyTorch row (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps and repeats")
    parser.add_argument("--out", type=Path, help="default: benchmarks/results/<device>")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    args = parse_args(argv)
    on_gpu = jax.default_backend() == "gpu"
    default_sizes = "tiny" if args.quick else "tiny,medium,large" + (",xl" if on_gpu else "")
    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    cfg = BenchConfig(
        sizes=(args.sizes or default_sizes).split(","),
        peers=peers,
        grads=args.grads.split(","),
        bf16=args.bf16,
        repeats=args.repeats,
        min_seconds=args.min_seconds,
        ceiling_size=args.ceiling_size,
        quick=args.quick,
        torch_tf32=args.torch_tf32,
        torch_threads=args.torch_threads,
    )
    report = run_benchmark(cfg)
    out = args.out or Path("benchmarks/results") / device_name()
    paths = write_report(report, out)
    print(format_markdown(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return out


if __name__ == "__main__":
    main()
