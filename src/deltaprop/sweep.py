"""Vectorized sweeps: K seeds × L learning rates trained together as one XLA program.

`trainer.num_seeds=K` and `sweep.lr=[η_1, ..., η_L]` give M = K·L members. Member
i = j·K + k trains with seed = cfg.seed + k and learning rate η_j, and starts exactly where a
single run (`trainer.train` with that seed and `optimizer.lr=η_j`) starts:

    init_key, data_key = split(key(seed))     params from init_key, data order from data_key

The learning rate is an injected hyperparameter (training.make_optimizer), so it lives in the
optimizer state as one value per member. The data split and standardization are computed once,
from cfg.seed, and shared by every member: seeds vary the initialisation and the data order,
not the data. (A single run with seed s also draws its split from s.)

Two engines run the same math:

    vmap     jax.vmap over the project's own epoch (training.make_train_epoch) and gradient
             (manual δ recursion or jax.grad): member-batched matrix products. The reference.
    packed   members on the last axis of every array, W: (n_in, n_out, M), a: (N, n, M), so each
             product is an elementwise multiply-add along M that XLA:CPU vectorizes
             (z[b,o,m] = Σ_i a[b,i,m] W[i,o,m]); the δ recursion is written out again for this
             layout (`packed_backprop`) and checked against backprop.manual_grad in the tests.
             Each epoch's shuffles (jax.random.permutation, the same integers) skip XLA:CPU's
             slow key-value sort (`member_permutations`). The default; about 3× faster than
             the same members run one after another (experiments/bench_sweep.py).

Evaluation runs every `trainer.eval_every` epochs under jax.vmap (diagnostics.evaluate and
layer_statistics) and is pulled to the host once per evaluation. Nothing in jitted code logs:
each member becomes its own W&B run after training, replaying its history.

Run directory after a sweep:
    members.csv, members.json        final metrics of every member (member, seed, lr, ...)
    summary.json                     mean over members, per-lr mean ± std, the member list
    sweep_curves.png                 mean ± std over seeds of the loss and accuracy, per lr
    members/member_<i>/              metrics.jsonl, summary.json, params.safetensors
    wandb/offline-run-*              one W&B run per member and a "sweep-summary" run
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import DTypeLike
from omegaconf import DictConfig, OmegaConf

from deltaprop.config import ConfigError, validate_config
from deltaprop.data import check_feature_count
from deltaprop.diagnostics import evaluate, layer_statistics
from deltaprop.losses import binary_cross_entropy_with_logits
from deltaprop.network import Params, init_params
from deltaprop.serialization import save_params
from deltaprop.tracking import make_logger
from deltaprop.training import (
    TrainState,
    batches_per_epoch,
    init_train_state,
    make_optimizer,
    make_train_epoch,
    make_train_step,
    value_and_grad_fn,
)

ENGINES = ("packed", "vmap")

# Products whose contracted axis is at most this long are written as unrolled multiply-adds
# (one XLA loop fusion, vectorized along the member axis); longer ones use einsum.
UNROLL_LIMIT = 128

# XLA:CPU options for the packed program: 512-bit vectors where the CPU has them (AVX-512);
# the packed products are elementwise multiply-adds along the member axis.
PACKED_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": "512"}

PackedParams = list[dict[str, jax.Array]]  # [{"W": (n_in, n_out, M), "b": (n_out, M)}]


@dataclass(frozen=True)
class Member:
    """One member of a sweep: what a single run with this seed and learning rate would do."""

    index: int
    seed: int
    lr: float


def sweep_members(cfg: DictConfig) -> list[Member]:
    """Members lr-major: index = j·K + k for learning rate j and seed cfg.seed + k."""
    learning_rates = [float(lr) for lr in cfg.sweep.lr] or [float(cfg.optimizer.lr)]
    num_seeds = int(cfg.trainer.num_seeds)
    return [
        Member(j * num_seeds + k, int(cfg.seed) + k, lr)
        for j, lr in enumerate(learning_rates)
        for k in range(num_seeds)
    ]


# ----------------------------------------------------------------------- the packed layout


def pack(stacked: Params) -> PackedParams:
    """Member axis first (M, n_in, n_out) → member axis last (n_in, n_out, M)."""
    return jax.tree.map(lambda leaf: _numpy_or_jax(leaf).moveaxis(leaf, 0, -1), stacked)


def unpack(packed: PackedParams) -> Params:
    """Member axis last → member axis first; `unpack(p)[i]`-slices are single-run params.
    NumPy arrays (params pulled to the host) stay NumPy."""
    return jax.tree.map(lambda leaf: _numpy_or_jax(leaf).moveaxis(leaf, -1, 0), packed)


def _numpy_or_jax(array):
    return np if isinstance(array, np.ndarray) else jnp


def _pairwise_sum(terms: list[jax.Array]) -> jax.Array:
    """Σ terms as a balanced tree: short dependency chains, so the adds pipeline."""
    while len(terms) > 1:
        paired = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = paired + terms[len(paired) * 2 :]
    return terms[0]


def _rounded(array: jax.Array, matmul_dtype: DTypeLike | None) -> jax.Array:
    """Operands of a product in matmul_dtype (bf16), products and sums in the array's dtype.

    A bf16 × bf16 product is exact in float32, so this equals a bf16 matmul with float32
    accumulation (network.linear) up to the order of the sum.
    """
    if matmul_dtype is None:
        return array
    return array.astype(matmul_dtype).astype(array.dtype)


def packed_linear(
    a: jax.Array, layer: dict[str, jax.Array], matmul_dtype: DTypeLike | None = None
) -> jax.Array:
    """z[b,o,m] = Σ_i a[b,i,m] W[i,o,m] + b[o,m]: every member's a W + b at once.

    Args:
      a: (N, n_in, M) activations.
      layer: {"W": (n_in, n_out, M), "b": (n_out, M)}.

    Returns:
      (N, n_out, M).
    """
    a, W = _rounded(a, matmul_dtype), _rounded(layer["W"], matmul_dtype)
    if W.shape[0] > UNROLL_LIMIT:
        return jnp.einsum("bim,iom->bom", a, W) + layer["b"]
    return _pairwise_sum([a[:, i, None, :] * W[i] for i in range(W.shape[0])]) + layer["b"]


def _delta_times_weights(
    delta: jax.Array, W: jax.Array, matmul_dtype: DTypeLike | None
) -> jax.Array:
    """(δ_{l+1} W_{l+1}ᵀ)[b,i,m] = Σ_o δ[b,o,m] W[i,o,m]; δ: (N, n_out, M) → (N, n_in, M)."""
    delta, W = _rounded(delta, matmul_dtype), _rounded(W, matmul_dtype)
    if W.shape[1] > UNROLL_LIMIT:
        return jnp.einsum("bom,iom->bim", delta, W)
    return _pairwise_sum([delta[:, None, o, :] * W[:, o, :] for o in range(W.shape[1])])


def _weight_gradient(
    a_prev: jax.Array, delta: jax.Array, matmul_dtype: DTypeLike | None
) -> jax.Array:
    """(a_{l−1}ᵀ δ_l)[i,o,m] = Σ_b a[b,i,m] δ[b,o,m]; → (n_in, n_out, M)."""
    a_prev, delta = _rounded(a_prev, matmul_dtype), _rounded(delta, matmul_dtype)
    if a_prev.shape[0] > UNROLL_LIMIT:
        return jnp.einsum("bim,bom->iom", a_prev, delta)
    return _pairwise_sum(
        [a_prev[b, :, None, :] * delta[b, None, :, :] for b in range(a_prev.shape[0])]
    )


def _batch_sum(delta: jax.Array) -> jax.Array:
    """Σ_b δ[b,o,m] → (n_out, M), as adds that fuse with the parameter update."""
    if delta.shape[0] > UNROLL_LIMIT:
        return jnp.sum(delta, axis=0)
    return _pairwise_sum([delta[b] for b in range(delta.shape[0])])


def packed_forward(
    params: PackedParams, x: jax.Array, matmul_dtype: DTypeLike | None = None
) -> jax.Array:
    """Logits z_L of every member: x (N, n_1, M) → (N, n_L, M)."""
    a = x
    for layer in params[:-1]:
        a = jax.nn.sigmoid(packed_linear(a, layer, matmul_dtype))  # a_l = σ(a_{l-1} W_l + b_l)
    return packed_linear(a, params[-1], matmul_dtype)  # z_L = a_{L-1} W_L + b_L


def packed_loss(
    params: PackedParams, x: jax.Array, y: jax.Array, matmul_dtype: DTypeLike | None = None
) -> jax.Array:
    """Each member's mean BCE over its N·n_L elements: (M,)."""
    logits = packed_forward(params, x, matmul_dtype)
    return jnp.mean(binary_cross_entropy_with_logits(logits, y), axis=(0, 1))


def packed_backprop(
    params: PackedParams, x: jax.Array, y: jax.Array, matmul_dtype: DTypeLike | None = None
) -> tuple[jax.Array, PackedParams]:
    """backprop.backprop_trace for every member at once, in the packed layout.

    Args:
      params: [{"W": (n_{l-1}, n_l, M), "b": (n_l, M)}] for l = 2..L.
      x: (N, n_1, M) inputs (each member its own minibatch).
      y: (N, n_L, M) targets in {0, 1}.

    Returns:
      (loss (M,), grads with the structure of `params`).
    """
    # Forward: z_l = a_{l-1} W_l + b_l, a_l = σ(z_l), keeping a_l for the backward pass.
    activations = [x]
    for layer in params:
        logits = packed_linear(activations[-1], layer, matmul_dtype)
        activations.append(jax.nn.sigmoid(logits))
    loss = jnp.mean(binary_cross_entropy_with_logits(logits, y), axis=(0, 1))

    # δ_L = (a_L − y) / (N·n_L): the derivative of each member's mean BCE w.r.t. its logits.
    delta = (activations[-1] - y) / (logits.shape[0] * logits.shape[1])
    grads: PackedParams = [{} for _ in params]
    for i in range(len(params) - 1, -1, -1):  # params[i] is layer l = i + 2
        grads[i] = {
            "W": _weight_gradient(activations[i], delta, matmul_dtype),  # ∂L/∂W_l = a_{l−1}ᵀ δ_l
            "b": _batch_sum(delta),  # ∂L/∂b_l = Σ_batch δ_l
        }
        if i > 0:
            a = activations[i]  # a_{l−1}
            # δ_{l−1} = (δ_l W_lᵀ) ⊙ a_{l−1}(1 − a_{l−1})
            delta = _delta_times_weights(delta, params[i]["W"], matmul_dtype) * (a * (1 - a))
    return loss, grads


def packed_value_and_grad_fn(grad: str = "manual", matmul_dtype: Any | None = None):
    """(packed params, x, y) -> (losses (M,), grads): the δ recursion, or jax.grad.

    With autodiff, jax.grad differentiates Σ_m L_m; members share no parameters, so its
    gradient with respect to member m's parameters is ∂L_m/∂θ_m.
    """
    if grad == "manual":
        return lambda params, x, y: packed_backprop(params, x, y, matmul_dtype)
    if grad == "autodiff":

        def total_loss(params, x, y):
            losses = packed_loss(params, x, y, matmul_dtype)
            return jnp.sum(losses), losses

        value_and_grad = jax.value_and_grad(total_loss, has_aux=True)

        def autodiff_value_and_grad(params, x, y):
            (_, losses), grads = value_and_grad(params, x, y)
            return losses, grads

        return autodiff_value_and_grad
    raise ValueError(f"trainer.grad={grad!r} must be 'manual' or 'autodiff'")


# ------------------------------------------------------------------- state and one epoch


class SweepEngine(NamedTuple):
    """How a sweep's state is laid out and trained.

    train_epoch(state, x_train, y_train) -> (state, step losses (M, steps)); pure, jit it
      with `compiler_options`.
    member_params(params) -> params with the member axis first, (M, n_in, n_out).
    """

    name: str
    train_epoch: Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, jax.Array]]
    member_params: Callable[[Any], Params]
    from_member_params: Callable[[Params], Any]
    compiler_options: dict[str, Any] | None = None


def make_engine(
    name: str,
    optimizer: optax.GradientTransformation,
    grad: str,
    batch_size: int,
    matmul_dtype: Any | None = None,
) -> SweepEngine:
    """The `vmap` or `packed` engine (see the module docstring) for one optimizer."""
    if name == "vmap":
        epoch = make_train_epoch(optimizer, value_and_grad_fn(grad, matmul_dtype), batch_size)
        epoch = jax.vmap(epoch, in_axes=(0, None, None))
        return SweepEngine("vmap", epoch, lambda p: p, lambda p: p)
    if name == "packed":
        value_and_grad = packed_value_and_grad_fn(grad, matmul_dtype)
        epoch = make_packed_train_epoch(optimizer, value_and_grad, batch_size)
        return SweepEngine("packed", epoch, unpack, pack, PACKED_COMPILER_OPTIONS)
    raise ConfigError(f"sweep engine {name!r} must be one of {', '.join(ENGINES)}")


def make_packed_train_epoch(
    optimizer: optax.GradientTransformation, value_and_grad: Callable, batch_size: int
):
    """training.make_train_epoch for packed state.

    The state holds packed params, one optimizer state for all members (the injected
    learning rate is (M,) and broadcasts along the member axis), keys (M,) and a shared epoch.
    Each member shuffles with its own key exactly as a single run does:
    key, shuffle_key = split(key); order = permutation(shuffle_key, n_train).

    Returns:
      train_epoch(state, x_train, y_train) -> (state, step losses (M, steps)).
    """
    train_step = make_train_step(optimizer, value_and_grad)

    def train_epoch(state: TrainState, x_train: jax.Array, y_train: jax.Array):
        n_train = x_train.shape[0]
        size = min(batch_size, n_train)
        steps = batches_per_epoch(n_train, batch_size)
        split = jax.vmap(jax.random.split)(state.key)  # each member: key, shuffle_key = split(key)
        order = member_permutations(split[:, 1], n_train)[:, : steps * size]
        order = jnp.moveaxis(order.reshape(-1, steps, size), 0, -1)  # (steps, size, M)

        def scan_step(carry, batch_indices):  # batch_indices: (size, M)
            params, opt_state = carry
            x_batch = _gather_packed(x_train, batch_indices)  # (size, n_1, M)
            y_batch = _gather_packed(y_train, batch_indices)  # (size, n_L, M)
            params, opt_state, loss = train_step(params, opt_state, x_batch, y_batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            scan_step, (state.params, state.opt_state), order
        )
        return TrainState(params, opt_state, split[:, 0], state.epoch + 1), losses.T

    return train_epoch


def _gather_packed(data: jax.Array, batch_indices: jax.Array) -> jax.Array:
    """data[batch_indices[b, m], j] as (size, n, M), gathered element by element from the
    column-major data so the member axis comes out innermost (a row gather would leave the
    features innermost and every product would read the batch with a stride)."""
    n_rows, n_columns = data.shape
    columns = jnp.arange(n_columns)[:, None, None] * n_rows  # (n, 1, 1) offsets into data.T
    flat = data.T.reshape(-1)[columns + batch_indices]  # (n, size, M)
    return jnp.swapaxes(flat, 0, 1)


def member_permutations(keys: jax.Array, n: int) -> jax.Array:
    """jax.random.permutation(key, n) for each of M keys, as an (M, n) array of the same integers.

    jax.random.permutation shuffles by sorting: each round splits off a subkey, draws 32 random
    bits per element and reorders by a stable sort on them. That stable sort is done here
    without XLA:CPU's key-value sort, which costs as much as a quarter of a small network's
    epoch (see `_stable_argsort_rows`). Checked against jax.random.permutation in the tests.
    """
    rounds = math.ceil(3 * math.log(max(1, n)) / math.log(np.iinfo(np.uint32).max))
    order = jnp.broadcast_to(jnp.arange(n), (keys.shape[0], n))
    for _ in range(rounds):
        split = jax.vmap(jax.random.split)(keys)
        keys, subkeys = split[:, 0], split[:, 1]
        bits = jax.vmap(lambda key: jax.random.bits(key, (n,), jnp.uint32))(subkeys)
        order = jnp.take_along_axis(order, _stable_argsort_rows(bits), axis=1)
    return order


def _stable_argsort_rows(bits: jax.Array) -> jax.Array:
    """jnp.argsort(bits, axis=1, stable=True) for uint32 rows (M, n).

    Sort keys (the high 32 − k bits of each key, then its index in the low k = ⌈log₂ n⌉ bits)
    are distinct, so one single-operand sort orders them by (high bits, index). Only neighbours
    with equal high bits can then be out of order: one compare-exchange of adjacent pairs on
    the full key fixes every such pair, and a check of the result sends anything else (three
    equal high parts in a row: about 3e-6 per row at n = 700) to the stable key-value sort.
    """
    n = bits.shape[1]
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 12:  # too few high bits left: runs of equal high bits would be common
        return jnp.argsort(bits, axis=1, stable=True)
    index = jnp.arange(n, dtype=jnp.uint32)
    keys = ((bits >> index_bits) << index_bits) | index
    order = (jnp.sort(keys, axis=1) & jnp.uint32((1 << index_bits) - 1)).astype(jnp.int32)
    full = jnp.take_along_axis(bits, order, axis=1)

    # Swap each out-of-order neighbour pair (j, j+1); strict, so equal keys keep index order.
    swap = full[:, :-1] > full[:, 1:]
    with_next = jnp.pad(swap, ((0, 0), (0, 1)))  # element j moves to j+1
    with_previous = jnp.pad(swap, ((0, 0), (1, 0)))  # element j moves to j−1

    def exchanged(array):
        following = jnp.pad(array[:, 1:], ((0, 0), (0, 1)))
        preceding = jnp.pad(array[:, :-1], ((0, 0), (1, 0)))
        return jnp.where(with_next, following, jnp.where(with_previous, preceding, array))

    full, order = exchanged(full), exchanged(order)
    # Strictly ascending in (key, index) holds for the stable argsort and nothing else.
    ascending = (full[:, 1:] > full[:, :-1]) | (
        (full[:, 1:] == full[:, :-1]) & (order[:, 1:] > order[:, :-1])
    )
    return jax.lax.cond(
        jnp.all(ascending),
        lambda: order,
        lambda: jnp.argsort(bits, axis=1, stable=True).astype(jnp.int32),
    )


def with_learning_rates(opt_state: Any, learning_rates: jax.Array) -> Any:
    """The optimizer state with its injected learning rate replaced by one per member."""
    hyperparams = dict(opt_state.hyperparams)
    hyperparams["learning_rate"] = jnp.asarray(
        learning_rates, hyperparams["learning_rate"].dtype
    )
    return opt_state._replace(hyperparams=hyperparams)


def init_members(
    members: Sequence[Member], sizes: Sequence[int], init: str, dtype: DTypeLike
) -> tuple[list[Params], list[jax.Array]]:
    """Each member's initial params and data key, exactly as trainer._train derives them:
    init_key, data_key = split(key(seed)); params = init_params(init_key, ...)."""

    @jax.jit  # compiled once for all seeds (eagerly, every small random op compiles alone)
    def member_init(seed_key):
        init_key, data_key = jax.random.split(seed_key)
        return init_params(init_key, sizes, init, dtype), data_key

    by_seed = {seed: member_init(jax.random.key(seed))
               for seed in dict.fromkeys(member.seed for member in members)}
    return [by_seed[m.seed][0] for m in members], [by_seed[m.seed][1] for m in members]


def init_sweep_state(
    engine: SweepEngine,
    optimizer: optax.GradientTransformation,
    members: Sequence[Member],
    sizes: Sequence[int],
    init: str,
    dtype: DTypeLike,
) -> TrainState:
    """The starting state of every member, in the engine's layout."""
    params, data_keys = init_members(members, sizes, init, dtype)
    learning_rates = np.asarray([member.lr for member in members])

    @jax.jit  # one program instead of a small compile per stacked or moved leaf
    def assemble(params, data_keys, learning_rates):
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *params)
        data_keys = jnp.stack(data_keys)
        if engine.name == "vmap":
            state = jax.vmap(lambda p, k: init_train_state(p, optimizer, k))(params, data_keys)
        else:
            state = init_train_state(engine.from_member_params(params), optimizer, data_keys)
        return state._replace(opt_state=with_learning_rates(state.opt_state, learning_rates))

    return assemble(params, data_keys, learning_rates)


def make_member_evaluation(engine: SweepEngine):
    """(params, splits) -> per-member results on train, val and test, and the per-layer
    statistics on train: diagnostics.evaluate and layer_statistics under jax.vmap. Pure; jit
    it. (Test is evaluated every time, as it costs little, and read after the last epoch.)"""
    evaluate_members = jax.vmap(evaluate, in_axes=(0, None, None))
    statistics_members = jax.vmap(layer_statistics, in_axes=(0, None, None))

    def evaluate_all(params, arrays: dict[str, jax.Array]):
        params = engine.member_params(params)
        results = {
            split: evaluate_members(params, arrays[f"x_{split}"], arrays[f"y_{split}"])
            for split in ("train", "val", "test")
        }
        results["grads"] = statistics_members(params, arrays["x_train"], arrays["y_train"])
        return results

    return evaluate_all


# ------------------------------------------------------------------ host-side metrics


def batched_roc_auc(y: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """ROC-AUC of every member from the rank-sum (Mann–Whitney) statistic; ties count ½.

    Equals sklearn's roc_auc_score (diagnostics.roc_auc) member by member.

    Args:
      y: (N,) or (N, 1) labels in {0, 1}.
      probabilities: (M, N) or (M, N, 1).

    Returns:
      (M,) AUCs; NaN when y holds a single class.
    """
    from scipy.stats import rankdata

    positive = np.asarray(y).reshape(-1) > 0.5
    scores = np.asarray(probabilities, np.float64).reshape(len(probabilities), -1)
    n_positive, n_negative = int(positive.sum()), int((~positive).sum())
    if n_positive == 0 or n_negative == 0:
        return np.full(len(scores), np.nan)
    ranks = rankdata(scores, axis=1)  # average ranks for ties
    # U = Σ ranks of the positives − n₊(n₊+1)/2;  AUC = U / (n₊ n₋)
    u_statistic = ranks[:, positive].sum(axis=1) - n_positive * (n_positive + 1) / 2
    return u_statistic / (n_positive * n_negative)


def split_metrics_members(
    result: dict[str, np.ndarray], y: np.ndarray, prefix: str
) -> dict[str, np.ndarray]:
    """trainer.split_metrics for every member: {prefix/loss, prefix/acc[, prefix/auc]}: (M,)."""
    metrics = {f"{prefix}/loss": result["loss"], f"{prefix}/acc": result["acc"]}
    if y.shape[1] == 1:
        metrics[f"{prefix}/auc"] = batched_roc_auc(y, result["probabilities"])
    return metrics


def member_rows(columns: dict[str, np.ndarray], extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-member dicts of floats from columns of (M,) arrays."""
    n_members = len(next(iter(columns.values())))
    return [
        {**extra, **{key: float(values[m]) for key, values in columns.items()}}
        for m in range(n_members)
    ]


def aggregate(finals: list[dict[str, Any]], objective: str) -> dict[str, float]:
    """Mean over members of every final metric, plus sweep/members and sweep/best_lr (the lr
    whose members have the lowest mean objective)."""
    keys = [key for key in finals[0] if key not in ("member", "seed", "lr")]
    summary = {key: float(np.mean([row[key] for row in finals])) for key in keys}
    summary["sweep/members"] = float(len(finals))
    by_lr = summarize_by_lr(finals, [objective] if objective in finals[0] else [])
    if objective in finals[0]:
        finite = [row for row in by_lr if math.isfinite(row[f"{objective}/mean"])]
        if finite:
            summary["sweep/best_lr"] = min(finite, key=lambda r: r[f"{objective}/mean"])["lr"]
    return summary


def summarize_by_lr(finals: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Per learning rate: member count, and mean and std over seeds of each key."""
    rows = []
    for lr in sorted({row["lr"] for row in finals}):
        group = [row for row in finals if row["lr"] == lr]
        summary: dict[str, Any] = {"lr": lr, "members": len(group)}
        for key in keys:
            values = np.array([row[key] for row in group], np.float64)
            summary[f"{key}/mean"] = float(values.mean())
            summary[f"{key}/std"] = float(values.std())
        rows.append(summary)
    return rows


# --------------------------------------------------------------------------- outputs


def plot_sweep_curves(
    histories: list[list[dict[str, float]]], members: Sequence[Member], path: Path
) -> Path:
    """Mean ± std over seeds, per learning rate, of train/val loss and val accuracy."""
    from deltaprop import plots  # sets matplotlib's Agg backend

    plt = plots.plt
    panels = [("train/loss", "train loss", True), ("val/loss", "val loss", True),
              ("val/acc", "val accuracy", False)]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    epochs = np.array([row["epoch"] for row in histories[0]])
    for lr in sorted({member.lr for member in members}):
        rows = [histories[m.index] for m in members if m.lr == lr]
        for axis, (key, title, log_scale) in zip(axes, panels):
            values = np.array([[row[key] for row in history] for history in rows])
            mean, std = values.mean(axis=0), values.std(axis=0)
            (line,) = axis.plot(epochs, mean, label=f"lr={lr:g} (n={len(rows)})")
            axis.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            axis.set(xlabel="epoch", title=f"{title}: mean ± std over seeds")
            if log_scale:
                axis.set_yscale("log")
    for axis in axes:
        axis.grid(alpha=0.3)
        axis.legend()
    return plots.save_figure(figure, path)


def member_config(cfg: DictConfig, member: Member) -> dict[str, Any]:
    """The config a W&B member run shows: the sweep's, with this member's seed and lr."""
    config = OmegaConf.to_container(cfg, resolve=True)
    config["seed"] = member.seed
    config["optimizer"]["lr"] = member.lr
    config["member"] = member.index
    config["data_seed"] = int(cfg.seed)  # the split is shared by all members
    return config


def write_member_outputs(
    run_dir: Path,
    members: Sequence[Member],
    histories: list[list[dict[str, float]]],
    finals: list[dict[str, Any]],
    params: Params,
) -> list[Path]:
    """members/member_<i>/{metrics.jsonl, summary.json, params.safetensors}; the params paths."""
    host_params = jax.device_get(params)
    paths = []
    for member in members:
        directory = run_dir / "members" / f"member_{member.index}"
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "metrics.jsonl", "w") as file:
            file.writelines(json.dumps(row) + "\n" for row in histories[member.index])
        (directory / "summary.json").write_text(json.dumps(finals[member.index], indent=2))
        layer_params = [
            {name: leaf[member.index] for name, leaf in layer.items()} for layer in host_params
        ]
        paths.append(save_params(layer_params, directory / "params.safetensors"))
    return paths


def write_sweep_tables(
    run_dir: Path, finals: list[dict[str, Any]], summary: dict[str, Any]
) -> None:
    """members.csv, members.json (every member's final metrics) and summary.json."""
    columns = list(finals[0])
    with open(run_dir / "members.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(finals)
    (run_dir / "members.json").write_text(json.dumps(finals, indent=2))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def log_members(
    cfg: DictConfig,
    run_dir: Path,
    group: str,
    members: Sequence[Member],
    histories: list[list[dict[str, float]]],
    finals: list[dict[str, Any]],
    params_paths: list[Path],
) -> None:
    """One W&B run per member, created one after another once training is over."""
    for member, history, final, params_path in zip(members, histories, finals, params_paths):
        logger = make_logger(
            cfg.logger, member_config(cfg, member), run_dir,
            name=f"seed{member.seed}-lr{member.lr:g}", group=group,
        )
        exit_code = 1
        try:
            for row in history:
                logger.log(row, step=int(row["epoch"]))
            logger.summarize(final)
            logger.log_artifact(f"params-member-{member.index}", "model", params_path)
            exit_code = 0
        finally:
            logger.finish(exit_code)


def log_summary_run(
    cfg: DictConfig,
    run_dir: Path,
    group: str,
    finals: list[dict[str, Any]],
    summary: dict[str, Any],
    curves_path: Path,
    step: int,
) -> str | None:
    """The group's "sweep-summary" W&B run: the curves figure, the member table, the means."""
    config = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(
        cfg.logger, config, run_dir, name=f"{group}-summary", group=group,
        job_type="sweep-summary",
    )
    exit_code = 1
    try:
        logger.log_images({"plots/sweep_curves": curves_path}, step=step)
        columns = list(finals[0])
        logger.log_table("members", columns, [[row[c] for c in columns] for row in finals])
        logger.summarize({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        exit_code = 0
    finally:
        logger.finish(exit_code)
    return logger.run_path


# ------------------------------------------------------------------------ the driver


UNSUPPORTED = {
    "trainer.data_parallel": lambda cfg: cfg.trainer.data_parallel,
    "trainer.distributed": lambda cfg: cfg.trainer.distributed,
    "trainer.resume": lambda cfg: cfg.trainer.resume,
    "trainer.checkpoint_every": lambda cfg: cfg.trainer.checkpoint_every,
}


def check_sweep_config(cfg: DictConfig) -> str:
    """Raise ConfigError for options a vectorized sweep does not support; return the engine."""
    for key, is_set in UNSUPPORTED.items():
        if is_set(cfg):
            value = OmegaConf.select(cfg, key)
            raise ConfigError(
                f"{key}={value!r} is not supported in a vectorized sweep "
                "(trainer.num_seeds > 1 or sweep.lr); unset it or run single jobs"
            )
    engine = cfg.sweep.engine
    if engine not in ENGINES:
        raise ConfigError(f"sweep.engine={engine!r} is invalid: must be one of {', '.join(ENGINES)}")
    return engine


def sweep_group(cfg: DictConfig) -> str:
    """logger.group, else the Hydra multirun job, else sweep-<experiment_name>-<time>."""
    from deltaprop.trainer import hydra_job_identity

    if cfg.logger.group:
        return str(cfg.logger.group)
    name, hydra_group = hydra_job_identity(cfg)
    if hydra_group:
        return f"{hydra_group}/{name}"
    return f"sweep-{cfg.experiment_name}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"


def train_sweep(cfg: DictConfig, engine: str | None = None) -> dict[str, float]:
    """Train every member of the sweep as one program; return metrics averaged over members.

    Args:
      cfg: the composed config; trainer.num_seeds and sweep.lr define the members.
      engine: "packed" (default: cfg.sweep.engine if the schema has it) or "vmap".

    Returns:
      The mean over members of each final metric (val/best_loss, test/acc, ...), with
      sweep/members and sweep/best_lr.

    Raises:
      ConfigError, DataError (both ValueError): bad input, before any work starts.
    """
    from deltaprop.trainer import precision_scope

    validate_config(cfg)
    configured_engine = check_sweep_config(cfg)
    engine = engine or configured_engine
    if engine not in ENGINES:
        raise ConfigError(f"sweep engine {engine!r} must be one of {', '.join(ENGINES)}")
    with precision_scope(cfg.trainer.precision), jax.debug_nans(cfg.trainer.debug_nans):
        return _train_sweep(cfg, engine)


def _train_sweep(cfg: DictConfig, engine_name: str) -> dict[str, float]:
    from tqdm.auto import tqdm

    from deltaprop.trainer import (
        cast_splits,
        network_sizes,
        precision_of,
        prepare_data,
        print_summary,
        resolve_run_dir,
    )

    precision = precision_of(cfg.trainer.precision)
    splits = prepare_data(cfg)  # shared by every member: split and standardization from cfg.seed
    sizes = network_sizes(cfg, splits)
    check_feature_count(splits.x_train, sizes[0])
    arrays = cast_splits(splits, precision.dtype)
    run_dir = resolve_run_dir(cfg)
    members = sweep_members(cfg)

    steps_per_epoch = batches_per_epoch(splits.x_train.shape[0], cfg.trainer.batch_size)
    optimizer = make_optimizer(cfg.optimizer, steps_per_epoch, cfg.trainer.epochs)
    engine = make_engine(
        engine_name, optimizer, cfg.trainer.grad, cfg.trainer.batch_size, precision.matmul_dtype
    )
    state = init_sweep_state(engine, optimizer, members, sizes, cfg.model.init, precision.dtype)
    train_epoch = jax.jit(engine.train_epoch, compiler_options=engine.compiler_options)
    evaluate_all = jax.jit(make_member_evaluation(engine))

    histories: list[list[dict[str, float]]] = [[] for _ in members]
    best_val_loss = np.full(len(members), np.inf)
    progress = tqdm(
        range(1, cfg.trainer.epochs + 1),
        desc=f"sweep ({len(members)} members)",
        unit="epoch",
        disable=not cfg.trainer.progress,
        dynamic_ncols=True,
    )
    for epoch in progress:
        state, step_losses = train_epoch(state, arrays["x_train"], arrays["y_train"])
        if epoch % cfg.trainer.eval_every and epoch != cfg.trainer.epochs:
            continue
        results, step_losses = jax.device_get(  # one transfer per evaluation
            (evaluate_all(state.params, arrays), step_losses)
        )
        columns = {"train/epoch_loss": step_losses.mean(axis=1)}
        columns |= split_metrics_members(results["train"], splits.y_train, "train")
        columns |= split_metrics_members(results["val"], splits.y_val, "val")
        columns |= {f"grads/{key}": value for key, value in results["grads"].items()}
        best_val_loss = np.fmin(best_val_loss, columns["val/loss"])
        columns["val/best_loss"] = best_val_loss
        for history, row in zip(histories, member_rows(columns, {"epoch": epoch})):
            history.append(row)
        progress.set_postfix(val_acc=f"{np.mean(columns['val/acc']):.3f} (mean)")
    progress.close()

    # the last epoch is always evaluated: its test results are the final test metrics
    test_rows = member_rows(split_metrics_members(results["test"], splits.y_test, "test"), {})
    finals = [
        {"member": m.index, "seed": m.seed, "lr": m.lr, **history[-1], **test_row}
        for m, history, test_row in zip(members, histories, test_rows)
    ]
    summary = aggregate(finals, cfg.objective)

    params = engine.member_params(jax.device_get(state.params))  # NumPy: no compile
    params_paths = write_member_outputs(run_dir, members, histories, finals, params)
    by_lr_keys = [k for k in ("val/best_loss", "val/acc", "test/acc") if k in finals[0]]
    write_sweep_tables(
        run_dir, finals, summary | {"by_lr": summarize_by_lr(finals, by_lr_keys)}
    )
    curves_path = plot_sweep_curves(histories, members, run_dir / "sweep_curves.png")

    group = sweep_group(cfg)
    log_members(cfg, run_dir, group, members, histories, finals, params_paths)
    wandb_path = log_summary_run(
        cfg, run_dir, group, finals, summary, curves_path, cfg.trainer.epochs
    )
    print_summary(summary, run_dir, wandb_path)
    print_by_lr(summarize_by_lr(finals, by_lr_keys), by_lr_keys)
    if wandb_path:
        print(f"W&B group {group!r}: {len(members)} member runs and one summary run; upload all "
              f"with: wandb sync {Path(wandb_path).parent.resolve()}/offline-run-*")
    return summary


def print_by_lr(rows: list[dict[str, Any]], keys: Sequence[str]) -> None:
    lines = ["per learning rate (mean ± std over seeds):"]
    for row in rows:
        cells = [f"{key} {row[f'{key}/mean']:.4f} ± {row[f'{key}/std']:.4f}" for key in keys]
        lines.append(f"  lr={row['lr']:<10g} n={row['members']:<3d} " + "   ".join(cells))
    print("\n".join(lines))
