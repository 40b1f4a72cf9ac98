"""Nielsen's speed of learning, reproduced: ‖∂C/∂b^l‖ per hidden layer at initialization.

    python experiments/speed_of_learning.py experiment=nielsen_speed_of_learning
    python experiments/speed_of_learning.py experiment=nielsen_speed_of_learning \
        speed_of_learning.train_epochs=3           # also after 1, 2, 3 epochs of training

Prints one row per hidden layer per network, beside Nielsen's published values (chapter 5), and
each network's last/first hidden-layer ratio. Exit codes: 0 done, 2 bad input.
"""

from pathlib import Path

from deltaprop.cli import speed_of_learning

if __name__ == "__main__":
    speed_of_learning(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
