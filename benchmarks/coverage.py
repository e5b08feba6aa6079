r"""The ``coverage_separation`` sweep: prefsim against a NumPy loop of it.

The work: the study's DPO and HyPO arms (:mod:`studies.coverage_separation`)
— ``S`` problems drawn by the study (``X = 50`` prompts, ``K = 10``
responses, ``D = 8``, :math:`\beta = 0.1`, 2000 pairs), ``T`` Adam steps
(step 0.05) from :math:`\theta = 0`: offline DPO (full batch), and HyPO with
:math:`\lambda = 0.1` and 8 on-policy samples per prompt per step, each step
recording the true reward, the KL to :math:`\pi_{\rm ref}` and the mass off
the data's support. ``S = 32``, ``T = 1000`` (``--quick``: ``S = 8``,
``T = 500``). The two RLHF arms are left out: their NumPy peer would need
its own Bradley-Terry fitter, a comparison of fitters (see ``bt_fit``)
rather than of training loops.

The tools:

* **prefsim**: the study's call, :func:`prefsim.sweep` with
  ``problem_axis=0`` over the ``S`` problems, one per arm.
* **NumPy**, the loop a user would write: the problems in a Python loop, the
  steps in a Python loop, each step vectorised over prompts and responses in
  float64 — the DPO gradient on the ``[X, K, K]`` comparison counts by hand,
  HyPO's REINFORCE estimate of the KL gradient with a leave-one-out baseline
  (inverse-CDF sampling from NumPy's generator), Adam as optax writes it.
  It trains on the very problems prefsim trains on.

Agreement: DPO is deterministic, so each problem's final true reward, KL
and unseen mass must match prefsim's to 1e-3; HyPO samples from other
random streams, so its final metrics are compared paired by problem (8
problems): the mean difference must lie within 4 standard errors of 0. Timings are the best of several warm
calls (compiled once first); NumPy is timed once, over a subset of the
problems, and scaled to ``S``.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import prefsim
from benchmarks._harness import BenchResult, time_call
from studies import coverage_separation as study
from studies._harness import check

DESCRIPTION = ("coverage_separation sweep (DPO, HyPO): prefsim sweep vs a "
               "NumPy loop of the same runs")

_ADAM = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _metrics(logp, ref, rewards, mask):
  p = np.exp(logp)
  return (np.mean(np.sum(p * rewards, -1)),
          np.mean(np.sum(p * (logp - ref), -1)),
          np.mean(np.sum(np.where(mask, 0.0, p), -1)))


def _numpy_run(problem, n_steps, lam, rng):
  """One problem, ``n_steps`` Adam steps of DPO (+ lam * sampled KL), float64.

  Returns ``[T, 3]`` (reward, kl, out_of_support_mass) after each step.
  """
  phi = np.asarray(problem["features"], np.float64)             # [X, K, D]
  ref = np.asarray(problem["ref_logprobs"], np.float64)
  rewards = np.asarray(problem["rewards"], np.float64)
  counts = np.asarray(problem["counts"], np.float64)            # [X, K, K]
  mask = np.asarray(problem["mask"])
  beta = float(problem["beta"])
  n_pairs = counts.sum()
  n_prompts, _, dim = phi.shape
  n = study.N_SAMPLES
  theta, m, v = np.zeros(dim), np.zeros(dim), np.zeros(dim)
  out = np.empty((n_steps, 3))
  rows = np.arange(n_prompts)[:, None]
  for t in range(n_steps):
    h = phi @ theta                                             # [X, K]
    margin = beta * (h[:, :, None] - h[:, None, :])             # [X, K, K]
    dmargin = -counts * 0.5 * (1 - np.tanh(0.5 * margin)) / n_pairs
    dh = beta * (dmargin.sum(2) - dmargin.sum(1))               # [X, K]
    grad = np.einsum("xk,xkd->d", dh, phi)
    if lam:
      logp = _log_softmax(ref + h)
      p = np.exp(logp)
      cdf = np.cumsum(p, -1)
      u = rng.random((n_prompts, n)) * cdf[:, -1:]
      y = np.minimum((cdf[:, None, :] <= u[:, :, None]).sum(-1),
                     p.shape[1] - 1)                            # [X, n]
      d = (logp - ref)[rows, y]
      baseline = (d.sum(1, keepdims=True) - d) / (n - 1)
      score = phi[rows, y] - np.einsum("xk,xkd->xd", p, phi)[:, None]
      grad = grad + lam * np.einsum("xsd,xs->d", score,
                                    d - baseline) / (n_prompts * n)
    m = _ADAM["b1"] * m + (1 - _ADAM["b1"]) * grad
    v = _ADAM["b2"] * v + (1 - _ADAM["b2"]) * grad ** 2
    m_hat = m / (1 - _ADAM["b1"] ** (t + 1))
    v_hat = v / (1 - _ADAM["b2"] ** (t + 1))
    theta = theta - study.LR * m_hat / (np.sqrt(v_hat) + _ADAM["eps"])
    out[t] = _metrics(_log_softmax(ref + phi @ theta), ref, rewards, mask)
  return out


def run(quick: bool) -> BenchResult:
  n_seeds, n_steps = (8, 500) if quick else (32, 1000)
  n_numpy = 2 if quick else 4
  batch = study.problems(n_seeds)
  arms = dict(list(study.algorithms().items())[:2])             # DPO, HyPO
  lams = {name: (study.LAM if "HyPO" in name else 0.0) for name in arms}
  key = jax.random.key(1)
  rows, claims, prefsim_s, numpy_s = [], [], 0.0, 0.0
  for name, alg in arms.items():
    def sweep(alg=alg):
      return prefsim.sweep(key, alg, batch, n_steps, 1, problem_axis=0)[1]
    timing = time_call(sweep, repeat=3)
    info = {k: np.asarray(v[0], np.float64) for k, v in sweep().items()}
    ours = np.stack([info["reward"][:, -1], info["kl"][:, -1],
                     info["out_of_support_mass"][:, -1]], -1)   # [S, 3]
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    theirs = np.stack([
        _numpy_run(jax.tree.map(lambda v, i=i: np.asarray(v[i]),
                                batch._asdict()), n_steps, lams[name],
                   rng)[-1] for i in range(n_numpy)])           # [n, 3]
    seconds = (time.perf_counter() - start) * n_seeds / n_numpy
    rows += [{"arm": name, "tool": "prefsim sweep", "seconds":
              timing["best"], "seeds": n_seeds,
              "seed_steps_per_s": n_seeds * n_steps / timing["best"]},
             {"arm": name, "tool": "numpy loop (scaled from "
              f"{n_numpy} seeds)", "seconds": seconds, "seeds": n_seeds,
              "seed_steps_per_s": n_seeds * n_steps / seconds}]
    prefsim_s += timing["best"]
    numpy_s += seconds
    if lams[name]:
      # Other random streams: compare means over problems.
      full = np.stack([_numpy_run(jax.tree.map(
          lambda v, i=i: np.asarray(v[i]), batch._asdict()), n_steps,
          lams[name], rng)[-1] for i in range(n_numpy, min(n_seeds, 8))])
      diff = np.concatenate([theirs, full]) - ours[:n_numpy + len(full)]
      z = np.abs(diff.mean(0)) / (diff.std(0, ddof=1) / np.sqrt(len(diff)))
      claims.append(check(
          f"{name}: final (J, KL, unseen mass), NumPy - prefsim paired over "
          f"{len(diff)} problems: max |mean| in standard errors", z.max(),
          hi=4.0))
    else:
      claims.append(check(f"{name}: max |final (J, KL, unseen mass) - "
                          "prefsim's| per problem",
                          np.abs(theirs - ours[:n_numpy]).max(), hi=1e-3))
  ratio = numpy_s / prefsim_s
  claims.append(check("NumPy time / prefsim time, DPO + HyPO", ratio,
                      lo=1.0))
  return BenchResult(
      rows=rows, ratio=ratio,
      ratio_label="NumPy loop time / prefsim sweep time (DPO + HyPO arms)",
      config={"n_seeds": n_seeds, "n_steps": n_steps, "n_numpy": n_numpy,
              "n_prompts": study.N_PROMPTS, "n_responses": study.N_SEEN
              + study.N_UNSEEN, "dim": study.DIM, "beta": study.BETA,
              "lam": study.LAM, "n_samples": study.N_SAMPLES, "lr": study.LR,
              "optimizer": "adam", "numpy_dtype": "float64",
              "timing": "prefsim best of 3 warm calls; NumPy one pass "
                        "scaled to n_seeds"},
      claims=claims)
