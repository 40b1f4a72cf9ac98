"""The textbook example, step by step: every z_l, a_l, δ_l, ∂L/∂W_l, ∂L/∂b_l and one update
(installed as `deltaprop-worked-example`).

    python experiments/worked_example.py                          # experiment=worked_example
    python experiments/worked_example.py worked_example.mode=by_hand          # calculator-sized
    python experiments/worked_example.py worked_example.mode=by_hand worked_example.batch=4
    python experiments/worked_example.py worked_example.page=true             # + backprop.html
    python experiments/worked_example.py worked_example.batch=8 optimizer.lr=0.1

The primary config `worked_example_app`, registered in deltaprop.cli, is conf/config.yaml with
`override experiment: worked_example` in its defaults list: the experiment applies unless the
command line names another one. `worked_example.mode=by_hand` without an `experiment=` selects
conf/experiment/worked_example_by_hand.yaml (a [2, 2, 2, 2, 1] network on one row of the XOR
truth table; the command line's other overrides still apply) and prints every number's
arithmetic. Prints the forward pass (layer 2 up to L), the backward pass (L down to 2) and the
update, and writes into the Hydra run directory `worked_example.md`, `network.svg` (the picture
of the network) and, with `worked_example.page=true`, `backprop.html` (the first
`worked_example.page_steps` training steps, stepped through in a browser). Exits 4 when a check
against jax.grad fails or the loss does not fall, 2 on bad input (deltaprop.errors).
"""

from pathlib import Path

from deltaprop.cli import worked_example

if __name__ == "__main__":
    worked_example(config_path=str(Path(__file__).resolve().parents[1] / "conf"))
