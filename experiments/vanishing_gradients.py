"""The vanishing gradient, measured from epoch 0: one seed sweep per hidden activation
(installed as `deltaprop-vanishing-gradients`).

    python experiments/vanishing_gradients.py experiment=vanishing_gradients logger=none \
        vanishing_gradients.figure=docs/vanishing_gradients.png

Trains the configured run (experiment=vanishing_gradients: [64, 30, 30, 30, 30, 1] on the digits,
odd vs even) once per `vanishing_gradients.activations` (sigmoid, tanh, relu), each as one sweep
of `vanishing_gradients.seeds` seeds (trainer.num_seeds) under <run dir>/<activation>/. Writes
<run dir>/vanishing_gradients.png (per layer ‖δ_l‖, ‖∂L/∂b_l‖ and rms ∂L/∂W_l, and the training
loss; median and min–max over the seeds; also to vanishing_gradients.figure when set) and
<run dir>/vanishing_gradients.json (the table it prints: spreads at initialization beside the
spectral-norm bound, the bias-gradient ratio, the plateau's length); see
deltaprop/cli/teaching.py. Exit codes: 0 done, 2 bad input, 3 every member of a sweep diverged.
"""

from pathlib import Path

from deltaprop.cli import vanishing_gradients

if __name__ == "__main__":
    vanishing_gradients(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
