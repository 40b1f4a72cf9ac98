"""Train a sigmoid/BCE network: the main job (installed as `deltaprop-train`).

    python experiments/train.py                                     # the defaults in conf/
    python experiments/train.py model.hidden=[32,32] optimizer=adam
    python experiments/train.py trainer.num_seeds=4 'sweep.lr=[0.1,1.0]'   # 8 members, one program
    python experiments/train.py -m optimizer.lr=0.01,0.1,1.0 seed=0,1   # a Hydra sweep: six runs

Exit codes (deltaprop.errors): 0 done, 2 bad input, 3 every member diverged, 130 interrupted.
"""

from pathlib import Path

from deltaprop.cli import train

if __name__ == "__main__":
    train(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
