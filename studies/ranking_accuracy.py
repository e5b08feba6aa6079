r"""Ranking accuracy along DPO training (Chen et al. 2024).

Chen, Malladi, Zhang, Chen, Zhang, Ranganath, Cho. *Preference Learning
Algorithms Do Not Learn Preference Rankings*, arXiv:2405.19534.

Setting: a tabular policy over ``X`` prompts with ``K = 2`` responses each,
the preferred :math:`y_w` (response 0) and the other :math:`y_l`, written as
the log-linear problem of :mod:`prefsim.loglinear` with one-hot features
(:math:`\phi(x, y) = e_{2x+y}`, ``D = 2X``), so :math:`\theta` holds one logit
per (prompt, response). The reference policy ranks a controlled half of the
pairs wrongly: its log-odds :math:`c_x = \log\pi_{\rm ref}(y_l\mid x) -
\log\pi_{\rm ref}(y_w\mid x)` are laid out evenly over three groups,
``right`` (:math:`-30 \le c < 0` nats, half of the prompts), ``mild``
(:math:`0 < c \le 10`, a quarter) and ``bad`` (:math:`10 < c \le 40`, a
quarter). A tabular "response" stands for a whole sequence, whose
log-probability sums over its tokens: margins of tens of nats are ordinary
there. :math:`\beta = 0.1`.

Labels, two regimes, the same references: ``hard`` — every rater prefers
:math:`y_w` (:math:`\alpha = 1`, a binarised data set); ``soft`` —
Bradley-Terry raters with agreement :math:`\alpha_x` spread evenly over
[0.8, 0.98] (independently of :math:`c_x`). Each seed draws ``256 X``
comparisons from :math:`\pi_{\rm ref}`
(:func:`prefsim.loglinear.sample_dataset`);
the rater agreement of a pair is its share in that data,
:math:`\hat\alpha_x`, which is what the trained objective sees.

Training: DPO by full-batch gradient descent on the mean loss over the
comparisons (:func:`prefsim.offline.offline_po`), all seeds and both regimes
in one :func:`prefsim.sweep` (``problem_axis``). A private wrapper
(:func:`_tracked`, not a new trainer) records after each step which pairs
:math:`\pi_\theta` ranks right, what Thm 4.1 reads off their DPO losses, and
the mean training loss. Step size: for the mean loss the logit margin
:math:`z_x = \beta(\theta_{x,w} - \theta_{x,l})` of prompt ``x`` moves by
:math:`\eta_x(\hat\alpha_x - \sigma(z_x))` per step with
:math:`\eta_x = 2\beta^2\,\mathrm{lr}\, n_x/P \approx 2\beta^2\mathrm{lr}/X`;
:math:`\mathrm{lr} = 0.1\,X/\beta^2` gives :math:`\eta \approx 0.2`, a
twentieth of the :math:`1/L` bound (:math:`\eta = 4`), so that the steps
follow the gradient flow and the curves read as functions of training time.

Measured (the claims):

1. The alignment gap (idealized minus observed ranking accuracy, the
   idealized one from Cor. 3.3 with :math:`\hat\alpha_x`) of the ``bad``
   group at the horizon ``t90``, the first step at which the mean training
   loss has made 90 % of its attainable descent, from :math:`\log 2` to the
   empirical minimum :math:`\hat L^* = \frac1P\sum_x n_x H(\hat\alpha_x)`
   (0 for hard labels; :math:`H` the binary entropy). The horizon is our
   choice of early stopping, not the paper's; the figure shows the gap at
   every step and against the loss, and the JSON the gap at 99 % of the
   descent too.
2. The ``right`` group's gap stays small at every step.
3. Thm 4.1 along training: for every pair, step, seed and regime,
   :math:`\pi_\theta(y_w) \ge \pi_\theta(y_l)` exactly when its DPO loss is
   at most :math:`-\log\sigma(\beta c)` (both computed).
4. Hard labels: the step at which a ``bad`` pair flips grows like
   :math:`e^{\beta c}`: under gradient flow on :math:`-\log\sigma(z)`,
   :math:`e^z + z = 1 + \eta t`, so a pair flips at
   :math:`t = (e^{\beta c} + \beta c - 1)/\eta`: the slope of
   :math:`\log t` against :math:`\beta c` tends to 1, and the measured flip
   steps are checked against the formula. This is why Thm 4.1's threshold
   :math:`-\log\sigma(\beta c) \approx e^{-\beta c}` is hard to reach.
5. The gap does close on a tabular problem given enough steps (it is 0 at
   the last step), but only late: the share of the loss descent made when
   the ``bad`` group's gap first falls to 0.05. Shares of the descent do
   not depend on the step size in the gradient-flow limit; step counts
   scale as :math:`1/\eta`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import prefsim
from prefsim import coverage
from prefsim import loglinear
from prefsim import losses
from prefsim import offline
from prefsim import plotting
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("Ranking accuracy along DPO training: the alignment gap to "
               "the idealized accuracy stays open for pairs pi_ref ranks "
               "badly")

BETA = 0.1
PAIRS_PER_PROMPT = 256
ALPHA_RANGE = (0.8, 0.98)        # soft labels: rater agreement per prompt
HARD_MARGIN = 40.0               # r*(y_w) - r*(y_l) for hard labels: sigma = 1
REGIMES = ("hard", "soft")
GROUPS = ("right", "mild", "bad")
GROUP_RANGES = {"right": (-30.0, 0.0), "mild": (0.0, 10.0),
                "bad": (10.0, 40.0)}   # c = log pi_ref(y_l) - log pi_ref(y_w)
GROUP_SHARE = {"right": 0.5, "mild": 0.25, "bad": 0.25}
GROUP_LABELS = {"right": r"$\pi_{\rm ref}$ right ($c<0$)",
                "mild": r"mildly wrong ($0<c\leq 10$)",
                "bad": r"badly wrong ($10<c\leq 40$)"}
GROUP_COLORS = {"right": plotting.color("offline"),
                "mild": plotting.color("hybrid"),
                "bad": plotting.color("rdpo")}
STEP_SCALE = 0.1                 # lr = STEP_SCALE * X / beta^2: eta ~ 0.2
HORIZON = 0.9                    # share of the attainable loss descent
EXTRA_HORIZONS = (0.99,)
CLOSED = 0.05                    # a gap at most this is closed


def _reference_margins(n_prompts: int) -> tuple[np.ndarray, np.ndarray]:
  """``c[X]`` laid out evenly within each group, and the group index ``[X]``.

  Within a group the values are the midpoints of equal cells of its range,
  so no pair sits on a group boundary or at ``c = 0``.
  """
  cs, groups = [], []
  for g, name in enumerate(GROUPS):
    n = int(round(GROUP_SHARE[name] * n_prompts))
    lo, hi = GROUP_RANGES[name]
    cs.append(lo + (hi - lo) * (np.arange(n) + 0.5) / n)
    groups.append(np.full(n, g))
  c, group = np.concatenate(cs), np.concatenate(groups)
  if c.shape != (n_prompts,):
    raise ValueError(f"n_prompts={n_prompts} does not split into the group "
                     f"shares {GROUP_SHARE}")
  return c, group


def _problem(c: np.ndarray, reward_margin: np.ndarray
             ) -> loglinear.LogLinearProblem:
  """The tabular problem: one-hot features, ``pi_ref`` with log-odds ``-c``.

  ``reward_margin[x] = r*(x, y_w) - r*(x, y_l)``, so Bradley-Terry raters
  prefer ``y_w`` with probability ``sigmoid(reward_margin)``.
  """
  n_prompts = c.shape[0]
  dim = 2 * n_prompts
  features = coverage.tabular_features(n_prompts, 2)
  ref_logits = jnp.stack([-c / 2, c / 2], axis=-1)
  half = reward_margin / (2 * BETA)          # r* = beta theta*^T phi
  theta_star = jnp.stack([half, -half], axis=-1).reshape(dim)
  dtype = features.dtype
  return loglinear.LogLinearProblem(
      features=features,
      ref_logprobs=jax.nn.log_softmax(jnp.asarray(ref_logits, dtype), -1),
      theta_star=jnp.asarray(theta_star, dtype),
      beta=jnp.asarray(BETA, dtype), eps=jnp.asarray(0.0, dtype))


def _problems(n_prompts: int) -> tuple[loglinear.LogLinearProblem, dict]:
  """Both label regimes, stacked along a leading axis ``C = 2``, and the
  layout ``{"c": [X], "group": [X]}`` they share."""
  c, group = _reference_margins(n_prompts)
  # Agreements spread evenly, assigned to prompts by a fixed permutation.
  alpha = np.linspace(*ALPHA_RANGE, n_prompts)
  alpha = alpha[np.random.default_rng(0).permutation(n_prompts)]
  margins = {"hard": np.full(n_prompts, HARD_MARGIN),
             "soft": np.log(alpha / (1 - alpha))}
  each = [_problem(c, margins[r]) for r in REGIMES]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *each)
  return stacked, {"c": c, "group": group}


def _tracked(algorithm: prefsim.Algorithm) -> prefsim.Algorithm:
  """``algorithm`` (offline DPO) with per-pair ranking records after each step.

  A private wrapper, not a trainer: ``init`` and the update are
  ``algorithm``'s. ``info`` gains, at the new iterate :math:`\\theta_{t+1}`,
  ``right`` (bool ``[X]``: :math:`\\pi_\\theta(y_w) \\ge \\pi_\\theta(y_l)`),
  ``thm41`` (bool ``[X]``: what :func:`prefsim.coverage.dpo_ranks_correctly`
  reads off the pair's DPO loss) and ``train_loss`` (the mean loss over the
  comparisons).
  """

  def step(key, state, problem):
    state, info = algorithm.step(key, state, problem)
    logp = loglinear.logprobs(state.theta, problem)              # [X, 2]
    h = logp - problem.ref_logprobs
    pair_loss = losses.dpo(h[:, 0], h[:, 1], beta=problem.beta)   # [X]
    ref = problem.ref_logprobs
    info = {"right": logp[:, 0] >= logp[:, 1],
            "thm41": coverage.dpo_ranks_correctly(pair_loss, ref[:, 0],
                                                  ref[:, 1], problem.beta),
            "train_loss": offline.mean_loss(losses.dpo, state.theta,
                                            state.counts, problem)}
    return state, info

  return prefsim.Algorithm(algorithm.init, step)


def _train(problems, group: np.ndarray, n_steps: int, n_seeds: int,
           ctx: Context) -> dict:
  """One sweep over seeds and both regimes; per-pair records reduced here.

  Returns ``n_w``, ``n_l`` (``[S, C, X]`` comparisons choosing ``y_w`` /
  ``y_l``), ``observed`` (``[S, C, T, G]`` ranking accuracy per group),
  ``thm41_disagree`` (how many (pair, step) records Thm 4.1 gets wrong, per
  run ``[S, C]``), ``train_loss`` (``[S, C, T]``) and ``flip_step``
  (``[S, C, X]``: first step, 1-based, ranked right; 0 if never).
  """
  n_prompts = group.shape[0]
  lr = STEP_SCALE * n_prompts / BETA**2
  algorithm = _tracked(offline.offline_po(
      losses.dpo, n_pairs=PAIRS_PER_PROMPT * n_prompts, lr=lr,
      log_metrics=False))
  ctx.log(f"DPO, {n_seeds} seeds x {len(REGIMES)} label regimes x "
          f"{n_steps} steps, X = {n_prompts}")
  finals, infos = prefsim.sweep(jax.random.key(1), algorithm, problems,
                                n_steps, n_seeds, problem_axis=0)
  counts = np.asarray(finals.counts, np.float64)            # [S, C, X, 2, 2]
  right = np.asarray(infos["right"])                        # [S, C, T, X]
  observed = np.stack([right[..., group == g].mean(-1, dtype=np.float32)
                       for g in range(len(GROUPS))], -1)
  return {
      "n_w": counts[..., 0, 1], "n_l": counts[..., 1, 0],
      "observed": observed,
      "thm41_disagree": (np.asarray(infos["thm41"]) != right).sum((-1, -2)),
      "train_loss": np.asarray(infos["train_loss"], np.float64),
      "flip_step": _first_step(np.moveaxis(right, -2, -1)),
  }


def _binary_entropy(n_w: np.ndarray, n_l: np.ndarray) -> np.ndarray:
  """Count-weighted binary entropy ``n H(n_w / n)`` in nats, per prompt."""
  n = n_w + n_l
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = [np.where(k > 0, -k * np.log(k / n), 0.0) for k in (n_w, n_l)]
  return terms[0] + terms[1]


def _first_step(mask: np.ndarray) -> np.ndarray:
  """First (1-based) index along the last axis where ``mask`` holds, else 0."""
  return np.where(mask.any(axis=-1), mask.argmax(axis=-1) + 1, 0)


def run(ctx: Context) -> Report:
  n_prompts = 256 if ctx.quick else 512
  n_seeds = 4 if ctx.quick else 16
  n_steps = 3000
  problems, layout = _problems(n_prompts)
  config = {"n_prompts": n_prompts, "n_responses": 2, "beta": BETA,
            "pairs_per_prompt": PAIRS_PER_PROMPT, "alpha_range": ALPHA_RANGE,
            "hard_reward_margin": HARD_MARGIN, "group_ranges": GROUP_RANGES,
            "group_share": GROUP_SHARE, "lr": STEP_SCALE * n_prompts / BETA**2,
            "n_steps": n_steps, "n_seeds": n_seeds, "horizon": HORIZON,
            "regimes": REGIMES, "sweep_key": 1, "alpha_permutation_seed": 0}
  c, group = layout["c"], layout["group"]
  res = ctx.memo("train", lambda: _train(problems, group, n_steps, n_seeds,
                                         ctx), **config)
  steps = np.arange(1, n_steps + 1)

  # Idealized accuracy per pair (Cor. 3.3) with the data's agreement.
  n_w, n_l = res["n_w"], res["n_l"]                              # [S, C, X]
  if np.any(n_w == 0):
    raise ValueError("a prompt has no comparison choosing y_w: its rater "
                     "agreement is 0, outside Cor. 3.3's (0, 1]")
  alpha_hat = n_w / (n_w + n_l)
  ref = np.asarray(problems.ref_logprobs)[None]                  # [1, C, X, 2]
  ideal = np.asarray(coverage.idealized_ranking_accuracy(
      ref[..., 0:1], ref[..., 1:2], alpha_hat[..., None], BETA))  # [S, C, X]

  masks = [group == g for g in range(len(GROUPS))]
  observed = res["observed"]                                     # [S, C, T, G]
  idealized = np.stack([ideal[..., m].mean(-1) for m in masks], -1)  # [S,C,G]
  gap = idealized[:, :, None, :] - observed                     # [S, C, T, G]

  # Horizons: shares of the attainable descent log 2 -> L*.
  n_pairs = PAIRS_PER_PROMPT * n_prompts
  loss_min = _binary_entropy(n_w, n_l).sum(-1) / n_pairs        # [S, C]
  descent = ((np.log(2.0) - res["train_loss"])
             / (np.log(2.0) - loss_min)[..., None])             # [S, C, T]
  horizons = {h: _first_step(descent >= h) for h in (HORIZON, *EXTRA_HORIZONS)}
  for h, t in horizons.items():
    if np.any(t == 0):
      raise ValueError(f"some run never made {h:.1%} of its loss descent in "
                       f"{n_steps} steps")

  def at_steps(x, t):
    """``x[s, r, t[s, r] - 1]`` for ``x[S, C, T]`` and steps ``t[S, C]``."""
    return np.take_along_axis(x, t[..., None] - 1, axis=-1)[..., 0]

  def gap_at(t, g):
    """Mean over seeds of group g's gap at per-run steps t[S, C]: [C]."""
    return at_steps(gap[..., g], t).mean(0)

  bad, mild, good = (GROUPS.index(k) for k in ("bad", "mild", "right"))
  closes = _first_step(gap[..., bad] <= CLOSED)                 # [S, C]
  if np.any(closes == 0):
    raise ValueError(f"the bad group's gap never fell to {CLOSED} in "
                     f"{n_steps} steps")
  claims: list[Claim] = []
  for r, regime in enumerate(REGIMES):
    claims.append(check(
        f"{regime} labels: bad group (10 < c <= 40 nats), idealized minus "
        f"observed ranking accuracy at the step where the loss made "
        f"{HORIZON:.0%} of its descent (mean of {n_seeds} seeds)",
        gap_at(horizons[HORIZON], bad)[r], lo=0.2))
    claims.append(check(
        f"{regime} labels: right group (c < 0), max over steps and seeds of "
        "|idealized - observed|", np.abs(gap[:, r, :, good]).max(), hi=0.05))
    claims.append(check(
        f"{regime} labels: bad group's gap at the last step ({n_steps}) "
        "(the gap closes with enough steps)",
        gap[:, r, -1, bad].mean(), hi=CLOSED))
    claims.append(check(
        f"{regime} labels: share of the loss descent made when the bad "
        f"group's gap first falls to {CLOSED} (min over seeds)",
        np.min(at_steps(descent, closes)[:, r]), lo=0.95))
  claims.append(check(
      "Thm 4.1 along training: share of (pair, step, seed, regime) where "
      "'DPO loss <= -log sigmoid(beta c)' equals 'pi(y_w) >= pi(y_l)'",
      1.0 - res["thm41_disagree"].sum() / (n_seeds * len(REGIMES) * n_steps
                                           * n_prompts), lo=1.0))
  hard = REGIMES.index("hard")
  flips = res["flip_step"][:, hard][:, masks[bad]]              # [S, Xbad]
  if np.any(flips == 0):
    raise ValueError(f"a bad pair never flipped in {n_steps} steps under "
                     "hard labels")
  beta_c = BETA * c[masks[bad]]
  fit = beta_c >= 2.0
  # Gradient flow on -log sigmoid(z) from z = 0: e^z + z = 1 + eta_x t, with
  # eta_x = 2 beta^2 lr n_x / P the step of prompt x in z.
  eta = 2 * BETA**2 * config["lr"] * (n_w + n_l) / n_pairs       # [S, C, X]
  flow = ((np.exp(beta_c) + beta_c - 1)[None]
          / eta[:, hard][:, masks[bad]])                         # [S, Xbad]

  def log_slope(t):
    return float(np.polyfit(np.tile(beta_c[fit], n_seeds),
                            np.log(t[:, fit]).ravel(), 1)[0])

  slope, flow_slope = log_slope(flips), log_slope(flow)
  claims.append(check(
      "hard labels: slope of log(flip step) against beta*c over the bad "
      f"pairs with beta*c >= 2 (e^{{beta c}} law; the gradient flow's slope "
      f"over the same pairs is {flow_slope:.3f})", slope, lo=0.85, hi=1.15))
  claims.append(check(
      "hard labels: median over the bad pairs of flip step / gradient-flow "
      "prediction (e^{beta c} + beta c - 1)/eta",
      np.median(flips / flow), lo=0.9, hi=1.1))

  fig = _figure(steps, observed, gap, 1.0 - descent, horizons, flow, beta_c,
                res["flip_step"], c, group, alpha_hat, n_seeds)
  series = {
      "step": steps, "groups": GROUPS, "regimes": REGIMES,
      "observed_mean": observed.mean(0),                         # [C, T, G]
      "idealized_mean": idealized.mean(0),                       # [C, G]
      "train_loss_mean": res["train_loss"].mean(0),              # [C, T]
      "loss_min_mean": loss_min.mean(0),                         # [C]
      "horizon_steps": {str(h): t for h, t in horizons.items()},  # [S, C]
      "bad_gap_at_horizon": {str(h): gap_at(t, bad)
                             for h, t in horizons.items()},
      "mild_gap_at_horizon": {str(h): gap_at(t, mild)
                              for h, t in horizons.items()},
      "bad_gap_closes_step": closes,                             # [S, C]
      "descent_when_bad_gap_closes": at_steps(descent, closes),  # [S, C]
      "mild_gap_closes_step": _first_step(gap[..., mild] <= CLOSED),
      "hard_flip_slope": slope, "hard_flow_slope": flow_slope,
  }
  return Report(figure=fig, series=series, claims=claims, config=config,
                seeds=list(range(n_seeds)))


def _figure(steps, observed, gap, remaining, horizons, flow, beta_c,
            flip_step, c, group, alpha_hat, n_seeds):
  """Rows: hard and soft labels. Columns: accuracy vs step, gap vs the loss
  descent still to make, and the step at which each pair flips."""
  fig, axes = plotting.figure(2, 3, width=15.5, height=8.6)
  for r, regime in enumerate(REGIMES):
    ax = axes[r, 0]
    for g, name in enumerate(GROUPS):
      color = GROUP_COLORS[name]
      plotting.band(ax, steps, observed[:, r, :, g], color=color,
                    label=GROUP_LABELS[name])
      ax.axhline(np.mean(observed[:, r, :, g] + gap[:, r, :, g]),
                 color=color, linestyle="--", linewidth=1.2)
    t90 = horizons[HORIZON][:, r].mean()
    ax.axvline(t90, color=plotting.color("theory"), linestyle=":",
               linewidth=1.0)
    ax.text(t90 * 1.1, 0.03, f"{HORIZON:.0%} of the loss descent",
            fontsize=8)
    ax.set(xscale="log", ylim=(-0.02, 1.04), xlabel="gradient step",
           ylabel="ranking accuracy",
           title=f"{regime} labels: observed (solid), idealized (dashed)")
    ax.legend(loc="center left", fontsize=8)

    ax = axes[r, 1]
    left = remaining[:, r].mean(0)                               # [T]
    for g, name in enumerate(GROUPS):
      plotting.band(ax, left, gap[:, r, :, g], color=GROUP_COLORS[name],
                    label=GROUP_LABELS[name])
    ax.axvline(1 - HORIZON, color=plotting.color("theory"), linestyle=":",
               linewidth=1.0)
    if regime == "hard":
      for cc, name in ((10.0, "mild"), (40.0, "bad")):
        threshold = np.logaddexp(0.0, -BETA * cc) / np.log(2.0)
        ax.axvline(threshold, color=GROUP_COLORS[name], linestyle="-.",
                   linewidth=1.0,
                   label=rf"Thm 4.1: loss $=-\log\sigma(\beta c)$, c = {cc:g}")
    ax.set(xscale="log", xlim=(1.0, max(left.min(), 1e-4)),
           ylim=(-0.03, 1.03),
           xlabel=(r"loss descent still to make, "
                   r"$(L-\hat L^*)/(\log 2-\hat L^*)$"),
           ylabel="alignment gap (idealized − observed)",
           title=f"{regime} labels: the gap against the training loss")
    ax.legend(fontsize=8)

    ax = axes[r, 2]
    flipped = flip_step[:, r] > 0                                # [S, X]
    with np.errstate(divide="ignore"):
      scale = (np.ones_like(alpha_hat[:, r]) if regime == "hard" else
               np.log(alpha_hat[:, r] / (1 - alpha_hat[:, r])))  # [S, X]
    for g, name in enumerate(GROUPS[1:], start=1):
      sel = flipped & (group == g)[None]
      xs = (BETA * c[None] / scale)[sel]
      ax.scatter(xs, flip_step[:, r][sel], s=4, alpha=0.4,
                 color=GROUP_COLORS[name], label=GROUP_LABELS[name])
    if regime == "hard":
      order = np.argsort(beta_c)
      ax.plot(beta_c[order], flow.mean(0)[order],
              color=plotting.color("theory"),
              label=r"gradient flow $(e^{\beta c}+\beta c-1)/\eta$")
      ax.set(xlabel=r"$\beta c$",
             title="hard labels: step at which a pair flips")
    else:
      ax.set(xlabel=r"$\beta c\,/\,\mathrm{logit}\,\hat\alpha$ "
             r"(the optimum ranks right iff $< 1$)",
             title="soft labels: step at which a pair flips")
    ax.set(yscale="log", ylabel="first step ranked right")
    ax.legend(fontsize=8)
  fig.suptitle(rf"Ranking accuracy along DPO training: tabular, "
               rf"X = {c.shape[0]} prompts with one pair each, "
               rf"$\beta$ = {BETA}, {n_seeds} seeds; idealized = Cor. 3.3 "
               rf"(Chen et al. 2024) with the data's rater agreement")
  return fig
