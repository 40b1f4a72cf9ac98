"""A training session: one network trained by plain SGD on one problem, frame by frame.

    θ_{t+1} = θ_t − η ∂L/∂θ(θ_t; B_t)        ∂L/∂θ by deltaprop.manual_value_and_grad

B_t, the minibatch of step t, is a fixed function of (seed, t): epoch e = t // (N_train // B)
takes a permutation of the training split drawn from (seed, e), and step t its next B rows (the
last N_train mod B rows of each permutation sit the epoch out). So a step can be recorded again
(`current_step`) and the session needs no hidden RNG state.

Nothing here does I/O: the server (server.py) holds one session per browser tab and turns
`frame()` and `current_step()` into JSON. The jitted functions are module-level with the cost
and φ static and η an argument: a restart with the same shapes, or another η, compiles nothing.
Everything runs in float64, so the step the page opens is the step training takes.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from deltaprop.backprop import backprop_trace, manual_value_and_grad
from deltaprop.losses import loss_fn
from deltaprop.network import Params, activation_derivative, forward, init_params
from deltaprop.playground.problem import GRID, Problem
from deltaprop.playground.settings import Settings
from deltaprop.playground.step import StepRecord, record_step
from deltaprop.precision import float64_scope

MAX_POINTS = 400  # points kept per chart series; every other one is dropped beyond that


def batch_indices(seed: int, step: int, n_train: int, batch_size: int) -> np.ndarray:
    """The rows of the training split in the minibatch of step `step`, (batch_size,)."""
    per_epoch = n_train // batch_size
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n_train)
    return order[position * batch_size:(position + 1) * batch_size]


@partial(jax.jit, static_argnames=("loss", "activation"))
def train_steps(params: Params, x, y, batches, learning_rate, loss: str, activation: str):
    """len(batches) SGD steps; batches: (k, B) rows of x and y, one minibatch per step."""

    def step(params, rows):
        _, grads = manual_value_and_grad(params, x[rows], y[rows], loss=loss,
                                         activation=activation)
        return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), None  # θ − η g

    return jax.lax.scan(step, params, batches)[0]


def _accuracy(params, x, y, activation):
    correct = (forward(params, x, activation=activation) > 0) == (y > 0.5)  # σ(z_L) > ½
    return jnp.mean(correct.astype(x.dtype))


@partial(jax.jit, static_argnames=("loss", "activation"))
def measure(params: Params, problem_arrays, rows, loss: str, activation: str) -> dict:
    """Train/validation loss and accuracy, the boundary's σ(z_L) on the grid, and ‖δ_l‖ and
    the mean φ'(z_l) of the minibatch `rows` (the next step's) at θ."""
    x_train, y_train, x_val, y_val, grid = problem_arrays
    trace = backprop_trace(params, x_train[rows], y_train[rows], loss=loss, activation=activation)
    slopes = [jnp.mean(activation_derivative(activation, z, a))
              for z, a in zip(trace.pre_activations[:-1], trace.activations[1:-1])]
    return {
        "train_loss": loss_fn(params, x_train, y_train, loss=loss, activation=activation),
        "val_loss": loss_fn(params, x_val, y_val, loss=loss, activation=activation),
        "train_accuracy": _accuracy(params, x_train, y_train, activation),
        "val_accuracy": _accuracy(params, x_val, y_val, activation),
        "delta_norms": jnp.stack([jnp.linalg.norm(delta) for delta in trace.deltas]),
        "mean_slopes": jnp.stack(slopes) if slopes else jnp.zeros((0,)),
        "boundary": jax.nn.sigmoid(forward(params, grid, activation=activation))[:, 0],
    }


class TrainingSession:
    """θ_t of one run and the measurements of the frames so far."""

    def __init__(self, settings: Settings, problem: Problem):
        self.settings, self.problem = settings, problem
        sizes = (problem.n_features, *settings.hidden, 1)
        with float64_scope():
            key = jax.random.key(settings.seed)
            self.params = jax.device_get(init_params(key, sizes, dtype=jnp.float64))
            self._arrays = tuple(jnp.asarray(a, jnp.float64) for a in (
                problem.x_train, problem.y_train, problem.x_val, problem.y_val, problem.grid))
        self.step = 0
        self.stopped = ""  # why training stopped (a loss that is not finite), or ""
        self.history: list[dict] = []
        self.latest = self._measure(self.params, 0)
        self._record(self.latest)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.problem.n_features, *self.settings.hidden, 1)

    def _rows(self, step: int) -> np.ndarray:
        return batch_indices(self.settings.seed, step, len(self.problem.x_train),
                             self.settings.batch_size)

    def _measure(self, params: Params, step: int) -> dict:
        with float64_scope():
            values = measure(params, self._arrays, jnp.asarray(self._rows(step)),
                             loss=self.settings.loss, activation=self.settings.activation)
            return {name: np.asarray(value) for name, value in jax.device_get(values).items()}

    def _record(self, values: dict) -> None:
        point = {"step": self.step, **{name: values[name].tolist() for name in (
            "train_loss", "val_loss", "train_accuracy", "val_accuracy", "delta_norms",
            "mean_slopes")}}
        self.history.append(point)
        if len(self.history) > MAX_POINTS:  # thin out: keep every other point and the newest
            self.history = self.history[:-1:2] + [point]

    def advance(self, steps: int) -> None:
        """`steps` SGD steps, then measure. A frame whose loss or parameters are not finite is
        dropped (θ stays at the last finite state) and training stops, saying so."""
        if self.stopped:
            return
        s = self.settings
        batches = np.stack([self._rows(self.step + k) for k in range(steps)])
        with float64_scope():
            params = jax.device_get(train_steps(
                self.params, self._arrays[0], self._arrays[1], jnp.asarray(batches),
                jnp.asarray(s.learning_rate, jnp.float64), loss=s.loss, activation=s.activation))
        values = self._measure(params, self.step + steps)
        finite = all(np.all(np.isfinite(leaf)) for leaf in [*jax.tree.leaves(params),
                                                              *values.values()])
        if not finite:
            self.stopped = (f"training stopped: the loss or the weights stopped being finite "
                            f"during steps {self.step}..{self.step + steps - 1} at "
                            f"learning_rate={s.learning_rate:g}; lower it (the network shown is "
                            f"step {self.step}'s)")
            return
        self.params, self.latest = params, values
        self.step += steps
        self._record(values)

    def frame(self) -> dict:
        """What the page draws now, JSON-able: the step, the latest measurements and the
        history of the frames, the weights, the boundary's σ(z_L) on the grid."""
        n_train = len(self.problem.x_train)
        latest = self.latest
        return {
            "step": self.step,
            "epoch": self.step // (n_train // self.settings.batch_size),
            "sizes": list(self.sizes),
            "stopped": self.stopped,
            "latest": {name: value.tolist() for name, value in latest.items()
                       if name != "boundary"},
            "history": self.history,
            "weights": [np.asarray(layer["W"]).tolist() for layer in self.params],
            "biases": [np.asarray(layer["b"]).tolist() for layer in self.params],
            "boundary": np.round(latest["boundary"], 4).tolist(),
        }

    def data(self) -> dict:
        """The standardized points (train and validation) and the boundary's grid, for the page."""
        p = self.problem
        return {
            "x_train": np.round(p.x_train[:, :2], 5).tolist(), "y_train": p.y_train[:, 0].tolist(),
            "x_val": np.round(p.x_val[:, :2], 5).tolist(), "y_val": p.y_val[:, 0].tolist(),
            "extent": list(p.extent), "grid": GRID, "feature_names": list(p.feature_names),
            "notes": list(p.notes), "n_train": len(p.x_train), "n_val": len(p.x_val),
        }

    def current_step(self) -> StepRecord:
        """Step t = self.step with every number: θ_t, minibatch B_t, the update to θ_{t+1}."""
        rows = self._rows(self.step)
        s = self.settings
        return record_step(self.params, self.problem.x_train[rows], self.problem.y_train[rows],
                           s.learning_rate, s.loss, s.activation, self.step, rows)
