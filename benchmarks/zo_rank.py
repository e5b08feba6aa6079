r"""The ``zo_rank`` quadratic sweep: prefsim against NumPy, seed by seed.

The work: the study's quadratic (:mod:`studies.zo_rank`; ``D = 100``,
:math:`x_0 = 0`) optimised from rankings by every rank-oracle method of the
study — ZO-RankSGD with ``(m, k)`` in {(2, 1), (5, 5), (10, 1), (10, 5),
(10, 10)} and comparison-only descent — at the study's step sizes, for ``T``
queries (4,000; ``--quick``: 1,000), each step also recording ``f(x)`` as
the study does. A *seed-step* is one query and update of one seed.

The tools:

* **prefsim**: one :func:`prefsim.sweep` per method over ``S`` seeds (64;
  ``--quick``: 16), compiled once and then timed (best of several calls).
* **NumPy**, the loop a user would write: seeds one by one, steps one by
  one, each step vectorised over the ``m`` points (perturbations from
  NumPy's PCG64 generator, the ``m`` values as one matrix product, ranking
  by ``argsort``, the comparison-graph weights by one scatter, the direction
  as one vector-matrix product), in float64. Its rate comes from a few seeds
  and is per seed-step, like prefsim's.

Same work: NumPy's step is checked against prefsim's on prefsim's own
perturbations (drawn from the documented key schedule of :func:`prefsim.run`
and fed to the NumPy step, untimed): after 200 steps of ZO-RankSGD (10, 10)
and of comparison-only on seed 0, the iterates must agree to 1e-4; and the
timed NumPy runs must end, per method, at a gap within a factor 3 of
prefsim's mean.

Where the time goes: a step of ZO-RankSGD draws ``m·D`` Gaussians (1,000
for ``m = 10``), and on a CPU JAX's counter-based generator (threefry) costs
about as much per sample as NumPy's PCG64 — both are timed here and reported
as rows. prefsim removes the interpreter's per-step overhead and batches the
seeds, so its lead is largest where the step draws few samples
(comparison-only, ``m = 2``) and smallest at ``m = 10``. The headline ratio
is over the whole sweep: NumPy's total time over prefsim's for the same
seed-steps.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import prefsim
from benchmarks._harness import BenchResult
from prefsim import zeroth_order as zo
from prefsim.run import seed_keys
from studies import zo_rank as study
from studies._harness import check

DESCRIPTION = ("zo_rank quadratic sweep (ZO-RankSGD at five (m, k), "
               "comparison-only): prefsim sweep vs NumPy seed by seed")

COMPARISON = "comparison-only"
CHECK_STEPS = 200


def _methods() -> dict[str, tuple[int, int, float]]:
  """name -> (m, k, lr) at the study's step sizes; comparison has m = 0."""
  eta0, _ = study.PROBLEMS["quadratic"]
  out = {study._rank_name(m, k): (m, k, eta0 / zo.mean_scale(m, k))
         for m, k in study.RANK}
  out[COMPARISON] = (0, 0, eta0 / np.sqrt(2 / np.pi))
  return out


def _prefsim_algorithm(m, k, lr, mu):
  if m == 0:
    return zo.comparison_sgd(lr, mu)
  return zo.zo_rank_sgd(lr, m, k, mu)


# ----------------------------------------------------------------- NumPy


def _numpy_weights(ranking, m, k):
  """ZO-RankSGD weights of a ranking (best first), by one scatter."""
  w = np.full(m, float(k))
  w[ranking] = 2.0 * np.arange(k) - (m - 1)
  return w / (k * (k - 1) // 2 + k * (m - k))


def _numpy_quadratic(a, b):
  def f(x):        # x: [..., D]
    return np.einsum("...i,...i->...", x @ a, x) + x @ b
  return f


def _numpy_rank_step(f, x, xi, m, k, lr, mu):
  """One ZO-RankSGD step on given perturbations xi [m, D]."""
  ranking = np.argsort(f(x + mu * xi), kind="stable")[:k]
  return x - lr * (_numpy_weights(ranking, m, k) @ xi)


def _numpy_comparison_step(f, x, xi, lr, mu):
  """One comparison-only step on a given perturbation xi [D]."""
  sign = 1.0 if f(x) <= f(x + mu * xi) else -1.0
  return x - lr * sign * xi


def _numpy_run(seed, f, x0, m, k, lr, mu, n_steps):
  """One seed: the steps in a loop, each vectorised; returns f per step."""
  rng = np.random.default_rng(seed)
  x = x0.copy()
  dim = x.shape[0]
  values = np.empty(n_steps)
  for t in range(n_steps):
    if m == 0:
      x = _numpy_comparison_step(f, x, rng.standard_normal(dim), lr, mu)
    else:
      x = _numpy_rank_step(f, x, rng.standard_normal((m, dim)), m, k, lr, mu)
    values[t] = f(x)
  return values


def _prefsim_perturbations(key, m, dim, n_steps):
  """The perturbations prefsim.run draws with ``key`` (its key schedule)."""
  _, steps_key = jax.random.split(key)
  shape = (dim,) if m == 0 else (m, dim)

  def one(step_key):
    key_xi, _ = jax.random.split(step_key)
    return jax.random.normal(key_xi, shape)

  return np.asarray(jax.vmap(one)(jax.random.split(steps_key, n_steps)),
                    np.float64)


def _same_steps_gap(problem, f_np, mu, key) -> dict[str, float]:
  """max |x_numpy - x_prefsim| after CHECK_STEPS on prefsim's perturbations."""
  out = {}
  dim = problem.x0.shape[0]
  for name in (study._rank_name(10, 10), COMPARISON):
    m, k, lr = _methods()[name]
    final, _ = prefsim.run(key, _prefsim_algorithm(m, k, lr, mu), problem,
                           CHECK_STEPS)
    x = np.zeros(dim)
    for xi in _prefsim_perturbations(key, m, dim, CHECK_STEPS):
      x = (_numpy_comparison_step(f_np, x, xi, lr, mu) if m == 0 else
           _numpy_rank_step(f_np, x, xi, m, k, lr, mu))
    out[name] = float(np.max(np.abs(x - np.asarray(final.x, np.float64))))
  return out


def _time_rng(n_samples: int) -> dict[str, float]:
  """ns per standard normal: JAX (jitted, default PRNG) and NumPy PCG64."""
  draw = jax.jit(lambda key: jax.random.normal(key, (n_samples,)).sum())
  jax.block_until_ready(draw(jax.random.key(0)))
  start = time.perf_counter()
  jax.block_until_ready(draw(jax.random.key(1)))
  jax_ns = (time.perf_counter() - start) / n_samples * 1e9
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  for _ in range(n_samples // 1000):
    rng.standard_normal((10, 100))
  numpy_ns = (time.perf_counter() - start) / n_samples * 1e9
  return {"jax": jax_ns, "numpy": numpy_ns}


def run(quick: bool) -> BenchResult:
  n_steps = 1000 if quick else 4000
  n_seeds = 16 if quick else 64
  n_numpy_seeds = 2 if quick else 3
  repeat = 3 if quick else 5
  _, mu = study.PROBLEMS["quadratic"]
  problem, f_star, _ = study._problem("quadratic")
  a = np.asarray(jax.hessian(problem.f)(problem.x0), np.float64) / 2
  b = np.asarray(jax.grad(problem.f)(problem.x0), np.float64)
  f_np = _numpy_quadratic(a, b)
  x0 = np.zeros(problem.x0.shape[0])
  key = jax.random.key(1)

  rows, claims = [], []
  total = {"prefsim": 0.0, "numpy": 0.0}
  for name, (m, k, lr) in _methods().items():
    alg = _prefsim_algorithm(m, k, lr, mu)
    sweep = lambda: prefsim.sweep(key, alg, problem, n_steps, n_seeds)
    start = time.perf_counter()
    _, info = jax.block_until_ready(sweep())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
      start = time.perf_counter()
      jax.block_until_ready(sweep())
      times.append(time.perf_counter() - start)
    prefsim_rate = n_seeds * n_steps / min(times)
    prefsim_gap = float(np.mean(np.asarray(info["f"][:, -1], np.float64))
                        - f_star)

    start = time.perf_counter()
    numpy_values = [_numpy_run(seed, f_np, x0, m, k, lr, mu, n_steps)
                    for seed in range(n_numpy_seeds)]
    numpy_seconds = time.perf_counter() - start
    numpy_rate = n_numpy_seeds * n_steps / numpy_seconds
    numpy_gap = float(np.mean([v[-1] for v in numpy_values]) - f_star)

    seed_steps = n_seeds * n_steps
    total["prefsim"] += seed_steps / prefsim_rate
    total["numpy"] += seed_steps / numpy_rate
    rows.append({"method": name, "tool": "prefsim sweep", "seeds": n_seeds,
                 "seed_steps_per_s": prefsim_rate,
                 "first_call_s": first, "final_gap": prefsim_gap})
    rows.append({"method": name, "tool": "numpy, seed by seed",
                 "seeds": n_numpy_seeds, "seed_steps_per_s": numpy_rate,
                 "final_gap": numpy_gap})
    claims.append(check(
        f"{name}: NumPy's mean final gap / prefsim's (same method, "
        f"{n_numpy_seeds} vs {n_seeds} seeds)", numpy_gap / prefsim_gap,
        lo=1 / 3, hi=3.0))

  for name, gap in _same_steps_gap(problem, f_np, mu,
                                   seed_keys(key, 1)[0]).items():
    claims.append(check(
        f"{name}: max |x_numpy - x_prefsim| after {CHECK_STEPS} steps on "
        "prefsim's perturbations (seed 0)", gap, hi=1e-4))
  rng = _time_rng(2_000_000)
  rows.append({"method": "(one standard normal)", "tool": "jax.random.normal "
               "(threefry, jit)", "ns_per_sample": rng["jax"]})
  rows.append({"method": "(one standard normal)", "tool": "numpy PCG64 "
               "standard_normal((10, 100))", "ns_per_sample": rng["numpy"]})
  ratio = total["numpy"] / total["prefsim"]
  claims.append(check(
      "whole sweep: NumPy seed-by-seed time / prefsim sweep time, same "
      "seed-steps", ratio, lo=20.0))
  return BenchResult(
      rows=rows, ratio=ratio,
      ratio_label="NumPy seed-by-seed time / prefsim sweep time, whole sweep",
      config={"n_steps": n_steps, "n_seeds": n_seeds,
              "n_numpy_seeds": n_numpy_seeds, "repeat": repeat,
              "dim": study.DIM, "mu": mu, "methods": {
                  n: {"m": m, "k": k, "lr": lr}
                  for n, (m, k, lr) in _methods().items()},
              "timing": "prefsim: best of warm calls; NumPy: one run",
              "numpy_dtype": "float64",
              "prefsim_dtype": str(jnp.zeros(()).dtype),
              "total_seconds_for_prefsim_seed_steps": total},
      claims=claims)
