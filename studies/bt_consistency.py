r"""Bradley-Terry MLE consistency: the error of fitted utilities falls like 1/√n.

Setting: ``K = 20`` items with true utilities :math:`u^* \sim N(0, 1)`
(centred), ``n`` comparisons of uniformly random distinct pairs labelled by
Bradley-Terry, utilities fitted by :func:`prefsim.models.bradley_terry.fit`
(maximum likelihood), many seeds in one vmapped, jitted call per ``n``.

The MLE is asymptotically normal with covariance :math:`I^{+}/n`, where
:math:`I = \mathbb{E}_{(i,j)}[\sigma_{ij}(1-\sigma_{ij})(e_i-e_j)(e_i-e_j)^\top]`
is the Fisher information of one comparison (a weighted graph Laplacian; the
pseudo-inverse handles the shift gauge). Hence the root-mean-square error
:math:`\sqrt{\mathbb{E}\lVert\hat u - u^*\rVert^2/K} \approx
\sqrt{\mathrm{tr}(I^{+})/(nK)}`: slope −1/2 on a log-log plot, and a
constant that the run can check too.

Claims: the fitted log-log slope is within ±0.15 of −0.5; at the largest
``n`` the measured RMSE is within 15 % of the Cramér-Rao prediction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import plotting
from prefsim.models import bradley_terry as bt
from studies._harness import Context, Report, check, loglog_slope

DESCRIPTION = "Bradley-Terry MLE error falls like 1/sqrt(n) (Cramér-Rao rate)"

N_ITEMS = 20


def _draw(key, n):
  """One seed's true utilities and ``n`` labelled comparisons."""
  k_u, k_i, k_j, k_y = jax.random.split(key, 4)
  u = jax.random.normal(k_u, (N_ITEMS,))
  u = u - u.mean()
  i = jax.random.randint(k_i, (n,), 0, N_ITEMS)
  j = (i + jax.random.randint(k_j, (n,), 1, N_ITEMS)) % N_ITEMS  # j != i
  i_wins = bt.sample(k_y, u, i, j)
  return u, jnp.where(i_wins, i, j), jnp.where(i_wins, j, i)


def _squared_errors(keys, n):
  """``||u_hat - u*||^2`` per seed, and the true utilities, [S] and [S, K]."""

  def one(key):
    u, winners, losers = _draw(key, n)
    return jnp.sum((bt.fit(winners, losers, N_ITEMS) - u) ** 2), u

  return jax.jit(jax.vmap(one))(keys)


def _cramer_rao_mse(u):
  """``tr(I^+) / K`` for uniformly random distinct pairs (the n = 1 MSE)."""
  u = np.asarray(u, np.float64)
  s = 1.0 / (1.0 + np.exp(-(u[:, None] - u[None, :])))
  w = s * (1.0 - s) / (N_ITEMS * (N_ITEMS - 1))
  np.fill_diagonal(w, 0.0)
  # Each unordered pair appears as (i, j) and (j, i): weight 2 w_ij.
  laplacian = np.diag(2 * w.sum(1)) - 2 * w
  # The gauge: I + 11^T/K has eigenvalue 1 on the constant vector, and I's
  # nonzero spectrum elsewhere, so tr(I^+) = tr((I + 11^T/K)^-1) - 1.
  gauged = laplacian + np.full_like(laplacian, 1.0 / N_ITEMS)
  return (np.trace(np.linalg.inv(gauged)) - 1.0) / N_ITEMS


def run(ctx: Context) -> Report:
  ns = ([1000, 2000, 5000, 10000, 20000, 50000] if ctx.quick else
        [int(n) for n in np.logspace(3, 5.5, 11)])
  n_seeds = 32 if ctx.quick else 128
  keys = jax.random.split(jax.random.key(0), n_seeds)
  sq_errors, mse_bound = [], None
  for n in ns:
    ctx.log(f"n = {n}: fitting {n_seeds} seeds")
    sq, u = ctx.memo(f"n{n}", lambda n=n: _squared_errors(keys, n),
                     n=n, n_seeds=n_seeds, n_items=N_ITEMS)
    sq_errors.append(sq)
    if mse_bound is None:  # Same keys, same true utilities for every n.
      mse_bound = float(np.mean([_cramer_rao_mse(row) for row in u]))
  sq_errors = np.stack(sq_errors, axis=1)                  # [S, N]
  rmse_per_seed = np.sqrt(sq_errors / N_ITEMS)             # [S, N]
  rmse = np.sqrt(sq_errors.mean(0) / N_ITEMS)              # [N]
  predicted = np.sqrt(mse_bound / np.asarray(ns))          # [N]
  slope, _ = loglog_slope(ns, rmse)
  ratio = float(rmse[-1] / predicted[-1])

  fig, ax = plotting.figure(width=5.5, height=4.0)
  plotting.band(ax, ns, rmse_per_seed, label="prefsim fit (MLE)",
                color=plotting.color("prefsim"), marker="o")
  ax.plot(ns, predicted, "--", color=plotting.color("theory"),
          label=r"Cramér-Rao $\sqrt{\mathrm{tr}(I^+)/(nK)}$")
  ax.set(xscale="log", yscale="log", xlabel="comparisons n",
         ylabel=r"RMSE $\|\hat u - u^*\|/\sqrt{K}$",
         title=f"Bradley-Terry MLE, K = {N_ITEMS}, {n_seeds} seeds "
               f"(slope {slope:.3f})")
  ax.legend()

  return Report(
      figure=fig,
      series={"n": ns, "rmse": rmse, "rmse_per_seed": rmse_per_seed,
              "cramer_rao_rmse": predicted},
      claims=[
          check("log-log slope of RMSE vs n is -1/2 (±0.15)", slope,
                lo=-0.65, hi=-0.35),
          check("RMSE / Cramér-Rao prediction at the largest n (±15 %)",
                ratio, lo=0.85, hi=1.15),
      ],
      config={"n_items": N_ITEMS, "ns": ns, "n_seeds": n_seeds,
              "pairs": "uniform distinct", "utilities": "N(0,1), centred"},
      seeds=list(range(n_seeds)))
