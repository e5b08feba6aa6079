r"""The ``rdpo_noise`` training sweep: prefsim against NumPy and a hand-written scan.

The work: the study's configuration (:mod:`studies.rdpo_noise`) — ``X =
100`` prompts, ``K = 8`` responses, ``D = 8`` features, :math:`\beta = 0.5`,
the five flip rates :math:`\epsilon \in \{0, \dots, 0.4\}` — trained with
rDPO (told the true :math:`\epsilon`) by ``T = 300`` steps of projected
gradient descent (:math:`\eta = 4`, ball :math:`\|\theta\| \le 4`) on ``n``
comparisons, for 128 seeds, at ``n = 3,000`` and ``n = 30,000`` (``--quick``:
32 seeds, ``n = 3,000``). A *seed-step* is one step of one seed on all five
flip rates. prefsim's step costs the same at every ``n`` (it evaluates the
loss on the ``[X, K, K]`` comparison-count table); NumPy's grows with the
number of pairs (or distinct triples), so the ratio grows with ``n``: the
headline is the lowest ratio over the sizes run.

The tools:

* **prefsim**: ``prefsim.sweep`` of :func:`prefsim.offline.offline_po` with
  ``problem_axis=0`` (one call: data sampling, then the steps).
* **hand-written scan**: the same update (the gradient from
  :func:`prefsim.offline.mean_loss_and_grad`, a plain gradient step, the
  projection) written directly as ``jit(vmap(vmap(lax.scan)))`` with the
  same data sampling and the same per-step outputs, without
  :class:`prefsim.Algorithm`, ``run`` or ``sweep`` — the engine must add
  nothing to it.
* **NumPy**, the loop a user would write: the seeds in a Python loop, the
  steps in a Python loop, each step vectorised over the pairs and the five
  flip rates, the rDPO gradient written by hand
  (:math:`\partial\ell/\partial s = \sigma(s) - (1-\epsilon)/(1-2\epsilon)`,
  :math:`s = \beta\theta^\top(\phi_w-\phi_l)`), in float64. Two variants:
  over the ``n`` pairs one by one, and over the distinct
  ``(x, y_w, y_l)`` triples weighted by their counts (at most
  ``X·K·(K-1)``, what prefsim's step evaluates). It is given the very data
  prefsim samples (same keys), so its final :math:`\theta` must match
  prefsim's; its data preparation is not timed.

Timings are the best of several warm calls (compiled once first), the
tools' calls interleaved. prefsim's data sampling (``init``) runs inside the
sweep and NumPy's is not timed, so the comparison with NumPy uses *training*
rates: prefsim's marginal seed-steps per second, from the difference of two
sweeps of ``T`` and ``T0 = 20`` steps; the whole-sweep rate (sampling
included) is reported too. The engine's overhead is judged on whole sweeps
(prefsim and the hand-written scan do identical work, sampling included), as
the median over repeats of the ratio of two back-to-back calls, which cancels
the machine's slow drifts; the marginal per-step times are a difference of
two timings and vary by about 15 % between runs on a shared 2-core machine —
reported as rows, not judged. (Sampling was about 60 % of the sweep at
``n = 30,000`` while :func:`prefsim.data.sample_pairs` drew uniform prompts
by a categorical over ``X``; it draws them with ``randint`` now.)

Where prefsim's time goes: the step evaluates the loss on the ``[X, K,
K]`` tables, 6,400 entries per flip rate at every ``n``, where the NumPy
peer evaluates the distinct triples only (about 2,900 per flip rate at
``n = 3,000``, 5,590 at ``n = 30,000``), so the ratio is lowest at small
``n``. Until :func:`prefsim.offline.mean_loss_and_grad`, the step took
``jax.value_and_grad`` of :func:`prefsim.offline.mean_loss`, and about half
of its time went to transposing ``[X, K, K]`` tables for the column sums of
the loss's second-slot derivative. That function sums rows only (it
evaluates the loss's derivative a second time, on the swapped tables) and
writes out the log-ratios' pullback; the training steps (300 steps, 128
seeds, ``n = 3,000``) took 3.55 and 3.91 s before, 1.99, 2.10 and 1.95 s
after, and the ratio went from 6.60 and 6.16 to 12.5, 11.6 and 12.8 (full
runs, old and new code alternating, on a 2-core CPU with other load, jax
0.10.2). What is left is mostly three elementwise passes over the tables:
the ``exp`` of the log-sigmoid, the loss value (its ``log1p``) and the two
derivative tables (a division each, and the swapped table's ``exp``).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import prefsim
from benchmarks._harness import BenchResult
from prefsim import loglinear
from prefsim import losses
from prefsim import offline
from prefsim.run import seed_keys
from studies import rdpo_noise as study
from studies._harness import check

DESCRIPTION = ("rdpo_noise training sweep: prefsim sweep vs NumPy loops vs a "
               "hand-written jitted lax.scan")

T0 = 20  # The short sweep whose time is subtracted to remove init.


def _problems() -> loglinear.LogLinearProblem:
  """The study's problem at its five flip rates (leaves ``[C, ...]``)."""
  problem = loglinear.make_problem(
      jax.random.key(0), study.N_PROMPTS, study.N_RESPONSES, study.DIM,
      beta=study.BETA, theta_norm=study.THETA_NORM)
  return loglinear.with_flip_rates(problem, study.EPS)


def _prefsim_algorithm(n: int) -> prefsim.Algorithm:
  return offline.offline_po(losses.rdpo, n_pairs=n, lr=study.LR["rdpo"],
                            radius=study.RADIUS,
                            loss_kwargs=offline.known_flip_rate,
                            log_metrics=False)


@functools.partial(jax.jit, static_argnames=("n_pairs", "n_steps"))
def _handwritten(keys, problems, n_pairs, n_steps):
  """The same experiment as ``jit(vmap_seeds(vmap_problems(scan)))``.

  The key schedule is ``prefsim.run``'s (the first half of
  ``split(seed_key)`` draws the data), so the results equal prefsim's.
  """
  lr, radius = study.LR["rdpo"], study.RADIUS

  def one(key, problem):
    init_key, _ = jax.random.split(key)
    data = loglinear.sample_dataset(init_key, problem, n_pairs)
    n_prompts, n_responses, dim = problem.features.shape
    counts = offline.comparison_counts(data, n_prompts, n_responses)

    def body(theta, _):
      value, grad = offline.mean_loss_and_grad(losses.rdpo, theta, counts,
                                               problem, eps=problem.eps)
      new = offline.project_to_ball(theta - lr * grad, radius)
      return new, {"loss": value, "grad_norm": jnp.linalg.norm(grad),
                   "step_norm": jnp.linalg.norm(new - theta),
                   "theta_norm": jnp.linalg.norm(new)}

    return jax.lax.scan(body, jnp.zeros(dim), None, length=n_steps)

  return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(
      keys, problems)


# ----------------------------------------------------------------- NumPy


def _softplus(x):
  return np.logaddexp(0.0, x)


def _sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def _numpy_gd(z, weights, eps, beta, lr, radius, n_steps):
  """Projected GD on the weighted mean rDPO loss, all flip rates at once.

  Args:
    z: ``[C, M, D]`` feature differences phi_w - phi_l of ``M`` comparisons
      (or distinct triples) per flip rate.
    weights: ``[C, M]`` weights summing to 1 per flip rate (1/n per pair, or
      count/n per triple).
    eps: ``[C]`` flip rates.
  Returns:
    ``(theta [C, D], infos)`` with the per-step loss, gradient norm, step
    norm and parameter norm, ``[T, C]`` each.
  """
  n_rates, _, dim = z.shape
  target = ((1 - eps) / (1 - 2 * eps))[:, None]
  a, b = ((1 - eps) / (1 - 2 * eps))[:, None], (eps / (1 - 2 * eps))[:, None]
  theta = np.zeros((n_rates, dim))
  infos = {k: np.empty((n_steps, n_rates))
           for k in ("loss", "grad_norm", "step_norm", "theta_norm")}
  for t in range(n_steps):
    s = beta * np.matmul(z, theta[:, :, None])[:, :, 0]            # [C, M]
    infos["loss"][t] = np.sum(weights * (a * _softplus(-s) - b * _softplus(s)),
                              axis=1)
    g = weights * (_sigmoid(s) - target)                            # [C, M]
    grad = beta * np.matmul(g[:, None, :], z)[:, 0, :]             # [C, D]
    new = theta - lr * grad
    norm = np.linalg.norm(new, axis=1, keepdims=True)
    new = np.where(norm > radius, new * (radius / np.maximum(norm, 1e-300)),
                   new)
    infos["grad_norm"][t] = np.linalg.norm(grad, axis=1)
    infos["step_norm"][t] = np.linalg.norm(new - theta, axis=1)
    infos["theta_norm"][t] = np.linalg.norm(new, axis=1)
    theta = new
  return theta, infos


def _numpy_inputs(problems, keys, n):
  """Per seed, the pair-by-pair and the distinct-triple inputs of NumPy.

  Uses prefsim's own data (``sample_dataset`` with each seed's init key).
  """
  features = np.asarray(problems.features[0], np.float64)         # [X, K, D]
  sample = jax.jit(jax.vmap(loglinear.sample_dataset, in_axes=(None, 0, None)),
                   static_argnums=2)
  out = []
  for key in keys:
    init_key, _ = jax.random.split(key)
    prompt, chosen, rejected = map(np.asarray, sample(init_key, problems, n))
    z_pairs = features[prompt, chosen] - features[prompt, rejected]  # [C, n, D]
    w_pairs = np.full(prompt.shape, 1.0 / n)
    n_prompts, n_responses, _ = features.shape
    counts = np.zeros((len(study.EPS), n_prompts, n_responses, n_responses))
    for c in range(len(study.EPS)):
      np.add.at(counts[c], (prompt[c], chosen[c], rejected[c]), 1.0)
    used = np.flatnonzero(counts.sum(0))                            # [M]
    x, i, j = np.unravel_index(used, counts.shape[1:])
    z_tri = np.broadcast_to(features[x, i] - features[x, j],
                            (len(study.EPS), len(used), features.shape[2]))
    w_tri = counts.reshape(len(study.EPS), -1)[:, used] / n
    out.append(((z_pairs, w_pairs), (np.ascontiguousarray(z_tri), w_tri)))
  return out


# ----------------------------------------------------------------- timing


def _best_interleaved(fns: dict[str, Callable[[], Any]], repeat: int
                      ) -> dict[str, dict[str, float]]:
  """Best and median wall time of each function, calls interleaved so that a
  slow spell of the machine hits every tool alike (each called once first)."""
  for fn in fns.values():
    jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeat):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: {"best": min(t), "median": float(np.median(t)), "all": t}
          for name, t in times.items()}


def _measure(n: int, n_seeds: int, n_numpy_seeds: int, repeat: int
             ) -> tuple[list[dict[str, Any]], list, float, str]:
  """Rows, claims, the training-rate ratio and the fastest peer at one ``n``."""
  n_steps = study.N_STEPS
  problems = _problems()
  eps = np.asarray(study.EPS, np.float64)
  key = jax.random.key(1)
  keys = seed_keys(key, n_seeds)
  alg = _prefsim_algorithm(n)

  def prefsim_sweep(steps):
    return lambda: prefsim.sweep(key, alg, problems, steps, n_seeds,
                                 problem_axis=0)

  def hand_scan(steps):
    return lambda: _handwritten(keys, problems, n, steps)

  t = _best_interleaved({"prefsim": prefsim_sweep(n_steps),
                         "hand": hand_scan(n_steps),
                         "prefsim_t0": prefsim_sweep(T0),
                         "hand_t0": hand_scan(T0)}, repeat)

  inputs = _numpy_inputs(problems, keys[:n_numpy_seeds], n)
  numpy_tools = {"numpy, pair by pair": 0, "numpy, distinct triples": 1}
  numpy_theta, numpy_seconds = {}, {}
  for tool, which in numpy_tools.items():
    start = time.perf_counter()
    numpy_theta[tool] = np.stack([
        _numpy_gd(*inp[which], eps, study.BETA, study.LR["rdpo"],
                  study.RADIUS, n_steps)[0] for inp in inputs])
    numpy_seconds[tool] = time.perf_counter() - start

  finals, _ = prefsim_sweep(n_steps)()
  theta = np.asarray(finals.theta, np.float64)                     # [S, C, D]
  hand_theta = np.asarray(hand_scan(n_steps)()[0], np.float64)

  # Seconds per step of all seeds, init excluded.
  marginal = {name: (t[name]["best"] - t[f"{name}_t0"]["best"]) /
              (n_steps - T0) for name in ("prefsim", "hand")}
  rows = [
      ("prefsim sweep (data sampling + steps)", t["prefsim"]["best"],
       n_seeds),
      ("prefsim sweep, training steps only (marginal)",
       marginal["prefsim"] * n_steps, n_seeds),
      ("hand-written jit(vmap(vmap(lax.scan))) (sampling + steps)",
       t["hand"]["best"], n_seeds),
      ("hand-written scan, training steps only (marginal)",
       marginal["hand"] * n_steps, n_seeds),
      *((tool, seconds, n_numpy_seeds)
        for tool, seconds in numpy_seconds.items()),
  ]
  rows = [{"n": n, "tool": tool, "seconds": float(seconds), "seeds": seeds,
           "seed_steps_per_s": float(seeds * n_steps / seconds)}
          for tool, seconds, seeds in rows]
  fastest = max(rows[4:], key=lambda r: r["seed_steps_per_s"])
  ratio = rows[1]["seed_steps_per_s"] / fastest["seed_steps_per_s"]
  whole_ratio = rows[0]["seed_steps_per_s"] / fastest["seed_steps_per_s"]
  claims = [
      check(f"n={n}, {tool}: max |theta - prefsim's theta| after {n_steps} "
            "steps", np.abs(numpy_theta[tool] - theta[:n_numpy_seeds]).max(),
            hi=1e-4) for tool in numpy_tools
  ]
  claims += [
      check(f"n={n}, hand-written scan: max |theta - prefsim's theta|",
            np.abs(hand_theta - theta).max(), hi=1e-5),
      check(f"n={n}: training seed-steps/s, prefsim / fastest NumPy "
            f"({fastest['tool']})", ratio, lo=10.0),
      check(f"n={n}: whole sweep seed-steps/s (prefsim also samples the "
            "data), prefsim / fastest NumPy", whole_ratio, lo=1.0),
      check(f"n={n}: whole-sweep time, prefsim / hand-written scan, median "
            "of back-to-back pairs (engine adds <= 10%)",
            np.median(np.divide(t["prefsim"]["all"], t["hand"]["all"])),
            hi=1.1),
  ]
  return rows, claims, ratio, fastest["tool"]


def run(quick: bool) -> BenchResult:
  ns = [3000] if quick else [3000, 30000]
  n_seeds = 32 if quick else 128
  n_numpy_seeds = 2 if quick else 6
  repeat = 3 if quick else 7
  rows, claims, ratios = [], [], {}
  for n in ns:
    r, c, ratios[n], peer = _measure(n, n_seeds, n_numpy_seeds, repeat)
    rows += r
    claims += c
  worst = min(ratios, key=ratios.get)
  return BenchResult(
      rows=rows, ratio=ratios[worst],
      ratio_label=(f"prefsim / fastest NumPy training seed-steps per second, "
                   f"lowest over n in {ns} (n={worst})"),
      config={"ns": ns, "n_seeds": n_seeds, "n_numpy_seeds": n_numpy_seeds,
              "n_steps": study.N_STEPS, "t0": T0, "eps": study.EPS,
              "n_prompts": study.N_PROMPTS, "n_responses": study.N_RESPONSES,
              "dim": study.DIM, "beta": study.BETA, "lr": study.LR["rdpo"],
              "radius": study.RADIUS, "repeat": repeat,
              "ratios": {str(n): v for n, v in ratios.items()},
              "timing": "best of interleaved warm calls",
              "numpy_dtype": "float64",
              "prefsim_dtype": str(jnp.zeros(()).dtype)},
      claims=claims)
