"""Tests for deltaprop.run.engines: single, vmap and packed train the same members the same way,
and `keep` freezes exactly the members it is told to."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import compose_config

from deltaprop.model import Model
from deltaprop.population import member_grid
from deltaprop.precision import precision_of
from deltaprop.run.config import read
from deltaprop.run.engines import SWEEP_ENGINES, EngineSpec, make_engine

SIZES = (2, 5, 1)


def spec_for(layout, members, optimizer="adam", batch_size=10, steps_per_epoch=4, **model):
    """The spec of engine `layout` for `members`; `model`: loss= and activation= names."""
    return EngineSpec.create(
        read(compose_config(f"optimizer={optimizer}")).optimizer, steps_per_epoch, 2,
        layout=layout, model=Model.named(SIZES, **model), precision=precision_of("float64"),
        grad="manual", batch_size=batch_size, n_members=len(members))


def engine_for(layout, members, **options):
    return make_engine(spec_for(layout, members, **options))


def data(n=40, seed=4):
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(n, 2)))
    return x, (x[:, :1] * x[:, 1:] > 0).astype(jnp.float64)


def two_epochs(engine, members, x, y):
    state = engine.init(members)
    for _ in range(2):
        state, losses, finite = engine.epoch(state, x, y)
    return state, losses, finite


def max_difference(tree_a, tree_b) -> float:
    return max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree.leaves(tree_a), jax.tree.leaves(tree_b), strict=True))


@pytest.mark.slow
def test_every_engine_trains_each_member_as_its_single_run():
    members = member_grid(0, 2, [0.01, 0.2])
    x, y = data()
    results = {}
    for name in SWEEP_ENGINES:
        engine = engine_for(name, members)
        state, losses, finite = two_epochs(engine, members, x, y)
        assert losses.shape == (4,) and finite.tolist() == [True] * 4  # mean loss per member
        assert engine.epoch._cache_size() == 1  # the second epoch did not recompile
        results[name] = (engine.member_params(state.params), losses)
    assert max_difference(results["packed"], results["vmap"]) < 1e-13
    for member in members:
        single = engine_for("single", [member])
        state, losses, _ = two_epochs(single, [member], x, y)
        params = jax.tree.map(lambda leaf: leaf[0], single.member_params(state.params))
        index = member.index
        member_params = jax.tree.map(lambda leaf, i=index: leaf[i], results["packed"][0])
        assert max_difference(params, member_params) < 1e-13
        np.testing.assert_allclose(losses[0], results["packed"][1][member.index], rtol=1e-12)
    # same seed, different lr: the same start and data order, a different end
    packed_params = results["packed"][0]
    assert max_difference(jax.tree.map(lambda a: a[0], packed_params),
                          jax.tree.map(lambda a: a[2], packed_params)) > 1e-3


@pytest.mark.parametrize("name", SWEEP_ENGINES)
def test_a_non_finite_member_is_flagged_and_keep_freezes_it(name):
    members = member_grid(0, 1, [0.1, float("inf"), 0.3])  # member 1: θ − ∞·g
    engine = engine_for(name, members, optimizer="sgd")
    x, y = data()
    start = engine.init(members)
    new, _, finite = engine.epoch(start, x, y)
    assert finite.tolist() == [True, False, True]
    kept = engine.keep(jnp.asarray(finite), new, start)
    params = {key: engine.member_params(state.params)
              for key, state in (("start", start), ("new", new), ("kept", kept))}
    for m, source in ((0, "new"), (1, "start"), (2, "new")):
        for got, want in zip(jax.tree.leaves(params["kept"]), jax.tree.leaves(params[source])):
            assert np.array_equal(got[m], want[m]), (m, source)
    keys = jax.random.key_data(kept.key)
    assert np.array_equal(keys[1], jax.random.key_data(start.key)[1])  # its data order too
    assert np.array_equal(keys[0], jax.random.key_data(new.key)[0])


def test_unknown_engine_and_a_crowded_single_engine_are_refused():
    with pytest.raises(ValueError, match="engine 'blocked' must be one of single, packed, vmap"):
        engine_for("blocked", member_grid(0, 1, [0.1]))
    with pytest.raises(ValueError, match="the single engine trains one member, not 2"):
        engine_for("single", member_grid(0, 2, [0.1]))


@pytest.mark.parametrize(("loss", "activation"), [
    ("mse", "sigmoid"), pytest.param("bce", "tanh", marks=pytest.mark.slow),  # ~15 s each
])
def test_sweep_engines_train_each_member_as_its_single_run_for_a_cost_and_activation(
    loss, activation
):
    members = member_grid(0, 1, [0.05, 0.5])
    x, y = data()
    model = {"loss": loss, "activation": activation}
    singles = []
    for member in members:
        state, losses, _ = two_epochs(engine_for("single", [member], **model), [member], x, y)
        singles.append((state.params, losses[0]))
    for name in SWEEP_ENGINES:
        engine = engine_for(name, members, **model)
        state, losses, finite = two_epochs(engine, members, x, y)
        assert finite.tolist() == [True, True]
        params = engine.member_params(state.params)
        for member, (single_params, single_loss) in zip(members, singles, strict=True):
            member_params = jax.tree.map(lambda leaf, i=member.index: leaf[i], params)
            assert max_difference(single_params, member_params) <= 1e-10, (name, member)
            np.testing.assert_allclose(losses[member.index], single_loss, rtol=1e-12)
        evaluated = engine.evaluate(state.params, {f"{v}_{split}": a for split in
                                                   ("train", "val", "test")
                                                   for v, a in (("x", x), ("y", y))})
        assert evaluated["val"]["loss"].shape == (2,)
    # the cost changes the training: bce and mse runs end apart
    other = {"loss": "bce" if loss == "mse" else "mse", "activation": activation}
    state, _, _ = two_epochs(engine_for("single", members[:1], **other), members[:1], x, y)
    assert max_difference(state.params, singles[0][0]) > 1e-4


def test_every_axis_of_the_grid_reaches_its_member_and_chunks_change_nothing():
    # weight decay × momentum (adam's b1) × init scale: 8 members; the packed engine trains
    # them in 3 chunks of 3 (the last filled up with a copy of member 0)
    members = member_grid(0, 1, [0.05], [0.0, 0.1], [0.5, 0.9], [0.5, 2.0])
    assert [m.swept for m in members[:1]] == [("lr", "weight_decay", "momentum", "init_scale")]
    x, y = data()
    results = {}
    for name, chunk in (("packed", 3), ("vmap", 0)):
        engine = make_engine(dataclasses.replace(spec_for(name, members), member_chunk=chunk))
        state, losses, finite = two_epochs(engine, members, x, y)
        assert finite.tolist() == [True] * 8 and losses.shape == (8,)
        results[name] = (engine.member_params(state.params), losses)
    assert max_difference(results["packed"], results["vmap"]) < 1e-13
    for member in (members[0], members[3], members[5], members[6]):
        state, losses, _ = two_epochs(engine_for("single", [member]), [member], x, y)
        member_params = jax.tree.map(lambda leaf, i=member.index: leaf[i], results["packed"][0])
        assert max_difference(state.params, member_params) < 1e-13, member
        np.testing.assert_allclose(losses[0], results["packed"][1][member.index], rtol=1e-12)
    # and every axis moves the result: neighbours along each axis end apart
    params = results["packed"][0]
    for first, second in ((0, 4), (0, 2), (0, 1)):  # weight decay, momentum, init scale
        assert max_difference(jax.tree.map(lambda leaf, i=first: leaf[i], params),
                              jax.tree.map(lambda leaf, i=second: leaf[i], params)) > 1e-4
