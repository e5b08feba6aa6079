r"""Regret vs partial return: which model learns a good reward from regret
preferences (Knox et al. 2022; THEORY.md §4).

Setting (:mod:`prefsim.mdp`, :mod:`prefsim.models.regret`):

* ``N`` random delivery-style gridworlds (:func:`prefsim.mdp.delivery` with
  a key per MDP): a ``5 x 5`` grid, 4 deterministic actions, one goal and
  one sheep cell (terminal), 2 coin, 3 roadblock and 4 mud cells, the
  paper's feature weights (step −1, goal +50, sheep −50, coin +1, roadblock
  −1, mud −2) on the cell entered, :math:`\gamma = 0.9`, starts uniform over
  the non-terminal cells. (The paper's grid is ``10 x 10``, undiscounted;
  ours is smaller and discounted so that the sweep fits a 2-core CPU.)
* Per MDP, a pool of ``P_max`` pairs of length-3 segments (starts from the
  initial distribution, uniformly random actions), labelled by the regret
  model: :math:`y \sim \mathrm{Bernoulli}(\sigma(\mathrm{regret}(\sigma_2)
  - \mathrm{regret}(\sigma_1)))` (:func:`prefsim.models.regret.sample_labels`).
  The data set of size ``n`` is the first ``n`` pairs of the pool (nested
  data sets, common random numbers across sizes and models).
* For each model (regret, partial return) and each size ``n``, a linear
  reward :math:`r_w = \Phi w` on the six features is fitted by maximum
  likelihood under that model (:func:`prefsim.models.regret.fit_reward`,
  L-BFGS from several random starts). The MDPs are fitted by one jitted
  ``vmap``, called on chunks of 32 MDPs (larger batches stalled in XLA's
  CPU thread pool on the 2-core machine, see docs); the sizes share its
  shape (the pool, with ``pair_weights`` 1 on the first ``n`` pairs and 0
  on the rest), so it compiles once per model.
* Score: the learned reward's optimal policy (greedy in its :math:`Q^*`,
  uniform over exact ties) is evaluated under the *true* reward by the mean
  scaled return :func:`prefsim.mdp.scaled_return`,
  :math:`(J(\pi) - J(\pi_U)) / (J(\pi^*) - J(\pi_U))` with
  :math:`J(\pi) = \sum_s\rho_0(s)V^\pi(s)`: 1 optimal, 0 uniformly random.
  Near-optimal: scaled return > 0.9, the paper's threshold.

Claims (the paper's, on our smaller domain): at the largest size the
fraction of MDPs where the learned reward's policy is near-optimal is
higher under the regret model than under partial return (by at least one
MDP), and it is above one half (most MDPs); the regret model's fraction
grows from the smallest size to the largest.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import mdp as mdp_lib
from prefsim import plotting
from prefsim.models import regret as regret_lib
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("Regret vs partial return (Knox et al. 2022): from regret-model "
               "preferences, the regret model's learned reward is "
               "near-optimal on more MDPs")

GRID = {"height": 5, "width": 5, "n_goal": 1, "n_sheep": 1, "n_coin": 2,
        "n_roadblock": 3, "n_mud": 4, "gamma": 0.9}
STEPS = 3           # segment length T
CHUNK = 32          # MDPs per call of the vmapped fit
NEAR_OPTIMAL = 0.9  # the paper's threshold on the mean scaled return
LABELS = {"regret": "regret model", "partial_return": "partial return"}
COLORS = {"regret": plotting.CYCLE[3], "partial_return": plotting.CYCLE[0]}


def _worlds(n_mdps: int):
  """``n_mdps`` delivery gridworlds, stacked: ``(TabularMDP, features)``."""
  grids = [mdp_lib.delivery(key, **GRID)
           for key in jax.random.split(jax.random.key(0), n_mdps)]
  mdps = jax.tree_util.tree_map(lambda *x: jnp.stack(x),
                                *[g.mdp for g in grids])
  return mdps, jnp.stack([g.features for g in grids])


@functools.partial(jax.jit, static_argnames=("n_pairs",))
def _data(keys, mdps, n_pairs):
  """Per MDP: ``n_pairs`` segment pairs and regret-model labels."""
  def one(key, mdp):
    k1, k2, k3 = jax.random.split(key, 3)
    seg_1 = regret_lib.sample_segments(k1, mdp, n_pairs, STEPS)
    seg_2 = regret_lib.sample_segments(k2, mdp, n_pairs, STEPS)
    labels = regret_lib.sample_labels(k3, mdp, seg_1, seg_2, "regret")
    return seg_1, seg_2, labels
  return jax.vmap(one)(keys, mdps)


@functools.partial(jax.jit,
                   static_argnames=("model", "n_starts", "max_iter"))
def _fit(keys, features, mdps, seg_1, seg_2, labels, pair_weights, model,
         n_starts, max_iter):
  """Per MDP: the fitted weights [F]."""
  def one(key, feats, mdp, s1, s2, y):
    return regret_lib.fit_reward(key, feats, (s1, s2), y.astype(feats.dtype),
                                 model, mdp=mdp, pair_weights=pair_weights,
                                 n_starts=n_starts, max_iter=max_iter)
  return jax.vmap(one)(keys, features, mdps, seg_1, seg_2, labels)


@jax.jit
def _learned_policy(features, mdps, w):
  """Per MDP: the greedy policy [S, A] of the learned reward's Q*."""
  def one(feats, mdp, w):
    _, q = mdp_lib.value_iteration(mdp._replace(rewards=feats @ w))
    return mdp_lib.greedy_policy(q)
  return jax.vmap(one)(features, mdps, w)


@jax.jit
def _score(mdps, policies):
  """Per MDP: the mean scaled return of the policy under the true reward."""
  return jax.vmap(mdp_lib.scaled_return)(mdps, policies)


def _fit_and_score(keys, features, mdps, seg_1, seg_2, labels, pair_weights,
                   model, n_starts, max_iter):
  """Weights [N, F] and scaled returns [N], in three computations, each
  waited for (smaller programs; see docs/regret_vs_partial_return.md on the
  deadlock that batched LAPACK solves caused)."""
  w = np.asarray(_fit(keys, features, mdps, seg_1, seg_2, labels,
                      pair_weights, model, n_starts, max_iter))
  policies = np.asarray(_learned_policy(features, mdps, w))
  return w, np.asarray(_score(mdps, policies))


def _sweep(cfg: dict, ctx: Context) -> dict:
  """Scaled returns ``[N, Z]`` and weights ``[N, Z, F]`` per model."""
  mdps, features = _worlds(cfg["n_mdps"])
  data_keys, fit_keys = (jax.random.split(k, cfg["n_mdps"]) for k in
                         jax.random.split(jax.random.key(1)))
  seg_1, seg_2, labels = _data(data_keys, mdps, max(cfg["sizes"]))
  out = {"label_mean": float(np.mean(labels))}
  batch = [fit_keys, features, mdps, seg_1, seg_2, labels]
  for model in regret_lib.MODELS:
    scores, weights = [], []
    for n in cfg["sizes"]:
      mask = (jnp.arange(max(cfg["sizes"])) < n).astype(features.dtype)
      parts = []
      for start in range(0, cfg["n_mdps"], CHUNK):
        ctx.log(f"{model}: {n} preferences, MDPs {start}-"
                f"{min(start + CHUNK, cfg['n_mdps']) - 1}")
        chunk = jax.tree_util.tree_map(lambda x: x[start:start + CHUNK],
                                       batch)
        # Wait for each chunk (np.asarray): one computation at a time.
        parts.append([np.asarray(x, np.float64) for x in _fit_and_score(
            *chunk, mask, model, cfg["n_starts"], cfg["max_iter"])])
      w, score = (np.concatenate([p[i] for p in parts]) for i in (0, 1))
      scores.append(score)
      weights.append(w)
    out[model] = {"scaled_return": np.stack(scores, 1),
                  "weights": np.stack(weights, 1)}
  return out


def _figure(res: dict, sizes: list[int], n_mdps: int):
  fig, axes = plotting.figure(1, 2, width=11.0, height=4.2)
  for model, label in LABELS.items():
    ret = res[model]["scaled_return"]
    plotting.band(axes[0], sizes, (ret > NEAR_OPTIMAL).astype(float),
                  label=label, color=COLORS[model], marker="o")
    axes[1].plot(sizes, np.median(ret, 0), marker="o", label=label,
                 color=COLORS[model])
    axes[1].fill_between(sizes, np.quantile(ret, 0.25, 0),
                         np.quantile(ret, 0.75, 0), color=COLORS[model],
                         alpha=0.2, linewidth=0)
  axes[0].set(xscale="log", xlabel="number of preferences",
              ylabel=f"fraction near-optimal (scaled return > "
                     f"{NEAR_OPTIMAL:g})", ylim=(-0.02, 1.02),
              title=f"{n_mdps} MDPs, mean ± binomial s.e.")
  axes[1].axhline(1.0, color=plotting.color("optimal"), linewidth=0.8,
                  label="optimal")
  axes[1].axhline(0.0, color="0.5", linewidth=0.8, linestyle=":",
                  label="uniformly random")
  axes[1].set(xscale="log", xlabel="number of preferences",
              ylabel="mean scaled return of the learned policy",
              ylim=(-0.6, 1.1), title="median and interquartile range")
  axes[0].legend(title="reward learned with", fontsize=8)
  axes[1].legend(fontsize=8)
  h, w = GRID["height"], GRID["width"]
  fig.suptitle(f"Preferences from the regret model, reward learned under "
               f"each model\nrandom {h}x{w} delivery gridworlds, "
               f"γ = {GRID['gamma']:g}, segments of {STEPS} steps")
  return fig


def run(ctx: Context) -> Report:
  if ctx.quick:
    cfg = {"n_mdps": 32, "sizes": [3, 30, 300], "n_starts": 4,
           "max_iter": 60}
  else:
    cfg = {"n_mdps": 96, "sizes": [3, 10, 30, 100, 300], "n_starts": 4,
           "max_iter": 60}
  config = {**cfg, "grid": GRID, "segment_steps": STEPS,
            "segment_policy": "uniform random", "labels": "regret model, "
            "sampled Bernoulli", "near_optimal": NEAR_OPTIMAL,
            "layout_key": 0, "data_key": 1,
            "policy": "greedy in Q* of the learned reward, uniform over ties"}
  res = ctx.memo("sweep", lambda: _sweep(cfg, ctx), **config)
  sizes, n_mdps = cfg["sizes"], cfg["n_mdps"]
  near = {m: (res[m]["scaled_return"] > NEAR_OPTIMAL).mean(0)
          for m in regret_lib.MODELS}
  top = len(sizes) - 1
  claims = [
      check(f"fraction of MDPs near-optimal at n = {sizes[top]}: regret model "
            "minus partial return (>= one MDP in favour of regret)",
            near["regret"][top] - near["partial_return"][top],
            lo=1.0 / n_mdps),
      Claim(f"fraction of MDPs near-optimal at n = {sizes[top]}, regret model "
            "(most MDPs)", float(near["regret"][top]), "> 0.5",
            bool(near["regret"][top] > 0.5)),
      check(f"regret model: fraction near-optimal at n = {sizes[top]} minus at "
            f"n = {sizes[0]}", near["regret"][top] - near["regret"][0],
            lo=1.0 / n_mdps),
  ]
  series = {"sizes": sizes, "label_mean": res["label_mean"]}
  for model in regret_lib.MODELS:
    ret = res[model]["scaled_return"]
    series[f"{model}: fraction near-optimal"] = near[model]
    series[f"{model}: median scaled return"] = np.median(ret, 0)
    series[f"{model}: scaled return per MDP"] = ret
    series[f"{model}: learned weights"] = res[model]["weights"]
  return Report(figure=_figure(res, sizes, n_mdps), series=series,
                claims=claims, config=config, seeds=[0, 1])
