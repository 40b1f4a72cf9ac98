"""Score a trained run on its own test split (installed as `deltaprop-eval`), as
lightning-hydra-template's eval.py.

    python experiments/eval.py run=outputs/train/default/<time>
    python experiments/eval.py run=<sweep dir>/members/member_3 split=val
    python experiments/eval.py run=<run dir> csv=labelled.csv

The run's saved config rebuilds its data; writes <run>/eval/<split>/metrics.json and
predictions.csv and a W&B run (job_type=eval) in the training run's group; see
deltaprop/run/evaluate.py. Exit codes (deltaprop.errors): 0 done, 2 bad input.
"""

from pathlib import Path

from deltaprop.cli import evaluate

if __name__ == "__main__":
    evaluate(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
