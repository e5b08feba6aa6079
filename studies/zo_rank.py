r"""ZO-RankSGD: optimising from rankings alone (Tang, Rybin, Chang, 2023).

Setting (:mod:`prefsim.zeroth_order`):

* a ``D = 100`` convex quadratic :math:`x^\top A x + b^\top x`,
  :math:`A = GG^\top` (``G`` of shape ``D x D/2``, entries
  :math:`N(0, 1/D)`), :math:`b = Gh` in the range of ``A`` so that the
  minimum :math:`f^* = -\lVert h\rVert^2/4` is finite
  (:func:`prefsim.zeroth_order.quadratic`), from :math:`x_0 = 0`;
* the ``D = 100`` Rosenbrock function from :math:`x_0 = 0`
  (:math:`f = 99`, :math:`f^* = 0`);
* policy search: a linear tanh policy (10 parameters) on a 2-D point mass,
  return averaged over four fixed episodes
  (:func:`prefsim.zeroth_order.point_mass_return`), from
  :math:`\theta = 0` (return :math:`-50`).

Methods, each one :func:`prefsim.sweep` over all seeds: ZO-RankSGD with
``(m, k)`` in {(2, 1), (5, 5), (10, 1), (10, 5), (10, 10)}; comparison-only
descent (one comparison of :math:`x` and :math:`x + \mu\xi` per query);
value-based ZO-SGD (two function values per query, Gaussian smoothing); a
rank-based evolution strategy (``m = 10``, ``k = 5``) for contrast. One
query is one call of the oracle: one ranking of ``m`` points, one
comparison, or one pair of values.

Step sizes. Every rank-based method's mean direction on a linear function
is :math:`c\,\nabla f/\lVert\nabla f\rVert` with a known length ``c``
(:func:`prefsim.zeroth_order.mean_scale`; :math:`\sqrt{2/\pi}` for
comparison-only), so each gets :math:`\eta = \eta_0 / c`: the same expected
first-order progress per query. What separates them is the variance of the
direction, which shrinks with more ranked candidates — the paper's point.
ZO-SGD gets :math:`1/((D+2)L)` with ``L`` the largest curvature at
:math:`x_0` (the step that maximises its expected decrease), the evolution
strategy :math:`\eta_0`. :math:`\eta_0` is one number per problem, the same
for every rank-based method.

Claims: ZO-RankSGD with ``m = k = 10`` beats comparison-only per query: it
ends lower on every seed of both functions, and on the quadratic its final
gap is more than 10 times smaller. More ranked candidates per query converge
faster: along (2, 1) → (5, 5) → (10, 10) and along
(10, 1) → (10, 5) → (10, 10) every step lowers the final log gap by at least
three standard errors (paired over seeds, which share their keys). "Final"
is the mean over the last tenth of the queries: near a noise floor the last
iterate alone is one noisy sample. Policy
search from rankings of the candidates' returns reaches at least 95 % of the
improvement of a first-order reference (Adam on the exact gradient through
the rollout).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

import prefsim
from prefsim import plotting
from prefsim import zeroth_order as zo
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("ZO-RankSGD: more ranked candidates per query converge faster; "
               "(m, k) = (10, 10) beats comparison-only per query")

DIM = 100
RANK = ((2, 1), (5, 5), (10, 1), (10, 5), (10, 10))
CHAINS = (((2, 1), (5, 5), (10, 10)), ((10, 1), (10, 5), (10, 10)))
ES = (10, 5)
PROBLEMS = {  # name: (eta0, mu)
    "quadratic": (0.01, 1e-3),
    "rosenbrock": (0.002, 1e-3),
}
POLICY = {"eta0": 0.1, "mu": 0.05, "noise": 0.2, "m": 10, "k": 10}


def _rank_name(m: int, k: int) -> str:
  return f"ZO-RankSGD ({m},{k})"


def _algorithms(eta0: float, mu: float, zo_sgd_lr: float
                ) -> dict[str, prefsim.Algorithm]:
  algs = {_rank_name(m, k): zo.zo_rank_sgd(eta0 / zo.mean_scale(m, k), m, k,
                                           mu) for m, k in RANK}
  algs["comparison-only"] = zo.comparison_sgd(eta0 / np.sqrt(2 / np.pi), mu)
  algs["ZO-SGD (values)"] = zo.zo_sgd(zo_sgd_lr, mu)
  algs[f"rank ES {ES}"] = zo.rank_es(eta0, *ES, mu)
  return algs


def _problem(name: str):
  """``(Problem, f_star, L at x0)`` for the named test function."""
  if name == "quadratic":
    f, f_star = zo.quadratic(jax.random.key(0), DIM)
    f_star = float(f_star)
  else:
    f, f_star = zo.rosenbrock, 0.0
  x0 = jnp.zeros(DIM)
  lips = float(np.linalg.eigvalsh(np.asarray(jax.hessian(f)(x0),
                                             np.float64)).max())
  return zo.Problem(f, x0), f_star, lips


def _gaps(name: str, n_steps: int, n_seeds: int, ctx: Context) -> dict:
  """``{method: f - f* [S, T]}`` on one test function."""
  problem, f_star, lips = _problem(name)
  eta0, mu = PROBLEMS[name]
  out = {}
  for method, alg in _algorithms(eta0, mu, 1.0 / ((DIM + 2) * lips)).items():
    ctx.log(f"{name}: {method}, {n_seeds} seeds x {n_steps} queries")
    _, info = prefsim.sweep(jax.random.key(1), alg, problem, n_steps, n_seeds)
    out[method] = np.asarray(info["f"], np.float64) - f_star
  out["_initial"] = float(problem.f(problem.x0)) - f_star
  out["_lips"] = lips
  return out


def _policy_cost(theta):
  return -zo.point_mass_return(theta)


def _policy(n_steps: int, n_seeds: int, ctx: Context) -> dict:
  """Returns ``[S, T]`` per method and the first-order reference return."""
  problem = zo.Problem(_policy_cost, jnp.zeros(zo.POINT_MASS_DIM))
  m, k, eta0, mu = POLICY["m"], POLICY["k"], POLICY["eta0"], POLICY["mu"]
  lr = eta0 / zo.mean_scale(m, k)
  algs = {
      _rank_name(m, k): zo.zo_rank_sgd(lr, m, k, mu),
      f"{_rank_name(m, k)}, noisy judge": zo.zo_rank_sgd(
          lr, m, k, mu, noise=POLICY["noise"]),
      "comparison-only": zo.comparison_sgd(eta0 / np.sqrt(2 / np.pi), mu),
      "ZO-SGD (values)": zo.zo_sgd(0.01 * eta0, mu),
  }
  out = {}
  for method, alg in algs.items():
    ctx.log(f"policy: {method}, {n_seeds} seeds x {n_steps} queries")
    _, info = prefsim.sweep(jax.random.key(2), alg, problem, n_steps, n_seeds)
    out[method] = -np.asarray(info["f"], np.float64)
  # First-order reference: Adam on the exact gradient of the rollout.
  opt = optax.adam(0.05)

  def body(carry, _):
    theta, state = carry
    updates, state = opt.update(jax.grad(_policy_cost)(theta), state)
    return (optax.apply_updates(theta, updates), state), None

  theta0 = jnp.zeros(zo.POINT_MASS_DIM)
  (theta, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=3000))(
      (theta0, opt.init(theta0)))
  out["_reference"] = float(zo.point_mass_return(theta))
  out["_initial"] = float(zo.point_mass_return(theta0))
  return out


def _final_gap(gaps: np.ndarray) -> np.ndarray:
  """Per seed, the mean gap over the last 10 % of queries: ``[S, T] -> [S]``.

  Near a method's noise floor the last iterate is one noisy sample; the
  mean over the last tenth of the run is where the method ended.
  """
  return gaps[:, -(gaps.shape[1] // 10):].mean(axis=1)


def _final_log_gap(gaps: np.ndarray) -> np.ndarray:
  """Per seed, the mean log gap over the last 10 % of queries."""
  return np.log(gaps[:, -(gaps.shape[1] // 10):]).mean(axis=1)


def _paired_z(fewer: np.ndarray, more: np.ndarray) -> float:
  """Mean of ``fewer - more`` over seeds in standard errors (common keys)."""
  diff = fewer - more
  return float(diff.mean() / (diff.std(ddof=1) / np.sqrt(diff.size)))


def _colors() -> dict[str, str]:
  """Rank methods in shades by |E| (darker = more comparisons per query)."""
  shades = matplotlib.colormaps["Reds"](np.linspace(0.35, 1.0, len(RANK)))
  order = sorted(RANK, key=lambda mk: zo.n_edges(*mk))
  colors = {_rank_name(*mk): matplotlib.colors.to_hex(shades[order.index(mk)])
            for mk in RANK}
  colors["comparison-only"] = plotting.CYCLE[0]
  colors["ZO-SGD (values)"] = plotting.CYCLE[2]
  colors[f"rank ES {ES}"] = plotting.CYCLE[5]
  return colors


def _figure(res, policy, n_seeds):
  fig, axes = plotting.figure(1, 3, width=15.0, height=4.6)
  colors = _colors()
  for ax, name in zip(axes[:2], PROBLEMS):
    gaps = res[name]
    queries = np.arange(1, next(v for k, v in gaps.items()
                                if not k.startswith("_")).shape[1] + 1)
    for method in _colors():
      g = gaps[method]
      style = {"linestyle": "--"} if not method.startswith("ZO-Rank") else {}
      plotting.band(ax, queries, g, label=method, color=colors[method],
                    **style)
    eta0, mu = PROBLEMS[name]
    ax.set(yscale="log", xlabel="oracle calls (queries)",
           ylabel=r"$f(x_t) - f^*$",
           title=f"{name}, D = {DIM} ($\\eta_0$ = {eta0:g}, $\\mu$ = {mu:g})")
  axes[0].legend(fontsize=7.5, title=f"{n_seeds} seeds, mean ± s.e.",
                 title_fontsize=7.5)
  ax = axes[2]
  m = POLICY["m"]
  for method in (_rank_name(m, POLICY["k"]),
                 f"{_rank_name(m, POLICY['k'])}, noisy judge",
                 "comparison-only", "ZO-SGD (values)"):
    ret = policy[method]
    per_query = 2 if method in ("comparison-only", "ZO-SGD (values)") else m
    x = per_query * np.arange(1, ret.shape[1] + 1)
    color = (colors[_rank_name(m, POLICY["k"])] if "ZO-Rank" in method
             else colors[method])
    style = {"linestyle": ":"} if "noisy" in method else (
        {"linestyle": "--"} if "ZO-Rank" not in method else {})
    plotting.band(ax, x, ret, label=method, color=color, **style)
  ax.axhline(policy["_reference"], color=plotting.color("optimal"),
             linewidth=0.8, label="first-order reference (Adam)")
  ax.set(xscale="log", xlabel="candidate policies evaluated (m per ranking)",
         ylabel="mean return (4 episodes)", ylim=(-60, 0),
         title=f"policy search on a point mass (noisy judge: PL, T = "
               f"{POLICY['noise']:g})")
  ax.legend(fontsize=7.5)
  fig.suptitle("ZO-RankSGD (Tang, Rybin, Chang 2023): rankings of m "
               "perturbed points per query; rank methods at matched "
               r"first-order speed $\eta = \eta_0/c_{m,k}$")
  return fig


def run(ctx: Context) -> Report:
  n_seeds = 16 if ctx.quick else 64
  n_steps = 2000 if ctx.quick else 4000
  policy_steps = 300
  config = {"dim": DIM, "rank_configs": RANK, "es": ES, "problems":
            {k: {"eta0": v[0], "mu": v[1]} for k, v in PROBLEMS.items()},
            "policy": POLICY, "n_seeds": n_seeds, "n_steps": n_steps,
            "policy_steps": policy_steps, "quadratic_key": 0, "sweep_key": 1,
            "policy_key": 2, "x0": "zeros",
            "lr_rule": "eta0 / c_{m,k} (rank), eta0 / sqrt(2/pi) "
                       "(comparison), 1/((D+2) L(x0)) (ZO-SGD), eta0 (ES)",
            "policy_zo_sgd_lr": 0.01 * POLICY["eta0"]}
  res = {name: ctx.memo(name, lambda name=name: _gaps(name, n_steps, n_seeds,
                                                      ctx), **config)
         for name in PROBLEMS}
  policy = ctx.memo("policy", lambda: _policy(policy_steps, n_seeds, ctx),
                    **config)

  claims: list[Claim] = []
  best = _rank_name(10, 10)
  for name in PROBLEMS:
    log_gap = {k: _final_log_gap(v) for k, v in res[name].items()
               if not k.startswith("_")}
    claims.append(check(
        f"{name}: share of seeds where ZO-RankSGD (10,10) ends below "
        f"comparison-only (mean log gap over queries {n_steps - n_steps // 10}"
        f"-{n_steps})",
        np.mean(log_gap[best] < log_gap["comparison-only"]), lo=1.0))
    z = [_paired_z(log_gap[_rank_name(*a)], log_gap[_rank_name(*b)])
         for chain in CHAINS for a, b in zip(chain, chain[1:])]
    claims.append(check(
        f"{name}: more ranked candidates converge faster: along (2,1) -> "
        "(5,5) -> (10,10) and (10,1) -> (10,5) -> (10,10), each step's drop "
        "in final log gap in standard errors (paired over seeds), smallest",
        min(z), lo=3.0))
  quad = res["quadratic"]
  claims.append(check(
      "quadratic: final gap (mean over seeds and the last 10 % of queries), "
      "comparison-only / ZO-RankSGD (10,10)",
      _final_gap(quad["comparison-only"]).mean() / _final_gap(
          quad[best]).mean(), lo=10.0))
  gain = ((_final_gap(policy[best]).mean() - policy["_initial"])
          / (policy["_reference"] - policy["_initial"]))
  claims.append(check(
      f"policy search: ZO-RankSGD (10,10), mean return over rankings "
      f"{policy_steps - policy_steps // 10}-{policy_steps}: share of the "
      "first-order reference's improvement over theta = 0", gain,
      lo=0.95))

  series = {"queries": n_steps, "policy_queries": policy_steps,
            "policy_reference_return": policy["_reference"],
            "policy_initial_return": policy["_initial"]}
  for name in PROBLEMS:
    series[f"{name}_initial_gap"] = res[name]["_initial"]
    series[f"{name}_curvature_at_x0"] = res[name]["_lips"]
    for method, g in res[name].items():
      if not method.startswith("_"):
        series[f"{name}: {method}: mean gap"] = g.mean(0)[9::10]
        series[f"{name}: {method}: final gap per seed"] = _final_gap(g)
  for method, ret in policy.items():
    if not method.startswith("_"):
      series[f"policy: {method}: mean return"] = ret.mean(0)
  return Report(figure=_figure(res, policy, n_seeds), series=series,
                claims=claims, config=config, seeds=list(range(n_seeds)))
