"""Nielsen's learning slowdown, reproduced: one sigmoid neuron, quadratic cost against cross-entropy.

    python experiments/learning_slowdown.py experiment=learning_slowdown
    python experiments/learning_slowdown.py experiment=learning_slowdown \
        learning_slowdown.starts=[[2,2]] learning_slowdown.epochs=1000

Trains the neuron x = 1 -> y = 0 from each (w, b) start with both costs (gradients by
manual_grad), prints each run's output at epoch 0, after learning_slowdown.report_epoch epochs
and at the end, and the first epoch its output is within learning_slowdown.threshold of y; writes
learning_slowdown.png (cost and output against the epoch) and learning_slowdown.json (every
curve) to the run directory. Exit codes: 0 done, 2 bad input.
"""

from pathlib import Path

from deltaprop.cli import learning_slowdown

if __name__ == "__main__":
    learning_slowdown(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
