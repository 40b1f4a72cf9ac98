"""Tests for deltaprop.playground's settings, data, session and step (no server, no browser).

The oracle here, `direct_step`, is written apart from deltaprop: its own forward pass, its own
costs (optax's BCE from logits, ½(σ(z) − y)²), and jax.grad for every δ_l and gradient. The
browser test (test_playground_browser.py) checks the page's numbers with it too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deltaprop.playground import session as session_module
from deltaprop.playground.problem import GRID, load_problem
from deltaprop.playground.session import TrainingSession, batch_indices
from deltaprop.playground.settings import DEFAULTS, SettingsError, parse_settings
from deltaprop.playground.step import picture
from deltaprop.teaching import svg
from deltaprop.teaching.worked_example import worked_example

PHI = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
SMALL = {"n_samples": 60, "hidden": "3, 3", "batch_size": 8, "steps_per_frame": 5}


def direct_step(params, x, y, learning_rate, loss, activation) -> dict:
    """One SGD step by jax.grad alone: per layer l = 2..L its z, a, δ = ∂L/∂z, ∂L/∂W, ∂L/∂b and
    the updated W, b; the loss before and after. Float64 numpy."""
    params = [{k: jnp.asarray(v, jnp.float64) for k, v in layer.items()} for layer in params]
    x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)

    def run(params, offsets):
        a, zs, activations = x, [], []
        for index, layer in enumerate(params):
            z = a @ layer["W"] + layer["b"] + offsets[index]
            last = index == len(params) - 1
            a = jax.nn.sigmoid(z) if last else PHI[activation](z)
            zs.append(z)
            activations.append(a)
        if loss == "bce":
            cost = jnp.mean(optax.sigmoid_binary_cross_entropy(zs[-1], y))
        else:
            cost = jnp.mean(0.5 * (jax.nn.sigmoid(zs[-1]) - y) ** 2)
        return cost, (zs, activations)

    zeros = [jnp.zeros((x.shape[0], layer["b"].shape[0])) for layer in params]
    (cost, (zs, activations)), (grads, deltas) = jax.value_and_grad(
        run, argnums=(0, 1), has_aux=True)(params, zeros)
    new = [{k: layer[k] - learning_rate * g[k] for k in layer} for layer, g in zip(params, grads)]
    layers = [
        {"W": p["W"], "b": p["b"], "z": z, "a": a, "delta": d, "grad_W": g["W"],
         "grad_b": g["b"], "new_W": n["W"], "new_b": n["b"]}
        for p, z, a, d, g, n in zip(params, zs, activations, deltas, grads, new)
    ]
    return jax.device_get({"layers": layers, "loss_before": cost,
                           "loss_after": run(new, zeros)[0]})


def relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def new_session(**settings) -> TrainingSession:
    parsed = parse_settings({**SMALL, **settings})
    return TrainingSession(parsed, load_problem(parsed))


# ---------------------------------------------------------------------------------- settings


def test_defaults_parse_and_strings_from_the_form_are_read():
    settings = parse_settings({})
    assert settings.dataset == DEFAULTS["dataset"] and settings.hidden == (6, 6)
    form = parse_settings({"learning_rate": "0.05", "hidden": "4, 3,2", "batch_size": "32",
                           "dataset": "spirals", "activation": "relu", "loss": "mse"})
    assert (form.learning_rate, form.hidden, form.batch_size) == (0.05, (4, 3, 2), 32)
    assert parse_settings({"hidden": ""}).hidden == ()  # no hidden layer: logistic regression


@pytest.mark.parametrize("field, value, words", [
    ("learning_rate", "abc", "is not a number"),
    ("learning_rate", "-0.1", "must be > 0"),
    ("learning_rate", "nan", "finite"),
    ("hidden", "4, 9", "from 1 to 8"),
    ("hidden", "1,1,1,1,1,1,1", "at most 6"),
    ("hidden", "4, x", "whole number"),
    ("batch_size", "2.5", "whole number"),
    ("batch_size", True, "is not a number"),
    ("activation", "softmax", "sigmoid, tanh, relu"),
    ("loss", "hinge", "bce, mse"),
    ("dataset", "mnist", "moons, circles, xor, spirals, blobs, csv"),
    ("n_samples", "5", "between 20 and 2000"),
    ("noise", "-1", "between 0 and 3"),
    ("seed", "-3", "between 0"),
    ("steps_per_frame", "0", "between 1 and 200"),
    ("colour", "red", "unknown setting"),
])
def test_a_bad_value_is_refused_naming_its_field(field, value, words):
    with pytest.raises(SettingsError) as raised:
        parse_settings({field: value})
    assert raised.value.field == field
    assert str(raised.value).startswith(field) or field in str(raised.value)
    assert words in str(raised.value)


def test_a_batch_larger_than_the_training_split_is_refused():
    with pytest.raises(SettingsError, match=r"batch_size=100 is larger than the training "
                       r"split \(36 examples\)") as raised:
        load_problem(parse_settings({"n_samples": 60, "batch_size": 100}))
    assert raised.value.field == "batch_size"


# -------------------------------------------------------------------------------------- data


def test_every_synthetic_dataset_loads_split_and_standardized():
    for name in ("moons", "circles", "xor", "spirals", "blobs"):
        problem = load_problem(parse_settings({"dataset": name, "n_samples": 100}))
        assert problem.x_train.shape == (60, 2) and problem.x_val.shape == (20, 2)
        np.testing.assert_allclose(problem.x_train.mean(axis=0), 0, atol=1e-12)
        assert set(np.unique(problem.y_train)) == {0.0, 1.0}
        assert problem.grid.shape == (GRID * GRID, 2)
        x_from, x_to, y_from, y_to = problem.extent
        assert problem.grid[0, 0] == x_from and problem.grid[0, 1] == y_to  # top left first
        assert problem.grid[-1, 0] == x_to and problem.grid[-1, 1] == y_from


CSV = "a,b,c,label\n" + "\n".join(
    f"{i % 7},{(i * 3) % 5},{i % 2},{int(i % 7 > 3)}" for i in range(50))


def test_a_csv_trains_and_its_extra_features_are_held_at_zero_on_the_grid():
    problem = load_problem(parse_settings({"dataset": "csv", "csv": CSV, "batch_size": 4}))
    assert problem.feature_names == ("a", "b", "c") and problem.x_train.shape == (30, 3)
    assert np.all(problem.grid[:, 2] == 0)
    assert any("slice through 'a' and 'b'" in note for note in problem.notes)


@pytest.mark.parametrize("text, label, field, words", [
    ("a,b,label\n1,2,0\n1,x,1\n", "label", "csv", "non-numeric value 'x'"),
    ("a,b,label\n1,2,0\n3,4,2\n", "label", "csv", "labels must be 0 or 1"),
    ("a,b,target\n1,2,0\n3,4,1\n", "label", "csv_label", "'label' is not a column of the CSV"),
    ("a,label\n1,0\n2,1\n", "label", "csv", "1 feature column"),
    ("", "label", "csv", "choose a CSV file"),
])
def test_a_bad_csv_is_refused_naming_the_field(text, label, field, words):
    with pytest.raises(SettingsError) as raised:
        load_problem(parse_settings({"dataset": "csv", "csv": text, "csv_label": label}))
    assert raised.value.field == field
    assert words in str(raised.value)
    assert "/tmp" not in str(raised.value)  # the temporary file is never named


# ----------------------------------------------------------------------------------- session


def test_minibatches_cover_each_epoch_once_and_are_fixed_by_seed_and_step():
    epoch = np.concatenate([batch_indices(3, t, 20, 6) for t in range(3)])  # 3 batches of 6
    assert len(set(epoch.tolist())) == 18 and epoch.max() < 20
    np.testing.assert_array_equal(batch_indices(3, 1, 20, 6), batch_indices(3, 1, 20, 6))
    assert not np.array_equal(batch_indices(3, 0, 20, 6), batch_indices(3, 3, 20, 6))


def test_training_lowers_the_loss_on_moons():
    session = new_session(n_samples=200, hidden="6, 6", batch_size=16, learning_rate=0.3)
    first = session.history[0]
    for _ in range(30):
        session.advance(10)
    last = session.history[-1]
    assert session.step == 300 and last["step"] == 300
    assert last["train_loss"] < 0.5 * first["train_loss"]
    assert last["val_loss"] < 0.6 * first["val_loss"]
    assert last["train_accuracy"] > 0.85
    boundary = session.frame()["boundary"]
    assert len(boundary) == GRID * GRID and 0 < min(boundary) < 0.2 and max(boundary) > 0.8


@pytest.mark.parametrize("activation, loss", [("sigmoid", "bce"), ("tanh", "mse"),
                                              ("relu", "bce")])
def test_a_steps_numbers_equal_jax_grad_in_float64(activation, loss):
    session = new_session(activation=activation, loss=loss, learning_rate=0.7)
    session.advance(5)
    record = session.current_step()
    rows = batch_indices(session.settings.seed, 5, 36, 8)
    np.testing.assert_array_equal(record.indices, rows)
    np.testing.assert_array_equal(record.x, session.problem.x_train[rows])
    oracle = direct_step(session.params, record.x, record.y, 0.7, loss, activation)
    assert record.largest_error < 1e-12 and record.passed
    for layer, expected in zip(record.layers, oracle["layers"], strict=True):
        for name, ours in (("z", layer.pre_activation), ("a", layer.activation),
                           ("delta", layer.delta), ("grad_W", layer.grad_weights),
                           ("grad_b", layer.grad_biases), ("new_W", layer.new_weights),
                           ("new_b", layer.new_biases)):
            assert relative(ours, expected[name]) < 1e-12, (layer.layer, name)
    assert record.loss_before == pytest.approx(float(oracle["loss_before"]), rel=1e-12)
    assert record.loss_after == pytest.approx(float(oracle["loss_after"]), rel=1e-12)


def test_the_step_shown_is_the_step_training_takes():
    session = new_session(activation="tanh")
    session.advance(5)
    record = session.current_step()
    session.advance(1)
    for layer, trained in zip(record.layers, session.params, strict=True):
        assert relative(layer.new_weights, trained["W"]) < 1e-14
        assert relative(layer.new_biases, trained["b"]) < 1e-14
    # and the charts' ‖δ_l‖ at step 5 are the ones of the step's minibatch
    point = next(p for p in session.history if p["step"] == 5)
    np.testing.assert_allclose(point["delta_norms"],
                               [np.linalg.norm(layer.delta) for layer in record.layers], rtol=1e-12)


def test_for_sigmoid_and_bce_the_step_is_the_worked_examples():
    session = new_session(activation="sigmoid", loss="bce", learning_rate=0.5)
    record = session.current_step()
    example = worked_example(session.params, record.x, record.y, 0.5)
    assert example.passed
    ours, theirs = picture(record, 2), svg.picture_of_example(example, 2)
    for name in ("activations", "deltas", "weights", "grad_weights", "biases", "grad_biases"):
        for a, b in zip(getattr(ours, name), getattr(theirs, name), strict=True):
            assert relative(a, b) < 1e-12, name
    for layer, theirs_layer in zip(record.layers, example.forward_layers, strict=True):
        assert relative(layer.new_weights, theirs_layer.new_weights) < 1e-12
    assert record.loss_after == pytest.approx(example.loss_after, rel=1e-12)
    drawn = svg.format_svg(ours)
    assert drawn.startswith("<svg") and 'data-q="delta"' in drawn


def test_a_restart_with_the_same_shapes_or_another_learning_rate_compiles_nothing():
    new_session(learning_rate=0.1).advance(5)
    compiled = (session_module.train_steps._cache_size(), session_module.measure._cache_size())
    for rate, seed in ((0.2, 0), (3.0, 1), (0.01, 2)):
        new_session(learning_rate=rate, seed=seed).advance(5)
    assert (session_module.train_steps._cache_size(),
            session_module.measure._cache_size()) == compiled
    new_session(hidden="4").advance(5)  # another shape compiles once more
    assert session_module.train_steps._cache_size() == compiled[0] + 1


def test_a_diverging_run_stops_and_says_so_keeping_the_last_finite_network():
    session = new_session(learning_rate=1e200, activation="relu", loss="mse")
    session.advance(5)
    session.advance(5)  # refused: training has stopped
    assert "stopped being finite" in session.stopped and "learning_rate=1e+200" in session.stopped
    frame = session.frame()
    assert frame["stopped"] == session.stopped
    assert all(np.all(np.isfinite(w)) for w in frame["weights"])
    assert np.isfinite(frame["boundary"]).all()
    assert frame["step"] == 0 and len(session.history) == 1  # the diverged frame is dropped
