r"""Robust DPO under label flips (Chowdhury, Kini, Natarajan, ICML 2024).

Setting: the log-linear bandit of :mod:`prefsim.loglinear` — ``X = 100``
prompts, ``K = 8`` responses, ``D = 8`` Gaussian features, uniform
:math:`\pi_{\rm ref}`, :math:`\beta = 0.5`, :math:`\|\beta\theta^*\| = 1`,
true reward :math:`r^* = \beta\theta^{*\top}\phi` (so :math:`\pi^* =
\pi_{\theta^*}`). A data set of ``n`` comparisons of two distinct responses
from :math:`\pi_{\rm ref}`, Bradley-Terry labels on :math:`r^*`, each label
flipped with probability :math:`\epsilon \in \{0, 0.1, 0.2, 0.3, 0.4\}`.
DPO, cDPO (smoothing :math:`\epsilon`), rDPO (the true :math:`\epsilon`) and
IPO are trained to convergence by projected gradient descent
(:func:`prefsim.offline.offline_po`) on the ball
:math:`\|\theta\| \le B = 2\|\theta^*\|`: rDPO's empirical loss is unbounded
below on small or noisy samples, and the paper's analysis assumes such a
bounded parameter set. One :func:`prefsim.sweep` per ``n`` and loss runs
every seed and every :math:`\epsilon` (``problem_axis``; the same data and
flips across losses and, nested, across rates).

What the paper proves: rDPO's loss is an unbiased estimate of the clean DPO
loss, and its policy's sub-optimality gap is
:math:`O\bigl(\frac{1}{1-2\epsilon}\sqrt{d/n}\bigr)` (log-linear policies,
feature coverage of the SFT policy, bounded :math:`\theta`). What is
measured here: at the largest ``n`` and :math:`\epsilon \ge 0.2` rDPO beats
DPO and cDPO seed by seed; DPO's and cDPO's gaps are a bias that does not
shrink with ``n``; rDPO's parameter error falls like :math:`n^{-1/2}` and its
KL gap :math:`\beta\,\mathrm{KL}(\hat\pi\|\pi^*)` (quadratic in the error)
at least as fast; and :math:`(1-2\epsilon)\|\hat\theta-\theta^*\|` is nearly
constant across :math:`\epsilon`, the :math:`1/(1-2\epsilon)` of the bound.
IPO (:math:`\tau = \beta`) is shown for reference: its optimum is not
:math:`\pi^*` even without noise.

Step sizes: DPO, cDPO and rDPO have curvature at most
:math:`\beta^2\lambda_{\max}(\hat\Sigma)/4` with
:math:`\lambda_{\max}(\hat\Sigma) \lesssim 2(1+\sqrt{D/n})^2 \le 2.7`
(Gaussian feature differences), so :math:`\eta = 4 \le 1/L`; IPO has
:math:`L = 2\lambda_{\max} \le 5.4`, so :math:`\eta = 0.1`. Every run is
checked to have converged (a claim).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import prefsim
from prefsim import loglinear
from prefsim import losses
from prefsim import offline
from prefsim import plotting
from studies._harness import Claim, Context, Report, check, loglog_slope

DESCRIPTION = ("Robust DPO under label flips: rDPO's error falls like "
               "n^-1/2 / (1-2eps), DPO's and cDPO's are biased")

EPS = (0.0, 0.1, 0.2, 0.3, 0.4)
N_PROMPTS, N_RESPONSES, DIM = 100, 8, 8
BETA, REWARD_SCALE = 0.5, 1.0            # ||beta theta*|| = 1
THETA_NORM = REWARD_SCALE / BETA
RADIUS = 2.0 * THETA_NORM                # B = 2 ||theta*||
N_STEPS = 300
LOSSES = ("dpo", "cdpo", "rdpo", "ipo")
LR = {"dpo": 4.0, "cdpo": 4.0, "rdpo": 4.0, "ipo": 0.1}
NOISY = (0.2, 0.3, 0.4)                  # the rates the comparisons use
SLOPE_EPS = (0.0, 0.1, 0.2, 0.3)
SLOPE_MIN_N = 1000
METRICS = ("suboptimality", "kl_gap", "param_error")
LABELS = {"suboptimality": r"$J(\pi^*) - J(\hat\pi)$",
          "kl_gap": r"$\beta\,\mathrm{KL}(\hat\pi\,\|\,\pi^*)$",
          "param_error": r"$\|\hat\theta - \theta^*\|$"}


def _algorithm(name: str, n: int) -> prefsim.Algorithm:
  """The offline learner for one loss; cDPO and rDPO read eps from the problem."""
  kwargs = (offline.known_flip_rate if name in ("cdpo", "rdpo") else None)
  return offline.offline_po(getattr(losses, name), n_pairs=n, lr=LR[name],
                            radius=RADIUS, loss_kwargs=kwargs,
                            log_metrics=False)


@jax.jit
def _metrics(thetas, problems):
  """``loglinear.metrics`` of ``thetas[S, C, D]`` on ``problems[C]``."""
  per_problem = jax.vmap(loglinear.metrics)
  return jax.vmap(per_problem, in_axes=(0, None))(thetas, problems)


def _train(problems, n: int, n_seeds: int, ctx: Context) -> dict:
  """Final metrics of every loss at one ``n``: ``{loss: {name: [S, C]}}``."""
  out = {}
  for name in LOSSES:
    ctx.log(f"n = {n}: {name}, {n_seeds} seeds x {len(EPS)} flip rates")
    finals, infos = prefsim.sweep(jax.random.key(1), _algorithm(name, n),
                                  problems, N_STEPS, n_seeds, problem_axis=0)
    result = dict(_metrics(finals.theta, problems))
    result["step_norm"] = infos["step_norm"][..., -1]
    result["theta_norm"] = infos["theta_norm"][..., -1]
    out[name] = jax.tree_util.tree_map(np.asarray, result)
  return out


def _fraction_below(a, b, c):
  """Share of seeds where ``a < b`` and ``a < c`` (arrays ``[S]``)."""
  return float(np.mean((a < b) & (a < c)))


def _eps_colors():
  """Shades of rDPO's colour, light (eps = 0) to dark (eps = 0.4)."""
  reds = matplotlib.colormaps["Reds"]
  return [reds(v) for v in np.linspace(0.35, 1.0, len(EPS))]


def _figure(ns, res, n_seeds, slopes):
  """2 x 3 panels: gaps vs eps at the largest n, and vs n at eps = 0.3."""
  fig, axes = plotting.figure(2, 3, width=14.0, height=8.2)
  i_max, c_mid = len(ns) - 1, EPS.index(0.3)
  for ax, metric in zip(axes[0], METRICS[:2]):
    for name in LOSSES:
      plotting.band(ax, EPS, res[name][metric][:, i_max], label=name,
                    marker="o")
    ax.set(xlabel=r"flip rate $\epsilon$", ylabel=LABELS[metric],
           title=f"{LABELS[metric]} at n = {ns[-1]:,}")
  axes[0, 1].set_yscale("log")
  axes[0, 0].legend(title=f"{n_seeds} seeds, mean ± s.e.")
  ax = axes[0, 2]
  err = res["rdpo"]["param_error"][:, i_max]                       # [S, C]
  scale = 1 - 2 * np.asarray(EPS)
  plotting.band(ax, EPS, err, label="rdpo", marker="o")
  plotting.band(ax, EPS, err * scale, label=r"rdpo $\times(1-2\epsilon)$",
                color=plotting.color("rdpo"), linestyle="--", marker="s")
  plotting.band(ax, EPS, res["dpo"]["param_error"][:, i_max], label="dpo",
                marker="o")
  ax.plot(EPS, err[:, 0].mean() / scale, ":", color=plotting.color("theory"),
          label=r"rdpo at $\epsilon$=0, $\times 1/(1-2\epsilon)$")
  ax.set(xlabel=r"flip rate $\epsilon$", ylabel=LABELS["param_error"],
         title=rf"rDPO error $\propto 1/(1-2\epsilon)$, n = {ns[-1]:,}")
  ax.legend()

  for ax, metric in zip(axes[1], METRICS[:2]):
    for name in LOSSES:
      plotting.band(ax, ns, res[name][metric][:, :, c_mid], label=name,
                    marker="o")
    ax.set(xscale="log", xlabel="comparisons n", ylabel=LABELS[metric],
           title=rf"{LABELS[metric]} vs n, $\epsilon$ = 0.3")
  axes[1, 1].set_yscale("log")
  guide = res["rdpo"]["kl_gap"][:, :, c_mid].mean(0)
  axes[1, 1].plot(ns, guide[-1] * ns[-1] / np.asarray(ns), ":",
                  color=plotting.color("theory"), label=r"$\propto 1/n$")
  axes[1, 1].legend()
  axes[1, 0].axhline(0.0, color=plotting.color("theory"), linewidth=0.8)

  ax = axes[1, 2]
  for c, (eps, color) in enumerate(zip(EPS, _eps_colors())):
    label = rf"rdpo $\epsilon$={eps:g}"
    if eps in SLOPE_EPS:
      label += f" (slope {slopes[eps]:.2f})"
    plotting.band(ax, ns, res["rdpo"]["param_error"][:, :, c], label=label,
                  color=color, marker="o", markersize=3)
  plotting.band(ax, ns, res["dpo"]["param_error"][:, :, c_mid],
                label=r"dpo $\epsilon$=0.3", color=plotting.color("dpo"),
                linestyle="--")
  first = res["rdpo"]["param_error"][:, :, 0].mean(0)
  ax.plot(ns, first[-1] * np.sqrt(ns[-1] / np.asarray(ns)), ":",
          color=plotting.color("theory"), label=r"$\propto n^{-1/2}$")
  ax.set(xscale="log", yscale="log", xlabel="comparisons n",
         ylabel=LABELS["param_error"], title="parameter error vs n")
  ax.legend(fontsize=7.5, ncol=1)
  fig.suptitle(rf"Robust DPO under label flips: log-linear policies, "
               rf"D = {DIM}, $\beta$ = {BETA}, $\|\beta\theta^*\|$ = "
               rf"{REWARD_SCALE:g}, {N_PROMPTS} prompts × {N_RESPONSES} "
               rf"responses, $\|\theta\| \leq$ {RADIUS:g}")
  return fig


def run(ctx: Context) -> Report:
  ns = ([300, 1000, 3000, 10000, 30000] if ctx.quick else
        [300, 600, 1000, 2000, 4000, 8000, 15000, 30000])
  n_seeds = 32 if ctx.quick else 128
  problem = loglinear.make_problem(jax.random.key(0), N_PROMPTS, N_RESPONSES,
                                   DIM, beta=BETA, theta_norm=THETA_NORM)
  problems = loglinear.with_flip_rates(problem, EPS)
  config = {"eps": EPS, "ns": ns, "n_seeds": n_seeds, "n_prompts": N_PROMPTS,
            "n_responses": N_RESPONSES, "dim": DIM, "beta": BETA,
            "reward_scale": REWARD_SCALE, "radius": RADIUS,
            "n_steps": N_STEPS, "lr": LR, "losses": LOSSES,
            "features": "N(0, I)", "reference": "uniform",
            "problem_key": 0, "sweep_key": 1}
  per_n = [ctx.memo(f"n{n}", lambda n=n: _train(problems, n, n_seeds, ctx),
                    n=n, **config) for n in ns]
  # res[loss][metric]: [S, N, C]
  res = {name: {m: np.stack([r[name][m] for r in per_n], axis=1)
                for m in per_n[0][name]} for name in LOSSES}
  i_max, i_ref = len(ns) - 1, ns.index(SLOPE_MIN_N)
  large = [i for i, n in enumerate(ns) if n >= SLOPE_MIN_N]
  n_large = [ns[i] for i in large]

  claims: list[Claim] = []
  for eps in NOISY:
    c = EPS.index(eps)
    for metric in ("suboptimality", "kl_gap"):
      r, d, cd = (res[k][metric][:, i_max, c] for k in ("rdpo", "dpo", "cdpo"))
      claims.append(check(
          f"eps={eps:g}, n={ns[-1]}: share of seeds where rDPO's {metric} "
          "is below DPO's and cDPO's", _fraction_below(r, d, cd), lo=0.9))
  for name in ("dpo", "cdpo"):
    for metric in ("suboptimality", "kl_gap"):
      ratio = min(res[name][metric][:, i_max, EPS.index(e)].mean()
                  / res[name][metric][:, i_ref, EPS.index(e)].mean()
                  for e in NOISY)
      claims.append(check(
          f"{name}'s mean {metric} at n={ns[-1]} / at n={SLOPE_MIN_N}, min "
          "over eps in {0.2,0.3,0.4} (biased: does not shrink)", ratio,
          lo=0.5))
  slopes, kl_slopes = {}, {}
  for eps in SLOPE_EPS:
    c = EPS.index(eps)
    err = res["rdpo"]["param_error"][:, large, c].mean(0)
    kl = res["rdpo"]["kl_gap"][:, large, c].mean(0)
    slopes[eps], _ = loglog_slope(n_large, err)
    kl_slopes[eps], _ = loglog_slope(n_large, kl)
    claims.append(check(
        f"eps={eps:g}: log-log slope of rDPO's mean parameter error vs n "
        f"(n >= {SLOPE_MIN_N}) is -1/2 ± 0.2", slopes[eps], lo=-0.7, hi=-0.3))
    claims.append(check(
        f"eps={eps:g}: log-log slope of rDPO's mean KL gap vs n "
        f"(n >= {SLOPE_MIN_N}) is <= -0.4", kl_slopes[eps], hi=-0.4))
  noisy = [EPS.index(e) for e in NOISY]
  err = res["rdpo"]["param_error"][:, i_max, noisy].mean(0)         # [3]
  scaled = err * (1 - 2 * np.asarray(NOISY))
  claims.append(check(
      f"n={ns[-1]}: max/min over eps in {{0.2,0.3,0.4}} of "
      "(1-2eps)·rDPO's mean error", scaled.max() / scaled.min(), hi=1.6))
  claims.append(check(
      f"n={ns[-1]}: max/min over eps in {{0.2,0.3,0.4}} of rDPO's unscaled "
      "mean error (varies far more)", err.max() / err.min(), lo=2.0))
  on_ball = np.mean(res["rdpo"]["theta_norm"][:, i_max] > RADIUS * (1 - 1e-4))
  claims.append(check(
      f"n={ns[-1]}: share of rDPO runs on the ball's boundary, every eps "
      "(the projection is inactive: the unconstrained estimate)",
      on_ball, hi=0.0))
  claims.append(check(
      f"every run converged: largest last-step |theta_t+1 - theta_t| "
      f"(of {N_STEPS} steps)",
      max(res[name]["step_norm"].max() for name in LOSSES), hi=1e-5))

  fig = _figure(ns, res, n_seeds, slopes)
  series = {"n": ns, "eps": EPS}
  for name in LOSSES:
    for metric in (*METRICS, "theta_norm"):
      series[f"{name}_{metric}_mean"] = res[name][metric].mean(0)   # [N, C]
  series["rdpo_param_error_slope"] = {str(k): v for k, v in slopes.items()}
  series["rdpo_kl_gap_slope"] = {str(k): v for k, v in kl_slopes.items()}
  series["rdpo_on_ball_share"] = np.mean(
      res["rdpo"]["theta_norm"] > RADIUS * (1 - 1e-4), axis=0)      # [N, C]
  return Report(figure=fig, series=series, claims=claims, config=config,
                seeds=list(range(n_seeds)))
