"""Bradley-Terry maximum likelihood: prefsim ``fit`` against choix.

The same data for every tool: ``K = 1000`` items with utilities N(0, 1) and
``P = 100,000`` comparisons of uniformly random distinct pairs labelled by
Bradley-Terry (``--quick``: 200 items, 10,000 comparisons). Each tool
computes the MLE (no regularisation); each result's log-likelihood is then
computed by one float64 NumPy function, so that "reaching choix's
log-likelihood" is judged by the same arithmetic for all.

Timings: prefsim's is the median of warm calls (compiled once, then reused,
as in a study that fits many data sets of one shape); its first call, with
compilation, is reported too. choix's algorithms (NumPy/SciPy, nothing to
compile) are timed once each on the list of ``(winner, loser)`` tuples they
take. The ratio is the fastest choix MLE
algorithm's time over prefsim's warm time.
"""

from __future__ import annotations

import time

import choix
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._harness import BenchResult, time_call
from prefsim.models import bradley_terry as bt
from studies._harness import check

DESCRIPTION = "Bradley-Terry MLE: prefsim fit vs choix (ilsr, mm, opt)"


def _log_likelihood64(u, winners, losers):
  """Sum of log sigma(u_w - u_l) in float64: -sum log(1 + e^-(u_w - u_l))."""
  u = np.asarray(u, np.float64)
  return float(-np.sum(np.logaddexp(0.0, -(u[winners] - u[losers]))))


def _data(n_items, n_pairs, seed=0):
  k_u, k_i, k_j, k_y = jax.random.split(jax.random.key(seed), 4)
  u = jax.random.normal(k_u, (n_items,))
  i = jax.random.randint(k_i, (n_pairs,), 0, n_items)
  j = (i + jax.random.randint(k_j, (n_pairs,), 1, n_items)) % n_items
  i_wins = bt.sample(k_y, u, i, j)
  winners = np.asarray(jnp.where(i_wins, i, j))
  losers = np.asarray(jnp.where(i_wins, j, i))
  return winners, losers


def run(quick: bool) -> BenchResult:
  n_items, n_pairs = (200, 10_000) if quick else (1000, 100_000)
  winners, losers = _data(n_items, n_pairs)
  if not bt.is_strongly_connected(winners, losers, n_items):
    raise RuntimeError("benchmark data must have a finite MLE; change seed")
  pairs = list(zip(winners.tolist(), losers.tolist()))
  w_dev, l_dev = jnp.asarray(winners), jnp.asarray(losers)

  start = time.perf_counter()
  u_prefsim = jax.block_until_ready(bt.fit(w_dev, l_dev, n_items))
  first_call = time.perf_counter() - start
  prefsim_time = time_call(lambda: bt.fit(w_dev, l_dev, n_items), repeat=7)
  rows = [{"tool": "prefsim fit (warm)", "seconds": prefsim_time["median"],
           "log_likelihood": _log_likelihood64(u_prefsim, winners, losers)},
          {"tool": "prefsim fit (first call, with compilation)",
           "seconds": first_call,
           "log_likelihood": _log_likelihood64(u_prefsim, winners, losers)}]

  peers = {
      "choix ilsr_pairwise": lambda: choix.ilsr_pairwise(n_items, pairs,
                                                         tol=1e-8),
      "choix mm_pairwise": lambda: choix.mm_pairwise(n_items, pairs,
                                                     tol=1e-8),
      "choix opt_pairwise": lambda: choix.opt_pairwise(n_items, pairs,
                                                       alpha=0.0),
  }
  for tool, fn in peers.items():
    start = time.perf_counter()
    params = fn()
    seconds = time.perf_counter() - start
    rows.append({"tool": tool, "seconds": seconds,
                 "log_likelihood": _log_likelihood64(params, winners, losers)})

  mle_rows = [r for r in rows if r["tool"].startswith("choix")]
  fastest = min(mle_rows, key=lambda r: r["seconds"])
  best_ll = max(r["log_likelihood"] for r in mle_rows)
  for row in rows:
    row["ll_gap_to_best_choix"] = (best_ll - row["log_likelihood"]) / abs(
        best_ll)
  ours = rows[0]
  ratio = fastest["seconds"] / ours["seconds"]
  gap = (best_ll - ours["log_likelihood"]) / abs(best_ll)
  return BenchResult(
      rows=rows,
      ratio=ratio,
      ratio_label=f"{fastest['tool']} time / prefsim fit time (warm)",
      config={"n_items": n_items, "n_pairs": n_pairs, "pairs":
              "uniform distinct", "utilities": "N(0,1)", "seed": 0,
              "dtype": str(u_prefsim.dtype)},
      claims=[
          check("prefsim's log-likelihood short of choix's best, relative",
                gap, hi=1e-6),
          check("speed-up over choix's fastest MLE algorithm", ratio,
                lo=10.0),
      ])
