"""Check manual_grad against jax.grad and finite differences for the configured network
(installed as `deltaprop-gradcheck`).

    python experiments/gradcheck.py model.hidden=[3,3,3]
    python experiments/gradcheck.py gradcheck.after_epochs=5                # after 5 epochs
    python experiments/gradcheck.py gradcheck.inject=drop_sigma_prime      # a deliberate bug

Prints one row per layer and leaf: the norm and the worst entry's relative error against
jax.grad and finite differences. Exit codes: 0 every check passed, 2 bad input, 4 a check failed.
"""

from pathlib import Path

from deltaprop.cli import gradcheck

if __name__ == "__main__":
    gradcheck(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
