"""Tests for deltaprop.io.files: exact safetensors round trip; pickles and junk refused."""

from __future__ import annotations

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from deltaprop.io.files import UnsafeFileError, load_params, looks_like_pickle, save_params
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
