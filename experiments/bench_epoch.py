"""A single run's fused epoch against a fixed-batch scan of the same steps, side by side.

    python experiments/bench_epoch.py                  # tiny, medium, large
    python experiments/bench_epoch.py --sizes tiny --repeats 9

Four programs per size, each one jitted `lax.scan` of `steps` SGD steps (optax, deltaprop's
make_optimizer), timed in one process with the repeats interleaved, compile time excluded:

    fixed/autodiff   the same minibatch every step, jax.value_and_grad(loss_fn): the bound
    fixed/manual     the same minibatch every step, the hand-written manual_value_and_grad
    epoch/manual     training.make_train_epoch: a fresh shuffle, then every minibatch in turn
    epoch/autodiff   the same epoch with jax.value_and_grad

Printed: steps/s of each and the ratios epoch/fixed and manual/autodiff (issue 12's goals:
epoch/manual ≥ 0.8 × fixed/autodiff at tiny, manual ≥ autodiff at every size).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

# benchmarking.py sits beside this script, so its directory (sys.path[0]) finds it.
from benchmarking import WORKLOADS, make_problem

from deltaprop.settings import OptimizerSettings
from deltaprop.training import (
    TrainState,
    make_optimizer,
    make_train_epoch,
    make_train_step,
    value_and_grad_fn,
)


def programs(problem) -> dict[str, tuple]:
    """{name: (jitted program, its arguments)}; each program runs `problem.epoch_steps` steps."""
    steps = problem.epoch_steps
    optimizer = make_optimizer(OptimizerSettings(name="sgd", lr=0.1), steps, 1)
    params = problem.device_params()
    opt_state = jax.jit(optimizer.init)(params)
    x_batch, y_batch = jnp.asarray(problem.x), jnp.asarray(problem.y)
    x_train, y_train = jnp.asarray(problem.x_train), jnp.asarray(problem.y_train)
    found = {}
    for grad in ("autodiff", "manual"):
        train_step = make_train_step(optimizer, value_and_grad_fn(grad))

        def fixed(params, opt_state, x, y, train_step=train_step):
            def body(carry, _):
                params, opt_state, _ = train_step(*carry, x, y)
                return (params, opt_state), None

            return jax.lax.scan(body, (params, opt_state), None, steps)[0]

        found[f"fixed/{grad}"] = (jax.jit(fixed), (params, opt_state, x_batch, y_batch))
        epoch = make_train_epoch(optimizer, value_and_grad_fn(grad), problem.batch)
        state = TrainState(params, opt_state, jax.random.key(0), jnp.zeros((), jnp.int32))
        found[f"epoch/{grad}"] = (jax.jit(lambda s, x, y, epoch=epoch: epoch(s, x, y)[0]),
                                  (state, x_train, y_train))
    return found


def time_programs(found: dict[str, tuple], repeats: int) -> dict[str, float]:
    """Median seconds per call of each program, repeats interleaved."""
    for program, arguments in found.values():
        jax.block_until_ready(program(*arguments))  # compile
    seconds: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(repeats):
        for name, (program, arguments) in found.items():
            start = time.perf_counter()
            jax.block_until_ready(program(*arguments))
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,medium,large")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    for name in args.sizes.split(","):
        workload = WORKLOADS[name]
        problem = make_problem(workload, workload.epoch_steps, seed=0)
        medians = time_programs(programs(problem), args.repeats)
        rate = {key: problem.epoch_steps / value for key, value in medians.items()}
        cells = "  ".join(f"{key} {value:,.0f}" for key, value in rate.items())
        print(f"{name} {list(workload.sizes)} b{workload.batch}, steps/s: {cells}")
        print(f"  epoch/manual ÷ fixed/autodiff = {rate['epoch/manual'] / rate['fixed/autodiff']:.2f}"
              f"   epoch/manual ÷ fixed/manual = {rate['epoch/manual'] / rate['fixed/manual']:.2f}"
              f"   manual ÷ autodiff: fixed {rate['fixed/manual'] / rate['fixed/autodiff']:.2f},"
              f" epoch {rate['epoch/manual'] / rate['epoch/autodiff']:.2f}")


if __name__ == "__main__":
    main()
