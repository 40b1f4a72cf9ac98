"""Tests for deltaprop.io.files: exact safetensors round trip; pickles and junk refused."""

from __future__ import annotations

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from deltaprop.io.files import (
    UnsafeFileError,
    load_params,
    load_params_and_metadata,
    looks_like_pickle,
    save_params,
)
from deltaprop.network import init_params


class Evil:
    """Unpickling this creates a file: proof that a loader did (or did not) unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_round_trip_is_exact(tmp_path, dtype):
    params = init_params(jax.random.key(0), [3, 5, 4, 1], "xavier", dtype)
    loaded = load_params(save_params(params, tmp_path / "params.safetensors"))
    assert len(loaded) == 3
    for original, restored in zip(params, loaded, strict=True):
        for leaf in ("W", "b"):
            assert restored[leaf].dtype == np.dtype(dtype)
            assert np.array_equal(restored[leaf], np.asarray(original[leaf]))


def test_metadata_records_sizes(tmp_path):
    from safetensors import safe_open

    path = save_params(init_params(jax.random.key(1), [2, 3, 1], "normal", jnp.float32),
                       tmp_path / "p.safetensors")
    with safe_open(str(path), framework="numpy") as file:
        assert json.loads(file.metadata()["sizes"]) == [2, 3, 1]


def test_pickle_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "params.safetensors"  # a pickle under an innocent name
    path.write_bytes(pickle.dumps(Evil(marker)))
    assert looks_like_pickle(path)
    with pytest.raises(UnsafeFileError, match="looks like a pickle .* pickles are never unpickled"):
        load_params(path)
    assert not marker.exists()


def test_junk_is_refused(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a tensor file at all")
    assert not looks_like_pickle(path)
    with pytest.raises(UnsafeFileError, match="is not a safetensors file"):
        load_params(path)


def test_truncated_file_is_refused(tmp_path):
    path = save_params(init_params(jax.random.key(0), [2, 3, 1], "xavier", jnp.float32),
                       tmp_path / "p.safetensors")
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(UnsafeFileError):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such parameter file"):
        load_params(tmp_path / "absent.safetensors")


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": np.zeros((2, 2), np.float32)}, str(path))
    with pytest.raises(UnsafeFileError, match=r"unexpected tensors: \['encoder.weight'\]"):
        load_params(path)


def test_missing_layer_is_refused(tmp_path):
    path = tmp_path / "gap.safetensors"
    save_file({"layer_2/W": np.zeros((2, 3), np.float32), "layer_2/b": np.zeros(3, np.float32),
               "layer_4/W": np.zeros((3, 1), np.float32), "layer_4/b": np.zeros(1, np.float32)},
              str(path))
    with pytest.raises(UnsafeFileError, match="missing tensor 'layer_3/W'"):
        load_params(path)


def test_shapes_that_do_not_chain_are_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file({"layer_2/W": np.zeros((2, 3), np.float32), "layer_2/b": np.zeros(3, np.float32),
               "layer_3/W": np.zeros((4, 1), np.float32), "layer_3/b": np.zeros(1, np.float32)},
              str(path))
    with pytest.raises(UnsafeFileError, match=r"layer 3 has W \(4, 1\) and b \(1,\), which do "
                                              r"not chain"):
        load_params(path)


def test_sizes_metadata_must_agree(tmp_path):
    path = tmp_path / "lying.safetensors"
    save_file({"layer_2/W": np.zeros((2, 3), np.float32), "layer_2/b": np.zeros(3, np.float32)},
              str(path), metadata={"sizes": "[2, 4]"})
    with pytest.raises(UnsafeFileError, match=r"metadata sizes \[2, 4\] disagree with the "
                                              r"tensors' \[2, 3\]"):
        load_params(path)


# ---------------------------------------------------------------- files that verify themselves


def test_the_digest_is_saved_and_verified(tmp_path):
    from safetensors import safe_open

    from deltaprop.io.files import params_digest

    params = init_params(jax.random.key(2), [3, 4, 1], "xavier", jnp.float64)
    path = save_params(params, tmp_path / "p.safetensors")
    with safe_open(str(path), framework="numpy") as file:
        saved = json.loads(file.metadata()["digest"])
        tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
    assert saved == params_digest(tensors) and saved.startswith("sha256:") and len(saved) == 71
    metadata = load_params_and_metadata(path)[1]
    assert "digest" not in metadata  # verified, not handed on


def test_the_digest_tells_every_part_of_a_tensor_apart():
    from deltaprop.io.files import params_digest

    weights = {"layer_2/W": np.arange(6, dtype=np.float32).reshape(2, 3),
               "layer_2/b": np.zeros(3, np.float32)}
    digests = {
        params_digest(weights),
        params_digest({**weights, "layer_2/W": weights["layer_2/W"].reshape(3, 2)}),  # shape
        params_digest({**weights, "layer_2/W": weights["layer_2/W"].view(np.int32)}),  # dtype
        params_digest({"layer_3/W": weights["layer_2/W"], "layer_2/b": weights["layer_2/b"]}),
        params_digest({**weights, "layer_2/b": np.array([0, 0, 1e-45], np.float32)}),  # bytes
    }
    assert len(digests) == 5
    assert params_digest(dict(reversed(weights.items()))) == params_digest(weights)  # fixed order


def flip_a_byte_of(path, tensor_name):
    """Flip the lowest bit of the first byte of `tensor_name`'s data in a safetensors file."""
    raw = bytearray(path.read_bytes())
    header_size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_size])
    start = 8 + header_size + header[tensor_name]["data_offsets"][0]
    raw[start] ^= 1
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("tensor", ["layer_2/W", "layer_3/b"])
def test_a_flipped_byte_is_refused_in_one_line_naming_the_file(tmp_path, tensor):
    path = save_params(init_params(jax.random.key(0), [2, 3, 1], "xavier", jnp.float32),
                       tmp_path / "params.safetensors")
    flip_a_byte_of(path, tensor)
    with pytest.raises(UnsafeFileError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "do not match the sha256 digest saved with them" in message


def test_a_file_without_a_digest_loads_with_one_note(tmp_path, capsys):
    path = tmp_path / "old.safetensors"
    weights, biases = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
    save_file({"layer_2/W": weights, "layer_2/b": biases}, str(path),
              metadata={"sizes": "[2, 3]"})
    (loaded,) = load_params(path)
    assert np.array_equal(loaded["W"], weights) and np.array_equal(loaded["b"], biases)
    lines = capsys.readouterr().out.splitlines()
    note = (f"note: {path} carries no digest of its tensors (saved before deltaprop wrote "
            "one): loaded unverified")
    assert lines == [note]


def test_a_digest_that_is_not_one_is_refused(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"layer_2/W": np.ones((2, 3), np.float32), "layer_2/b": np.zeros(3, np.float32)},
              str(path), metadata={"digest": '"md5:abc"'})
    with pytest.raises(UnsafeFileError, match=r"its digest 'md5:abc' is not 'sha256:<hex>'"):
        load_params(path)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_tensors_that_are_not_floating_point_are_refused(tmp_path, dtype):
    path = tmp_path / "ints.safetensors"
    save_file({"layer_2/W": np.ones((2, 3), dtype), "layer_2/b": np.zeros(3, dtype)}, str(path))
    with pytest.raises(UnsafeFileError, match=rf"layer 2 W has dtype {np.dtype(dtype).name}; "
                                              r"parameters must be floating point \(float16"):
        load_params(path)


def test_tensors_of_mixed_dtypes_are_refused(tmp_path):
    path = tmp_path / "mixed.safetensors"
    save_file({"layer_2/W": np.ones((2, 3), np.float32), "layer_2/b": np.zeros(3, np.float64)},
              str(path))
    with pytest.raises(UnsafeFileError, match=r"mix dtypes \(float32, float64\)"):
        load_params(path)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_every_floating_dtype_round_trips_with_its_digest(tmp_path, dtype):
    params = init_params(jax.random.key(3), [2, 3, 1], "xavier", jnp.float32)
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
    loaded = load_params(save_params(params, tmp_path / "p.safetensors"))
    for original, restored in zip(params, loaded, strict=True):
        assert restored["W"].dtype.name == dtype
        assert np.array_equal(np.asarray(original["W"]), restored["W"])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_refused_naming_layer_and_leaf(tmp_path, bad):
    params = init_params(jax.random.key(0), [2, 3, 1], "xavier", jnp.float64)
    params = [{"W": np.array(layer["W"]), "b": np.array(layer["b"])} for layer in params]
    params[1]["W"][2, 0] = bad
    params[0]["b"][:2] = bad
    path = save_params(params, tmp_path / "params.safetensors")  # the digest holds: saved as is
    with pytest.raises(UnsafeFileError) as caught:
        load_params(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "non-finite parameters (NaN or ±inf) in layer 2 b (2 of 3), layer 3 W (1 of 3)" \
        in message


def test_metadata_keys_of_the_file_itself_are_reserved(tmp_path):
    params = init_params(jax.random.key(0), [2, 1], "xavier", jnp.float32)
    for key in ("sizes", "digest"):
        with pytest.raises(ValueError, match=f"metadata key '{key}' is reserved"):
            save_params(params, tmp_path / "p.safetensors", {key: 1})
    assert not (tmp_path / "p.safetensors").exists()
