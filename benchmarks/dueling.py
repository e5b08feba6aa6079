r"""Classic dueling bandits: prefsim's D-TS and RUCB against duelpy's.

The work: one 20-arm Bradley-Terry dueling bandit,
:func:`prefsim.bandits.linear_problem` (key 0, ``D = 16``, utilities of
standard deviation 1; the best arm is a Condorcet winner), for ``T`` rounds
(5,000; ``--quick``: 3,000) and ``S`` seeds (20; ``--quick``: 10). A *duel*
is one round of one seed. The horizon is long enough for RUCB, which first
compares every pair a few times (on this problem its weak regret is still
three quarters of its start's after 2,000 rounds, and 2 % of it after
5,000).

The tools:

* **prefsim**: :func:`prefsim.bandits.classic.double_thompson` and
  :func:`~prefsim.bandits.classic.rucb` (``alpha = 0.51``), one
  :func:`prefsim.sweep` over the ``S`` seeds, compiled once (the first call,
  with compilation, is reported apart) and then timed, median of 3 calls.
* **duelpy** 1.0.0, the dueling-bandit library a user would pick:
  ``DoubleThompsonSampling`` and ``RelativeUCB`` (``exploratory_constant =
  0.51``, its default) on ``MatrixFeedback`` with the same preference
  matrix :math:`P_{ij} = \sigma(u_i - u_j)` (float64), one ``run()`` per seed
  (``RandomState(seed)``), timed over all seeds. duelpy 1.0.0 uses
  ``np.float``, removed from NumPy 1.24: the benchmark sets
  ``np.float = float`` before importing it.

Regret is measured the same way for both, from the pairs each tool queried:
the average dueling regret :math:`u^* - (u_a + u_b)/2` per round
(:func:`prefsim.bandits.dueling_regret`), summed over the ``T`` rounds
(cumulative) and averaged over seeds, with its standard error.

Known duelpy defects, seen here: ``RelativeUCB.step`` records the outcome
as ``duel(...) < 0``, and ``duel`` returns a bool, so every duel is
recorded as the champion's win and it never learns; and its D-TS second
candidate reads the champion's *row* of the sampled and lower-bound
matrices (:math:`\theta_{a^{(1)} i}`, :math:`l_{a^{(1)} i}`) where Wu & Liu's
Algorithm 1 uses the column (:math:`\theta_{i a^{(1)}}`,
:math:`l_{i a^{(1)}}`): it challenges the champion with the arm the champion
most likely *beats*. The regret claim is against its D-TS; RUCB's claim is
that ours learns.

The headline ratio is prefsim D-TS duels per second over duelpy D-TS's.
"""

from __future__ import annotations

import time

import jax
import numpy as np

import prefsim
from benchmarks._harness import BenchResult, time_call
from prefsim.bandits import classic
from prefsim.bandits import env
from studies._harness import check

DESCRIPTION = ("20-arm BT dueling bandit: prefsim D-TS and RUCB sweeps vs "
               "duelpy DoubleThompsonSampling and RelativeUCB, seed by seed")

N_ARMS, DIM, ALPHA = 20, 16, 0.51


def _duelpy():
  """duelpy 1.0.0's modules (it needs ``np.float``, gone from NumPy)."""
  if not hasattr(np, "float"):
    np.float = float   # duelpy 1.0.0 still uses the removed alias
  from duelpy.algorithms import DoubleThompsonSampling, RelativeUCB
  from duelpy.feedback import MatrixFeedback
  return DoubleThompsonSampling, RelativeUCB, MatrixFeedback


def _regrets(u: np.ndarray, pairs: np.ndarray) -> dict[str, np.ndarray]:
  """Per-round average and weak regret of pairs [..., T, 2] (float64)."""
  ua, ub = u[pairs[..., 0]], u[pairs[..., 1]]
  return {"average": u.max() - (ua + ub) / 2,
          "weak": u.max() - np.maximum(ua, ub)}


def _summary(u: np.ndarray, pairs: np.ndarray) -> dict[str, float]:
  """Cumulative average regret (mean, s.e. over seeds), late weak regret."""
  r = _regrets(u, pairs)
  cumulative = r["average"].sum(-1)
  n_seeds, horizon = pairs.shape[:2]
  tail = max(horizon // 5, 1)
  return {"cumulative_regret": float(cumulative.mean()),
          "cumulative_regret_se": float(cumulative.std(ddof=1)
                                        / np.sqrt(n_seeds)),
          "first_fifth_weak_regret": float(r["weak"][:, :tail].mean()),
          "last_fifth_weak_regret": float(r["weak"][:, -tail:].mean())}


def _prefsim(alg, problem, horizon, n_seeds) -> tuple[dict, np.ndarray]:
  """Times the sweep (first call apart); returns timing and pairs [S, T, 2]."""
  key = jax.random.key(0)

  def sweep():
    return prefsim.sweep(key, alg, problem, horizon, n_seeds)[1]

  start = time.perf_counter()
  infos = jax.block_until_ready(sweep())
  first = time.perf_counter() - start
  timing = time_call(sweep, repeat=3, warmup=0)
  return {"first": first, **timing}, np.asarray(infos["pair"])


def _duelpy_run(cls, matrix_feedback, P, horizon, n_seeds
                ) -> tuple[float, np.ndarray]:
  """Seconds for ``n_seeds`` duelpy runs, and their pairs [S, T, 2]."""

  class Recorded(matrix_feedback):
    """MatrixFeedback that keeps the queried pairs (for the regret)."""

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      self.pairs = []

    def duel(self, arm_i_index, arm_j_index):
      self.pairs.append((arm_i_index, arm_j_index))
      return super().duel(arm_i_index, arm_j_index)

  seconds, pairs = 0.0, []
  for seed in range(n_seeds):
    rng = np.random.RandomState(seed)
    feedback = Recorded(P, random_state=rng)
    algorithm = cls(feedback, time_horizon=horizon, random_state=rng,
                    exploratory_constant=ALPHA)
    start = time.perf_counter()
    algorithm.run()
    seconds += time.perf_counter() - start
    pairs.append(np.asarray(feedback.pairs[:horizon], np.int64))
  return seconds, np.stack(pairs)


def run(quick: bool) -> BenchResult:
  horizon, n_seeds = (3000, 10) if quick else (5000, 20)
  problem = env.linear_problem(jax.random.key(0), N_ARMS, DIM)
  u = np.asarray(problem.utilities, np.float64)
  P = 1.0 / (1.0 + np.exp(-(u[:, None] - u[None, :])))
  dts_cls, rucb_cls, matrix_feedback = _duelpy()
  duels = horizon * n_seeds
  rows, rate = [], {}
  for name, alg in (("D-TS", classic.double_thompson(ALPHA)),
                    ("RUCB", classic.rucb(ALPHA))):
    timing, pairs = _prefsim(alg, problem, horizon, n_seeds)
    rate[("prefsim", name)] = duels / timing["median"]
    rows.append({"tool": f"prefsim {name} (sweep, float32)",
                 "duels_per_second": rate[("prefsim", name)],
                 "seconds_median": timing["median"],
                 "seconds_min": timing["best"],
                 "seconds_max": max(timing["all"]),
                 "first_call_seconds": timing["first"],
                 **_summary(u, pairs)})
  for name, cls in (("D-TS", dts_cls), ("RUCB", rucb_cls)):
    seconds, pairs = _duelpy_run(cls, matrix_feedback, P, horizon, n_seeds)
    rate[("duelpy", name)] = duels / seconds
    label = "DoubleThompsonSampling" if name == "D-TS" else "RelativeUCB"
    rows.append({"tool": f"duelpy {label} (loop over seeds)",
                 "duels_per_second": rate[("duelpy", name)],
                 "seconds_median": seconds, **_summary(u, pairs)})
  ours = {r["tool"].split(" (")[0]: r for r in rows}
  dts_ratio = rate[("prefsim", "D-TS")] / rate[("duelpy", "D-TS")]
  rucb_ratio = rate[("prefsim", "RUCB")] / rate[("duelpy", "RUCB")]
  claims = [
      check("prefsim D-TS duels/s over duelpy DoubleThompsonSampling's",
            dts_ratio, lo=20.0),
      check("prefsim RUCB duels/s over duelpy RelativeUCB's", rucb_ratio,
            lo=20.0),
      check("prefsim D-TS cumulative regret minus duelpy D-TS's (mean over "
            "seeds)", ours["prefsim D-TS"]["cumulative_regret"]
            - ours["duelpy DoubleThompsonSampling"]["cumulative_regret"],
            hi=0.0),
      check("prefsim RUCB learns: weak regret of the last fifth of the "
            "rounds over the first fifth's",
            ours["prefsim RUCB"]["last_fifth_weak_regret"]
            / ours["prefsim RUCB"]["first_fifth_weak_regret"], hi=0.25),
      check("prefsim D-TS learns: weak regret of the last fifth of the "
            "rounds over the first fifth's",
            ours["prefsim D-TS"]["last_fifth_weak_regret"]
            / ours["prefsim D-TS"]["first_fifth_weak_regret"], hi=0.25),
  ]
  return BenchResult(
      rows=rows, ratio=dts_ratio,
      ratio_label="prefsim D-TS duels/s / duelpy DoubleThompsonSampling's",
      config={"arms": N_ARMS, "dim": DIM, "horizon": horizon,
              "seeds": n_seeds, "alpha": ALPHA,
              "problem": "prefsim.bandits.linear_problem(key(0), 20, 16), "
                         "BT feedback",
              "prefsim": "one sweep over the seeds, median of 3 warm calls",
              "duelpy": "duelpy 1.0.0, run() per seed, RandomState(seed), "
                        "MatrixFeedback(P = sigmoid(u_i - u_j))",
              "regret": "average dueling regret u* - (u_a + u_b)/2 of the "
                        "queried pairs, summed over rounds, mean over seeds",
              "speedup_rucb": rucb_ratio,
              "duelpy_seconds_per_duel": {
                  name: 1.0 / rate[("duelpy", name)]
                  for name in ("D-TS", "RUCB")}},
      claims=claims)
