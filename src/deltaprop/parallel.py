"""Data parallelism with jax.sharding: each minibatch split across the local devices along the
batch axis, parameters and optimizer state replicated. Gradients are sums over the batch
(∂L/∂W_l = a_{l−1}ᵀ δ_l), so XLA inserts one all-reduce per leaf; results equal single-device
training up to the order of floating-point additions.

Several hosts: `trainer.distributed=true` calls `jax.distributed.initialize()`, which reads the
coordinator address, process count and id from the environment (SLURM, or JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh() -> Mesh:
    """A one-axis mesh over every device JAX sees (all hosts' devices after initialize())."""
    return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split axis 0 (examples) across the mesh; features stay whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of a pytree (params, optimizer state, keys) on all devices."""
    return jax.device_put(tree, replicated(mesh))


def check_divisible(batch_size: int, n_train: int, mesh: Mesh) -> None:
    """The per-step batch must split evenly across devices."""
    devices = mesh.devices.size
    effective = min(batch_size, n_train)
    if effective % devices:
        raise ValueError(
            f"trainer.batch_size={batch_size} (effective {effective}) must be divisible by the "
            f"{devices} devices of trainer.data_parallel=true"
        )


def initialize_distributed() -> None:
    """Multi-host: join the other processes (addresses and ids from the environment)."""
    jax.distributed.initialize()
