"""Peer-library runners for the benchmark harness, and the small types they share with it.

Each runner trains the network the harness (`benchmarking.py`, beside this file) describes: sizes
[n_1, ..., n_L], sigmoid hidden layers, logits out, mean BCE, plain SGD at `LEARNING_RATE`, one
fixed minibatch per step. Peers: plain JAX (`jax.grad` + optax), Equinox, Flax NNX and PyTorch
eager; each library is imported only when its runner is built, and `missing_modules` says which
are not installed.

`BenchConfig`, `Runner` and `Problem` live here so that imports point one way: `benchmarking`
imports from `peers`, never the reverse.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

LEARNING_RATE = 0.1
PEERS = ("pytorch-eager", "flax-nnx", "equinox", "jax-plain")
_PEER_MODULES = {
    "pytorch-eager": ("torch",),
    "flax-nnx": ("flax",),
    "equinox": ("equinox",),
    "jax-plain": (),
}


# ---------------------------------------------------------------------------------------------
# Shared types (re-exported by benchmarking)


@dataclass
class BenchConfig:
    """What to run; `quick` shrinks everything to a smoke run."""

    sizes: Sequence[str] = ("tiny", "medium", "large")
    peers: Sequence[str] = PEERS
    grads: Sequence[str] = ("manual", "autodiff")  # deltaprop's trainer.grad choices to time
    bf16: bool = True
    repeats: int = 5
    min_seconds: float = 0.2  # each repeat runs at least this long
    pause: float = 0.05  # seconds of sleep between runners, so worker threads go idle
    ceiling_size: int | None = None  # n of the n×n×n ceiling matmul; None: 2048 CPU, 8192 GPU
    quick: bool = False
    torch_tf32: bool = True  # on CUDA: let torch use TF32 for float32 matmuls, as XLA does
    torch_threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    seed: int = 0


@dataclass
class Runner:
    """`run()` performs `steps_per_call` training steps and returns what `sync` waits on."""

    run: Callable[[], Any]
    sync: Callable[[Any], Any]
    steps_per_call: int
    loss: Callable[[Any], float]


@dataclass
class Problem:
    """One workload's data and initial weights, as host (numpy) arrays shared by every runner.

    x_train: (epoch_steps·N, n_1) ~ N(0, 1); y_train: (epoch_steps·N, n_L) ∈ {0, 1};
    x, y: the first minibatch, for the runners that repeat one step.
    """

    sizes: tuple[int, ...]
    batch: int
    epoch_steps: int
    params: list[dict[str, np.ndarray]]
    x_train: np.ndarray
    y_train: np.ndarray

    @property
    def x(self) -> np.ndarray:
        return self.x_train[: self.batch]

    @property
    def y(self) -> np.ndarray:
        return self.y_train[: self.batch]

    def device_params(self) -> list[dict[str, jax.Array]]:
        """A fresh device copy of the initial weights (runners donate theirs)."""
        return [{name: jnp.asarray(leaf) for name, leaf in layer.items()} for layer in self.params]


# ---------------------------------------------------------------------------------------------
# Peers (imported only when asked for)


def jax_plain_runner(problem: Problem) -> Runner:
    """stax-style (W, b) tuples, `jax.grad` and optax.sgd in one jitted update, per step."""
    params = [(layer["W"], layer["b"]) for layer in problem.device_params()]
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    optimizer = optax.sgd(LEARNING_RATE)

    def loss(params, x, y):
        a = x
        for W, b in params[:-1]:
            a = jax.nn.sigmoid(a @ W + b)
        W, b = params[-1]
        return optax.sigmoid_binary_cross_entropy(a @ W + b, y).mean()

    @jax.jit
    def update(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    state = [params, jax.jit(optimizer.init)(params), None]

    def run():
        state[:] = update(state[0], state[1], x, y)
        return state

    return Runner(run, jax.block_until_ready, 1, lambda out: float(out[2]))


def equinox_runner(problem: Problem, key: jax.Array) -> Runner:
    """eqx.nn.Sequential of Linear + Lambda(sigmoid), vmapped over the batch, optax.sgd."""
    import equinox as eqx

    sizes = problem.sizes
    layer_keys = jax.random.split(key, len(sizes) - 1)
    layers: list[Any] = []
    for i, (layer_key, n_in, n_out) in enumerate(zip(layer_keys, sizes[:-1], sizes[1:])):
        layers.append(eqx.nn.Linear(n_in, n_out, key=layer_key))
        if i < len(sizes) - 2:
            layers.append(eqx.nn.Lambda(jax.nn.sigmoid))
    model = eqx.nn.Sequential(layers)
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)
    optimizer = optax.sgd(LEARNING_RATE)

    @eqx.filter_jit
    def update(model, opt_state, x, y):
        def loss(model):
            return optax.sigmoid_binary_cross_entropy(jax.vmap(model)(x), y).mean()

        value, grads = eqx.filter_value_and_grad(loss)(model)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, value

    state = [model, optimizer.init(eqx.filter(model, eqx.is_array)), None]

    def run():
        state[:] = update(state[0], state[1], x, y)
        return state

    return Runner(run, lambda out: jax.block_until_ready(eqx.filter(out, eqx.is_array)), 1,
                  lambda out: float(out[2]))


def flax_nnx_runner(problem: Problem, seed: int) -> Runner:
    """nnx.Sequential of nnx.Linear + nnx.sigmoid, nnx.Optimizer(optax.sgd), nnx.jit step."""
    from flax import nnx

    sizes = problem.sizes
    rngs = nnx.Rngs(seed)
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nnx.Linear(n_in, n_out, rngs=rngs))
        if i < len(sizes) - 2:
            layers.append(nnx.sigmoid)
    model = nnx.Sequential(*layers)
    optimizer = nnx.Optimizer(model, optax.sgd(LEARNING_RATE), wrt=nnx.Param)
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)

    @nnx.jit
    def update(model, optimizer, x, y):
        def loss(model):
            return optax.sigmoid_binary_cross_entropy(model(x), y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    def run():
        return update(model, optimizer, x, y)

    return Runner(run, jax.block_until_ready, 1, lambda out: float(out))


def torch_runner(
    problem: Problem, seed: int, tf32: bool, threads: int | None = None
) -> Runner:
    """PyTorch eager: nn.Sequential(Linear, Sigmoid, ..., Linear), BCEWithLogitsLoss, optim.SGD.

    On a CPU shared with other work, torch's OpenMP threads can wait on a descheduled sibling at
    every parallel op: `threads=1` then runs faster than the default (see BENCHMARKS.md).
    """
    import torch

    if threads is not None:
        torch.set_num_threads(threads)

    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(seed)
    sizes = problem.sizes
    layers: list[Any] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    criterion = torch.nn.BCEWithLogitsLoss()
    x = torch.from_numpy(problem.x.copy()).to(device)
    y = torch.from_numpy(problem.y.copy()).to(device)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def sync(out):
        if on_gpu:
            torch.cuda.synchronize()
        return out

    return Runner(run, sync, 1, lambda out: float(out.item()))


def _torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def missing_modules(peer: str) -> list[str]:
    """The modules a peer needs that are not installed."""
    return [name for name in _PEER_MODULES[peer] if importlib.util.find_spec(name) is None]


def peer_runner(peer: str, problem: Problem, key: jax.Array, cfg: BenchConfig) -> Runner:
    if peer == "pytorch-eager":
        return torch_runner(problem, cfg.seed, cfg.torch_tf32, cfg.torch_threads)
    if peer == "flax-nnx":
        return flax_nnx_runner(problem, cfg.seed)
    if peer == "equinox":
        return equinox_runner(problem, key)
    if peer == "jax-plain":
        return jax_plain_runner(problem)
    raise ValueError(f"peer={peer!r} must be one of {', '.join(PEERS)}")
