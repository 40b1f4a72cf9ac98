"""Apply a finished training run's model to new data (installed as `deltaprop-predict`).

    python experiments/predict.py run=outputs/train/default/<time> dataset=csv dataset.path=new.csv
    python experiments/predict.py run=<sweep dir>/members/member_0 dataset=csv dataset.path=new.csv
    python experiments/predict.py run=outputs/train/default/<time> dataset=moons   # the whole set

Writes predictions.csv (and metrics.json when the data have the label column) to its own run
directory; see deltaprop/run/predict.py. Exit codes (deltaprop.errors): 0 done, 2 bad input.
"""

from pathlib import Path

from deltaprop.cli import predict

if __name__ == "__main__":
    predict(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
