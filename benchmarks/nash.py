"""Exact minimax winners of many games: prefsim against scipy and nashpy.

The same games for every tool: batches of random preference matrices as in
EGPO's synthetic setup (THEORY.md §6), ``P_ij ~ U(0, 1)`` below the diagonal
and ``1 - P_ji`` above it, drawn in float64 by NumPy: 1,000 games of 10 x 10
and 1,000 of 100 x 100 (``--quick``: 200 and 20). Each tool computes a
minimax winner of every game; every answer's exploitability
``max_j (P pi)_j - 1/2`` is then measured by one function,
``prefsim.games.exploitability``, in float64 against the float64 games.

- prefsim: ``games.minimax_winner`` on the whole batch, one jitted call
  (compiled once per shape and dtype; the first call, with compilation, is
  reported apart). Timed in float64 (the precision of the peers) and, for
  10 x 10, also in float32, the library's default dtype (games rounded to
  float32). Median of 5 warm calls; the spread is min to max.
- scipy: ``scipy.optimize.linprog(method="highs")`` in a Python loop over
  the games, on the LP ``min t s.t. (P - 1/2) pi <= t, sum(pi) = 1,
  pi >= 0``. Median of 3 passes over the batch (10 x 10) or one pass
  (100 x 100).
- nashpy: ``nashpy.Game(A, -A).lemke_howson(0)`` with ``A = P - 1/2``, the
  row strategy; support enumeration is exponential in ``K``, so it is not
  run. Lemke-Howson is pure Python: it runs on the first 100 10 x 10 games
  only (``--quick``: 20), each with a 2 s limit; on some games it cycles
  (out of time) or returns a malformed strategy: those are counted as
  failed, and its games per second come from the games that did not time
  out;
  on 100 x 100 games one solve did not finish in 100 s on the 2-core
  machine, so nashpy is not run there.

The headline ratio is scipy's time per game over prefsim's (float64) on the
10 x 10 batch; the issue's aim is 10x.
"""

from __future__ import annotations

import signal
import statistics
import time
import warnings

import jax
import jax.numpy as jnp
import nashpy
import numpy as np
from scipy import optimize

from benchmarks._harness import BenchResult, time_call
from prefsim import games
from studies._harness import check

_NASHPY_LIMIT_S = 2.0

DESCRIPTION = ("Minimax winners of 1,000 random games (10x10, 100x100): "
               "prefsim batched LP vs scipy HiGHS loop and nashpy")


def _games(seed: int, n: int, k: int) -> np.ndarray:
  """EGPO's random games: lower triangle U(0, 1), upper 1 - its transpose."""
  lower = np.tril(np.random.default_rng(seed).uniform(size=(n, k, k)), -1)
  return lower + np.triu(1.0 - np.swapaxes(lower, -1, -2), 1) + 0.5 * np.eye(k)


def _exploitability64(P: np.ndarray, pi: np.ndarray) -> np.ndarray:
  """``prefsim.games.exploitability`` in float64, for every tool's answers."""
  with jax.enable_x64(True):
    return np.asarray(games.exploitability(jnp.asarray(P, jnp.float64),
                                           jnp.asarray(pi, jnp.float64)))


def _scipy_winner(P: np.ndarray) -> np.ndarray:
  k = P.shape[-1]
  res = optimize.linprog(
      np.r_[np.zeros(k), 1.0], A_ub=np.c_[P - 0.5, -np.ones(k)],
      b_ub=np.zeros(k), A_eq=np.r_[np.ones(k), 0.0][None], b_eq=[1.0],
      bounds=[(0, None)] * k + [(None, None)], method="highs")
  return res.x[:k]


def _nashpy_winners(Ps: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
  """nashpy's Lemke-Howson row strategy per game, each under a time limit.

  Lemke-Howson can cycle (in nashpy it never returned on some 10 x 10
  games), so each game gets ``_NASHPY_LIMIT_S`` seconds (a SIGALRM timer);
  on others it returns a strategy of the wrong length or with NaNs. Returns
  the seconds spent on the games that did not time out, the well-formed
  answers, and the mask of the games that gave one.
  """

  def timeout(*_):
    raise TimeoutError

  previous = signal.signal(signal.SIGALRM, timeout)
  seconds, answers, finished = 0.0, [], []
  try:
    for P in Ps:
      A = P - 0.5
      start = time.perf_counter()
      signal.setitimer(signal.ITIMER_REAL, _NASHPY_LIMIT_S)
      try:
        with warnings.catch_warnings():
          warnings.simplefilter("ignore")
          row, _ = nashpy.Game(A, -A).lemke_howson(initial_dropped_label=0)
      except TimeoutError:
        finished.append(False)
        continue
      finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
      seconds += time.perf_counter() - start
      ok = np.shape(row) == np.shape(A)[:1] and np.all(np.isfinite(row))
      finished.append(bool(ok))
      if ok:
        answers.append(row)
  finally:
    signal.signal(signal.SIGALRM, previous)
  return seconds, np.stack(answers), np.array(finished)


def _loop_seconds(fn, Ps: np.ndarray, repeat: int) -> tuple[list[float],
                                                             np.ndarray]:
  """Seconds of ``repeat`` passes of ``fn`` over ``Ps``, and its answers."""
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    out = np.stack([fn(p) for p in Ps])
    times.append(time.perf_counter() - start)
  return times, out


def _prefsim(P: np.ndarray, x64: bool) -> tuple[dict, np.ndarray]:
  """Time ``minimax_winner`` on the batch: first call, then warm calls."""
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    P_dev = jnp.asarray(P, dtype)
    solve = jax.jit(games.minimax_winner)
    start = time.perf_counter()
    pi = np.asarray(jax.block_until_ready(solve(P_dev)))
    first = time.perf_counter() - start
    timing = time_call(lambda: solve(P_dev), repeat=5, warmup=0)
  return {"first": first, **timing}, pi


def _row(tool: str, k: int, n_games: int, times: list[float], P, pi,
         extra: dict | None = None) -> dict:
  median = statistics.median(times)
  e = _exploitability64(P, pi)
  return {"tool": tool, "K": k, "games": n_games,
          "games_per_second": n_games / median,
          "seconds_median": median, "seconds_min": min(times),
          "seconds_max": max(times),
          "max_exploitability": float(np.max(e)), **(extra or {})}


def run(quick: bool) -> BenchResult:
  sizes = {10: (200, 20), 100: (20, 0)} if quick else {10: (1000, 100),
                                                        100: (1000, 0)}
  rows, claims, per_game = [], [], {}
  for k, (n_games, n_nashpy) in sizes.items():
    P = _games(k, n_games, k)
    for x64 in ((True, False) if k == 10 else (True,)):
      timing, pi = _prefsim(P, x64)
      dtype = "float64" if x64 else "float32"
      rows.append(_row(f"prefsim minimax_winner ({dtype})", k, n_games,
                       timing["all"], P, pi,
                       {"first_call_seconds": timing["first"]}))
      claims.append(check(f"prefsim {dtype} max exploitability, {k}x{k}",
                          rows[-1]["max_exploitability"], hi=1e-6))
      if x64:
        per_game[("prefsim", k)] = rows[-1]["seconds_median"] / n_games
    times, pi = _loop_seconds(_scipy_winner, P, 3 if k == 10 else 1)
    rows.append(_row("scipy linprog (HiGHS), loop", k, n_games, times, P,
                     pi))
    claims.append(check(f"scipy max exploitability, {k}x{k}",
                        rows[-1]["max_exploitability"], hi=1e-6))
    per_game[("scipy", k)] = rows[-1]["seconds_median"] / n_games
    if n_nashpy:
      seconds, pi, finished = _nashpy_winners(P[:n_nashpy])
      rows.append(_row("nashpy lemke_howson, loop (subset)", k,
                       int(finished.sum()), [seconds],
                       P[:n_nashpy][finished], pi,
                       {"games_failed": int((~finished).sum())}))
  for row in rows:
    row["scipy_time_over_this"] = (per_game[("scipy", row["K"])]
                                   * row["games_per_second"])
  ratio = per_game[("scipy", 10)] / per_game[("prefsim", 10)]
  claims.append(check("speed-up over scipy HiGHS per 10x10 game (float64)",
                      ratio, lo=10.0))
  return BenchResult(
      rows=rows, ratio=ratio,
      ratio_label="scipy HiGHS time / prefsim time per 10x10 game (float64)",
      config={"sizes": {str(k): {"games": n, "nashpy_subset": m}
                        for k, (n, m) in sizes.items()},
              "games": "P_ij ~ U(0,1) below the diagonal (EGPO), seed = K",
              "prefsim": "jit(minimax_winner) on the batch; median of 5 "
                         "warm calls",
              "scipy": "linprog(method='highs') per game; median of 3 "
                       "passes (10x10), 1 pass (100x100)",
              "nashpy": "Game(A, -A).lemke_howson(0), first games of the "
                        "10x10 batch only; not run on 100x100 (one game "
                        "took over 100 s)",
              "exploitability": "prefsim.games.exploitability, float64"},
      claims=claims)
