r"""Coverage separation: offline DPO vs HyPO vs online RLHF (Song et al. 2024).

Setting (:class:`prefsim.coverage.CoverageProblem`), drawn afresh for every
seed: a log-linear contextual bandit with ``X = 50`` prompts, ``K = 10``
responses per prompt and ``D = 8`` features, :math:`\beta = 0.1`, prompts
uniform.

* A preferred direction :math:`u` (uniform on the sphere) and
  :math:`\theta^* = c\,u`, :math:`c = 10` (reward scale
  :math:`\beta c = 1`).
* Responses 0..7 are *seen*: features :math:`\phi \sim N(0, I_D)`, true
  reward :math:`r^* = \beta\,\theta^{*\top}\phi`, and
  :math:`\pi_{\rm ref} = 0.98/8` each.
* Responses 8, 9 are *unseen*: :math:`\pi_{\rm ref} = 0.01` each; features
  :math:`a\,u + 0.5\,\xi`, :math:`a = 2.5`, :math:`\xi \sim N(0, I_D)` —
  they extrapolate the preferred direction — but their true reward is low,
  one below the worst seen response of their prompt: a reward hack.
* The offline data: ``P = 2000`` pairs drawn from :math:`\pi_{\rm ref}`
  restricted to the seen responses (so no unseen response appears in any
  pair: no global coverage), labelled by Bradley-Terry on :math:`r^*`.

Four arms, each one :func:`prefsim.sweep` over the seeds' problems
(``problem_axis=0``), Adam with step 0.05 from :math:`\theta = 0`
(:math:`\pi_{\rm ref}`): offline DPO (full batch, trained to convergence);
HyPO with :math:`\lambda = 0.1` (8 on-policy samples per prompt per step);
online RLHF with a tabular Bradley-Terry reward model fitted on the seen
responses (unseen responses get their prompt's lowest fitted reward: no
extrapolation; L2 0.1) and with a linear reward model in the policy's own
features (MLE), each optimised by REINFORCE with 8 on-policy samples per
prompt and a leave-one-out baseline.

Claims (means and fractions over seeds, at the last step): DPO puts more
than half its mass on the unseen responses (median over seeds); HyPO's KL
is at least 5x smaller than DPO's and its true reward at least DPO's, each
in at least 90 % of seeds; RLHF with the tabular reward stays near the data
(unseen mass below 0.25, median) and obeys the certificate
:math:`\mathbb{E}_x\mathrm{KL}(\pi\|\pi_{\rm ref}) \le \mathbb{E}_x
[\mathbb{E}_\pi\hat r - \mathbb{E}_{\pi_{\rm ref}}\hat r]/\beta` in every
seed (it holds at any policy that improved the regularised objective on
:math:`\pi_{\rm ref}`); RLHF with the linear reward coincides with DPO: the
KL-optimal policy of its reward model equals DPO's trained policy (mean
total variation below 0.01), and its trained policy's unseen mass is within
0.05 of DPO's (median over seeds of the difference).

In a purely tabular softmax none of this appears: an unseen response's
logit gets zero DPO gradient (the gradient sums to zero over the seen
responses), so DPO leaves its mass at :math:`\pi_{\rm ref}`; tabular runs
serve the theorem tests only (tests/test_coverage.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

import prefsim
from prefsim import coverage as cov
from prefsim import data as pdata
from prefsim import plotting
from prefsim import policies
from prefsim.run import seed_keys
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("Without global coverage DPO moves its mass onto unseen "
               "reward hacks; HyPO's on-policy KL and RLHF with a "
               "non-extrapolating reward stay near the data")

N_PROMPTS, N_SEEN, N_UNSEEN, DIM = 50, 8, 2, 8
BETA = 0.1
THETA_NORM = 10.0     # c: r* = beta c u.phi on the seen responses
EXTRAPOLATION = 2.5   # a: unseen features a u + NOISE xi
NOISE = 0.5
REF_UNSEEN = 0.01     # pi_ref of each unseen response
REWARD_GAP = 1.0      # r*(unseen) = min seen r* - REWARD_GAP
N_PAIRS = 2000
LR = 0.05
LAM = 0.1
N_SAMPLES = 8
TABULAR_L2 = 0.1
METHODS = ("DPO", f"HyPO (λ = {LAM:g})", "RLHF, tabular reward",
           "RLHF, linear reward")
COLORS = dict(zip(METHODS, map(plotting.color,
                               ("dpo", "hypo", "rlhf", "online"))))


def hack_problem(key: jax.Array) -> cov.CoverageProblem:
  """One draw of the study's problem (see the module docstring); vmappable."""
  k_u, k_seen, k_unseen, k_data = jax.random.split(key, 4)
  u = jax.random.normal(k_u, (DIM,))
  u = u / jnp.linalg.norm(u)
  seen = jax.random.normal(k_seen, (N_PROMPTS, N_SEEN, DIM))
  unseen = EXTRAPOLATION * u + NOISE * jax.random.normal(
      k_unseen, (N_PROMPTS, N_UNSEEN, DIM))
  features = jnp.concatenate([seen, unseen], axis=1)
  seen_rewards = BETA * THETA_NORM * (seen @ u)                  # [X, 8]
  low = jnp.min(seen_rewards, axis=1, keepdims=True) - REWARD_GAP
  rewards = jnp.concatenate(
      [seen_rewards, jnp.broadcast_to(low, (N_PROMPTS, N_UNSEEN))], axis=1)
  ref = jnp.log(jnp.concatenate(
      [jnp.full((N_PROMPTS, N_SEEN), (1 - N_UNSEEN * REF_UNSEEN) / N_SEEN),
       jnp.full((N_PROMPTS, N_UNSEEN), REF_UNSEEN)], axis=1))
  # Pairs from pi_ref restricted to the seen responses.
  seen_only = jnp.where(jnp.arange(N_SEEN + N_UNSEEN) < N_SEEN, ref, -jnp.inf)
  data = pdata.bt_dataset(k_data, seen_only, rewards, N_PAIRS)
  return cov.coverage_problem(features, ref, rewards, data, beta=BETA)


_hack_problem = jax.jit(hack_problem)


def problems(n_seeds: int) -> cov.CoverageProblem:
  """The seeds' problems, every leaf ``[S, ...]``; seed ``i`` draws its
  problem with key ``fold_in(key(0), i)``. (A loop over one compiled draw:
  compiling the vmapped draw took longer than the loop.)"""
  draws = [_hack_problem(key) for key in seed_keys(jax.random.key(0),
                                                    n_seeds)]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *draws)


def algorithms() -> dict[str, prefsim.Algorithm]:
  """The four arms, in the order of ``METHODS``."""
  return dict(zip(METHODS, (
      cov.offline_dpo(lr=LR, optimizer=optax.adam),
      cov.hypo(lam=LAM, lr=LR, n_samples=N_SAMPLES, optimizer=optax.adam),
      cov.online_rlhf(reward_model="tabular", reward_l2=TABULAR_L2, lr=LR,
                      n_samples=N_SAMPLES, optimizer=optax.adam),
      cov.online_rlhf(reward_model="linear", lr=LR, n_samples=N_SAMPLES,
                      optimizer=optax.adam))))


def _run_all(n_seeds: int, n_steps: int, ctx: Context) -> dict:
  batch = problems(n_seeds)
  out = {}
  for name, alg in algorithms().items():
    ctx.log(f"{name}: {n_seeds} seeds x {n_steps} steps")
    final, info = prefsim.sweep(jax.random.key(1), alg, batch, n_steps, 1,
                                problem_axis=0)
    out[name] = {k: np.asarray(v[0], np.float64) for k, v in info.items()}
    logp = jax.vmap(cov.policy_logprobs)(final.theta[0], batch)
    out[name]["final_logprobs"] = np.asarray(logp, np.float64)
    if isinstance(final, cov.RLHFState):
      out[name]["reward_model"] = np.asarray(final.reward_model[0],
                                             np.float64)
  out["ref_logprobs"] = np.asarray(batch.ref_logprobs, np.float64)
  return out


def _figure(res, n_seeds):
  fig, axes = plotting.figure(1, 3, width=15.0, height=4.4)
  panels = (("reward", r"true reward $J(\pi)$"),
            ("kl", r"$\mathbb{E}_x\,\mathrm{KL}(\pi\,\|\,\pi_{\rm ref})$"),
            ("out_of_support_mass", "mass on responses in no pair"))
  for ax, (key, label) in zip(axes, panels):
    for name in METHODS:
      series = res[name][key]
      steps = np.arange(1, series.shape[1] + 1)
      plotting.band(ax, steps, series, label=name, color=COLORS[name],
                    linestyle="--" if "linear" in name else "-")
    ax.set(xscale="log", xlabel="step", ylabel=label)
  axes[0].legend(title=f"{n_seeds} seeds (problems), mean ± s.e.",
                 fontsize=8, title_fontsize=8)
  fig.suptitle(
      f"Coverage separation (Song et al. 2024): X = {N_PROMPTS}, "
      f"{N_SEEN} seen + {N_UNSEEN} unseen responses, D = {DIM}, "
      f"β = {BETA:g}; unseen features extrapolate the preferred direction, "
      "their true reward is low")
  return fig


def run(ctx: Context) -> Report:
  n_seeds = 32 if ctx.quick else 64
  n_steps = 1000 if ctx.quick else 2000
  config = {"n_prompts": N_PROMPTS, "n_seen": N_SEEN, "n_unseen": N_UNSEEN,
            "dim": DIM, "beta": BETA, "theta_norm": THETA_NORM,
            "extrapolation": EXTRAPOLATION, "noise": NOISE,
            "ref_unseen": REF_UNSEEN, "reward_gap": REWARD_GAP,
            "n_pairs": N_PAIRS, "lr": LR, "optimizer": "adam", "lam": LAM,
            "n_samples": N_SAMPLES, "tabular_l2": TABULAR_L2,
            "n_seeds": n_seeds, "n_steps": n_steps, "problem_key": 0,
            "sweep_key": 1}
  res = ctx.memo("runs", lambda: _run_all(n_seeds, n_steps, ctx), **config)

  def last(name, key):
    return res[name][key][:, -1]

  dpo, hypo_, tab, lin = METHODS
  half = n_steps // 2
  claims: list[Claim] = [
      check("DPO trained to convergence: max over seeds of |loss(T) - "
            "loss(T/2)|", np.max(np.abs(res[dpo]["loss"][:, -1]
                                       - res[dpo]["loss"][:, half - 1])),
            hi=1e-4),
      check("DPO: mass on the unseen responses (median over seeds)",
            np.median(last(dpo, "out_of_support_mass")), lo=0.5),
      check(f"HyPO (λ = {LAM:g}): share of seeds with KL <= DPO's KL / 5",
            np.mean(last(hypo_, "kl") <= last(dpo, "kl") / 5), lo=0.9),
      check(f"HyPO (λ = {LAM:g}): share of seeds with J(π) >= DPO's",
            np.mean(last(hypo_, "reward") >= last(dpo, "reward")), lo=0.9),
      check("RLHF, tabular reward: mass on the unseen responses (median)",
            np.median(last(tab, "out_of_support_mass")), hi=0.25),
  ]
  # The certificate KL <= E_x[E_pi r_hat - E_ref r_hat] / beta, per seed.
  ref = res["ref_logprobs"]
  r_hat = res[tab]["reward_model"]
  gain = np.mean(np.sum((np.exp(res[tab]["final_logprobs"]) - np.exp(ref))
                        * r_hat, axis=-1), axis=-1) / BETA
  claims.append(check(
      "RLHF, tabular reward: max over seeds of KL - "
      "E_x[E_π r̂ - E_ref r̂]/β (KL bounded by the reward model's gain)",
      np.max(last(tab, "kl") - gain), hi=1e-4))
  star = np.asarray(policies.kl_optimal(jnp.asarray(ref),
                                        jnp.asarray(res[lin]["reward_model"]),
                                        BETA), np.float64)
  tv = 0.5 * np.abs(np.exp(star) - np.exp(res[dpo]["final_logprobs"])).sum(-1)
  claims += [
      check("RLHF, linear reward: the KL-optimal policy of its reward model "
            "vs DPO's trained policy, max over seeds of the mean total "
            "variation", np.max(tv.mean(-1)), hi=0.01),
      check("RLHF, linear reward: |unseen mass - DPO's| (median over seeds)",
            np.median(np.abs(last(lin, "out_of_support_mass")
                             - last(dpo, "out_of_support_mass"))), hi=0.05),
  ]
  # About 60 log-spaced steps per series keep the JSON small.
  steps = np.unique(np.geomspace(1, n_steps, 60).astype(int))
  series = {"step": steps, **{
      name: {k: res[name][k][:, steps - 1]
             for k in ("reward", "kl", "out_of_support_mass", "loss")}
      for name in METHODS}}
  return Report(figure=_figure(res, n_seeds), series=series, claims=claims,
                config=config, seeds=list(range(n_seeds)))
