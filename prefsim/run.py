"""The simulation engine: ``Algorithm(init, step)``, ``run`` and ``sweep``.

Every iterative method in prefsim (a game solver, a trainer, a bandit) is an
:class:`Algorithm`, a pair of pure functions in the style of jax-md's
``simulate`` and gymnax's environments::

  init(key, problem) -> state
  step(key, state, problem) -> (state, info)

``state`` and ``info`` are pytrees whose structure never changes between
steps, so :func:`run` drives the steps with one ``lax.scan`` and
:func:`sweep` vmaps whole runs over seeds (and, optionally, over a batch of
problems), sharding the seed axis over every device of a 1-D
:class:`jax.sharding.Mesh`.

Example::

  import jax, jax.numpy as jnp
  import prefsim

  def init(key, problem):
    return jnp.zeros(())

  def step(key, state, problem):
    state = state + problem["drift"] + jax.random.normal(key)
    return state, {"x": state}

  walk = prefsim.Algorithm(init, step)
  final, infos = prefsim.run(jax.random.key(0), walk, {"drift": 0.1}, 100)
  finals, infos = prefsim.sweep(jax.random.key(0), walk, {"drift": 0.1},
                                100, n_seeds=64)   # infos["x"]: [64, 100]
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prefsim import _checks

PyTree = Any
State = PyTree
Info = PyTree
Problem = PyTree

SEEDS_AXIS = "seeds"


class Algorithm(NamedTuple):
  """An iterative method as a pair of pure functions.

  Attributes:
    init: ``init(key, problem) -> state``, the state before the first step.
    step: ``step(key, state, problem) -> (state, info)``; ``info`` is what a
      run records at every step (stacked along a leading time axis ``T``).

  Factories close over static hyperparameters and return an ``Algorithm``,
  e.g. ``games.extragradient(eta=0.1)``. ``run`` and ``sweep`` compile once
  per ``Algorithm`` object: keep the object to reuse its compiled code.
  """

  init: Callable[[jax.Array, Problem], State]
  step: Callable[[jax.Array, State, Problem], tuple[State, Info]]


def _check_run_args(key: Any, algorithm: Any, n_steps: Any) -> int:
  """Checks what ``run`` and ``sweep`` share; returns ``n_steps`` as an int."""
  if not isinstance(key, jax.Array):
    raise TypeError(f"key must be a jax.random key, got {type(key).__name__}")
  typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
  if not (typed or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,))):
    raise TypeError("key must be a jax.random key (jax.random.key(seed) or "
                    f"jax.random.PRNGKey(seed)), got dtype {key.dtype} and "
                    f"shape {key.shape}")
  keys_shape = key.shape if typed else key.shape[:-1]
  if keys_shape != ():
    raise ValueError(f"key must be a single key, got an array of keys of "
                     f"shape {keys_shape}; sweep derives one key per seed")
  if not isinstance(algorithm, Algorithm):
    raise TypeError("algorithm must be a prefsim.Algorithm(init, step), got "
                    f"{type(algorithm).__name__}")
  return _checks.check_static_int("n_steps", n_steps)


def _run(key, algorithm, problem, n_steps):
  """``run`` without the checks or the jit (so ``sweep`` can vmap it)."""
  init_key, steps_key = jax.random.split(key)
  state = algorithm.init(init_key, problem)

  def body(state, step_key):
    return algorithm.step(step_key, state, problem)

  return jax.lax.scan(body, state, jax.random.split(steps_key, n_steps))


_run_jit = jax.jit(_run, static_argnames=("algorithm", "n_steps"))


def run(key: jax.Array, algorithm: Algorithm, problem: Problem,
        n_steps: int) -> tuple[State, Info]:
  """Runs ``algorithm`` on ``problem`` for ``n_steps`` steps in one ``lax.scan``.

  The key is split once into an init key and a steps key; step ``t`` gets the
  ``t``-th key of ``jax.random.split(steps_key, n_steps)``.

  Args:
    key: a ``jax.random`` key (typed or raw).
    algorithm: the :class:`Algorithm` to run (static: compiled once per object).
    problem: a pytree of arrays (static fields allowed in custom pytrees).
    n_steps: number of steps ``T`` (static), at least 1.
  Returns:
    ``(final_state, infos)``: the state after ``T`` steps and every step's
    ``info`` stacked along a leading axis of length ``T``.
  """
  n_steps = _check_run_args(key, algorithm, n_steps)
  return _run_jit(key, algorithm, problem, n_steps)


def seed_keys(key: jax.Array, n_seeds: int) -> jax.Array:
  """The keys ``jax.random.fold_in(key, i)`` for ``i < n_seeds`` that ``sweep`` uses.

  Seed ``i`` gets the same key whatever the sweep's size, so a run can be
  reproduced alone with ``run(seed_keys(key, n)[i], ...)``.
  """
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
      key, jnp.arange(n_seeds, dtype=jnp.uint32))


def _seed_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), (SEEDS_AXIS,))


@functools.partial(jax.jit,
                   static_argnames=("algorithm", "n_steps", "problem_axis",
                                    "mesh"))
def _sweep_jit(keys, algorithm, problem, n_steps, problem_axis, mesh):
  sharded = NamedSharding(mesh, PartitionSpec(SEEDS_AXIS))
  keys = jax.lax.with_sharding_constraint(keys, sharded)
  one_seed = functools.partial(_run, algorithm=algorithm, n_steps=n_steps)
  if problem_axis is not None:
    # Inner vmap over problems: results are [seeds, problems, ...].
    one_seed_all_problems = jax.vmap(
        lambda key, problem: one_seed(key, problem=problem),
        in_axes=(None, problem_axis))
    out = jax.vmap(one_seed_all_problems, in_axes=(0, None))(keys, problem)
  else:
    out = jax.vmap(lambda key: one_seed(key, problem=problem))(keys)
  return jax.lax.with_sharding_constraint(out, sharded)


def sweep(key: jax.Array, algorithm: Algorithm, problem: Problem, n_steps: int,
          n_seeds: int, *, problem_axis: int | None = None
          ) -> tuple[State, Info]:
  """Runs ``algorithm`` for ``n_seeds`` independent seeds (and problems) at once.

  Seed ``i`` runs with key ``jax.random.fold_in(key, i)`` (see
  :func:`seed_keys`), so its results equal ``run(fold_in(key, i), ...)`` and do
  not depend on ``n_seeds``. The seed axis is sharded over every device of
  a 1-D mesh (``jax.devices()``, axis name ``"seeds"``); when ``n_seeds`` is
  not a multiple of the device count, the seeds are padded with extra ones
  whose results are dropped.

  With ``problem_axis=a``, every array leaf of ``problem`` is a batch of
  problems along axis ``a`` and every seed runs on every problem with the same
  key (common random numbers across problems).

  Args:
    key: a ``jax.random`` key.
    algorithm: the :class:`Algorithm` to run.
    problem: a pytree; a batch of ``C`` problems when ``problem_axis`` is set.
    n_steps: steps per run, ``T``.
    n_seeds: number of seeds ``S``, at least 1.
    problem_axis: the batch axis of the problem leaves, or None for a single
      problem shared by all seeds.
  Returns:
    ``(final_states, infos)`` with leading axes ``[S]`` (or ``[S, C]`` with
    ``problem_axis``); ``infos`` has the time axis ``T`` after them.
  """
  n_steps = _check_run_args(key, algorithm, n_steps)
  n_seeds = _checks.check_static_int("n_seeds", n_seeds)
  if problem_axis is not None:
    problem_axis = _checks.check_static_int("problem_axis", problem_axis, 0)
    sizes = {np.shape(leaf)[problem_axis] if np.ndim(leaf) > problem_axis
             else None for leaf in jax.tree_util.tree_leaves(problem)}
    if None in sizes or len(sizes) != 1:
      raise ValueError(f"with problem_axis={problem_axis}, every leaf of "
                       "problem must have that axis, all of one size; got "
                       f"sizes {sorted(sizes, key=str)}")
  mesh = _seed_mesh()
  n_devices = mesh.devices.size
  n_padded = -(-n_seeds // n_devices) * n_devices
  keys = jax.device_put(seed_keys(key, n_padded),
                        NamedSharding(mesh, PartitionSpec(SEEDS_AXIS)))
  out = _sweep_jit(keys, algorithm, problem, n_steps, problem_axis, mesh)
  if n_padded != n_seeds:
    out = jax.tree_util.tree_map(lambda x: x[:n_seeds], out)
  return out
