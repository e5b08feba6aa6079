r"""Nash dynamics: the iterative solvers of the preference game, side by side.

Setting (EGPO's simulations, Zhou, Fazel, Du 2025, arXiv:2503.08942): games
over ``K = 10`` responses, the strict lower triangle of ``P`` drawn
``U(0, 1)`` (the upper one is ``1 - P^T``), reference logits ``N(0, 1)``,
KL strength :math:`\tau \in \{0.1, 0.01\}`; every solver of
:mod:`prefsim.games.solvers` starts at the reference and runs on every game
in one :func:`prefsim.sweep` (``problem_axis=0``) per solver and
:math:`\tau`, with step :math:`\eta = 1` at :math:`\tau = 0.1` and
:math:`\eta = 0.3` at :math:`\tau = 0.01` (online mirror descent is unstable
at :math:`\eta = 1,\ \tau = 0.01` on some games), SPO with 8 samples a step.
The measured quantity is the last iterate's duality gap of the KL game,
:func:`prefsim.games.core.gap`; the figure shows its median over games and
the 10-90 % band.

Precision: everything runs in float32. The gap is computed as
:math:`2\tau\,\mathrm{KL}(\pi\|\mathrm{BR}(\pi))` with the cancellation-free
KL of :func:`prefsim.policies.kl`, which resolves gaps down to about
1e-12 to 1e-14 in float32 (the floor visible in the figure), so the claim
"gap <= 1e-8" is measured, not lost to round-off.

Third panel: rock-paper-scissors (strength 1) at :math:`\tau = 0`, started
at :math:`\mu = \mathrm{softmax}(1, 0, -1)`, :math:`\eta = 0.1`: the
exploitability of the last iterate (solid) and of the running average
(dashed). MWU's last iterate spirals away from the uniform minimax winner
(its KL divergence from it grows at every step) while its average converges
within Hedge's regret bound :math:`\ln(1/\min\mu)/(\eta(T+1)) + \eta/8`.

Claims: extragradient's and OMD's last iterates reach gap <= 1e-8 (median
over games, and on at least 90 % of the games) at both :math:`\tau`;
Nash-MD with a constant step stalls far above that; on rock-paper-scissors
MWU's last iterate stays exploitable (>= 0.05 over the second half of the
run) while its average's exploitability is within Hedge's bound and below
0.01, and optimistic MWU's last iterate converges.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import prefsim
from prefsim import plotting
from prefsim.games import core
from prefsim.games import solvers
from prefsim.models import general
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("Nash dynamics on EGPO's random games: EG and OMD reach gap "
               "1e-8, Nash-MD stalls; MWU's last iterate cycles on RPS")

K = 10
TAUS = (0.1, 0.01)
ETA = {0.1: 1.0, 0.01: 0.3}
N_SAMPLES = 8
SOLVERS = ("extragradient", "omd", "optimistic_mwu", "nash_md", "mwu", "spo",
           "fictitious_play")
LABELS = {"extragradient": "extragradient (EGPO)",
          "omd": "OMD (online IPO)", "optimistic_mwu": "optimistic MWU",
          "nash_md": "Nash-MD", "mwu": "MWU (ignores τ)",
          "spo": f"SPO ({N_SAMPLES} samples)",
          "fictitious_play": "fictitious play"}
# Colours from plotting's palette; the three linear solvers overlap at
# tau = 0.1, so they also differ in line style.
COLORS = {"extragradient": plotting.color("extragradient"),
          "omd": plotting.color("mirror_descent"),
          "optimistic_mwu": plotting.CYCLE[7],
          "nash_md": plotting.color("nash_md"), "mwu": plotting.color("mwu"),
          "spo": plotting.color("self_play"),
          "fictitious_play": plotting.CYCLE[6]}
STYLES = {"extragradient": {"lw": 2.6}, "omd": {"ls": "--"},
          "optimistic_mwu": {"ls": "-."}}
RPS_ETA = 0.1
RPS_STEPS = 20000
RPS_LOGITS = (1.0, 0.0, -1.0)
TARGET = 1e-8
QUANTILES = (0.1, 0.5, 0.9)


def _algorithm(name: str, eta: float) -> prefsim.Algorithm:
  if name == "fictitious_play":
    return solvers.fictitious_play()
  if name == "spo":
    return solvers.spo(eta, N_SAMPLES)
  return getattr(solvers, name)(eta)


def _gaps_only(alg: prefsim.Algorithm) -> prefsim.Algorithm:
  """The same solver, recording only the gaps (the policies would need
  ``B * T * K`` floats per run)."""

  def step(key, state, game):
    state, info = alg.step(key, state, game)
    return state, {"gap": info["gap"], "average_gap": info["average_gap"]}

  return prefsim.Algorithm(alg.init, step)


def egpo_games(key: jax.Array, n_games: int, tau: float) -> core.Game:
  """``n_games`` of EGPO's random games as one batched :class:`Game`."""

  def one(key):
    k_p, k_ref = jax.random.split(key)
    low = jnp.tril(jax.random.uniform(k_p, (K, K)), -1)
    p = low + jnp.triu(1.0 - low.T, 1) + 0.5 * jnp.eye(K)
    return p, jax.nn.softmax(jax.random.normal(k_ref, (K,)))

  p, ref = jax.vmap(one)(jax.random.split(key, n_games))
  return core.make_game(p, ref, jnp.full((n_games,), tau))


def _kl_runs(games, tau, n_steps, ctx):
  """Per solver: gap quantiles over games per step and the final gaps."""
  out = {}
  for name in SOLVERS:
    ctx.log(f"tau = {tau}: {name}, {games.P.shape[0]} games x {n_steps} "
            "steps")
    _, info = prefsim.sweep(jax.random.key(1),
                            _gaps_only(_algorithm(name, ETA[tau])), games,
                            n_steps, 1, problem_axis=0)
    gap = np.asarray(info["gap"][0], np.float64)           # [B, T]
    out[name] = {"quantiles": np.quantile(gap, QUANTILES, axis=0),
                 "final": gap[:, -1],
                 "nonfinite_share": float(np.mean(~np.isfinite(gap)))}
  return out


def _rps_runs():
  """Last-iterate and average exploitability of every solver on RPS."""
  z = np.asarray(RPS_LOGITS)
  game = core.make_game(general.rock_paper_scissors(1.0),
                        np.exp(z) / np.exp(z).sum(), 0.0)
  out = {}
  for name in SOLVERS:
    _, info = prefsim.run(jax.random.key(2), _algorithm(name, RPS_ETA), game,
                          RPS_STEPS)
    out[name] = {"last": np.asarray(info["gap"], np.float64),
                 "average": np.asarray(info["average_gap"], np.float64)}
  out["ref"] = np.asarray(game.ref, np.float64)
  return out


def _figure(kl, rps, steps, n_games):
  fig, axes = plotting.figure(1, 3, width=15.5, height=4.8)
  for ax, tau in zip(axes[:2], TAUS):
    t = np.arange(1, steps[tau] + 1)
    for name in SOLVERS:
      lo, med, hi = kl[tau][name]["quantiles"]
      ax.plot(t, med, color=COLORS[name], label=LABELS[name],
              **STYLES.get(name, {}))
      ax.fill_between(t, lo, hi, color=COLORS[name], alpha=0.15, linewidth=0)
    ax.axhline(TARGET, ls=":", color=plotting.color("bound"), lw=1,
               label="1e-8")
    ax.set(yscale="log", ylim=(1e-15, 2.0), xlabel="iteration t",
           ylabel=r"duality gap of $\pi_t$",
           title=rf"$\tau$ = {tau}, $\eta$ = {ETA[tau]:g}: median over "
                 f"{n_games} games (band 10-90 %)")
  axes[0].legend(fontsize=8, loc="center right", framealpha=0.9,
                 frameon=True)
  ax = axes[2]
  t = np.arange(1, RPS_STEPS + 1)
  for name, kind, style in (
      ("mwu", "last", {"lw": 0.8}), ("mwu", "average", {"ls": "--"}),
      ("optimistic_mwu", "last", {"lw": 1.2}),
      ("extragradient", "last", {"lw": 1.2}),
      ("fictitious_play", "average", {"ls": "--"}),
      ("spo", "average", {"ls": "--", "lw": 1.2})):
    label = LABELS[name].replace(" (ignores τ)", "")
    ax.plot(t, rps[name][kind], color=COLORS[name], label=f"{label}: {kind}",
            **style)
  ax.plot(t, _hedge_bound(rps["ref"], t), ":", color=plotting.color("bound"),
          label="Hedge bound on MWU's average")
  ax.set(xscale="log", yscale="log", ylim=(1e-6, 1.0), xlabel="iteration t",
         ylabel="exploitability",
         title=r"rock-paper-scissors, $\tau$ = 0, $\eta$ = "
               f"{RPS_ETA:g}: last vs average")
  ax.legend(fontsize=7.5, loc="lower left", framealpha=0.9, frameon=True)
  fig.suptitle("Nash dynamics on EGPO's random preference games (K = 10, "
               "P lower triangle ~ U(0,1), reference logits ~ N(0,1))")
  return fig


def _hedge_bound(ref, t):
  """Hedge's bound on the exploitability of MWU's average after t steps."""
  return (np.log(1 / ref.min()) / (RPS_ETA * (t + 1.0)) + RPS_ETA / 8)


def run(ctx: Context) -> Report:
  n_games = 64 if ctx.quick else 512
  steps = {0.1: 3000, 0.01: 10000}
  config = {"K": K, "taus": TAUS, "eta": ETA, "n_games": n_games,
            "steps": steps, "n_samples_spo": N_SAMPLES, "solvers": SOLVERS,
            "rps": {"strength": 1.0, "ref_logits": RPS_LOGITS,
                    "eta": RPS_ETA, "steps": RPS_STEPS},
            "games": "EGPO: lower triangle U(0,1), ref logits N(0,1)",
            "games_key": 0, "sweep_key": 1, "rps_key": 2,
            "dtype": str(jnp.zeros(()).dtype)}
  kl = {}
  for tau in TAUS:
    games = egpo_games(jax.random.fold_in(jax.random.key(0), int(tau * 1e4)),
                       n_games, tau)
    kl[tau] = ctx.memo(f"kl_tau{tau:g}",
                       lambda games=games, tau=tau: _kl_runs(
                           games, tau, steps[tau], ctx), tau=tau, **config)
  ctx.log("rock-paper-scissors")
  rps = ctx.memo("rps", _rps_runs, **config)

  claims: list[Claim] = []
  for tau in TAUS:
    for name in ("extragradient", "omd"):
      final = kl[tau][name]["final"]
      claims.append(check(
          f"tau={tau:g}: median over games of {name}'s last-iterate gap "
          f"after {steps[tau]} steps", np.median(final), hi=TARGET))
      claims.append(check(
          f"tau={tau:g}: share of games where {name}'s last-iterate gap "
          f"<= 1e-8 after {steps[tau]} steps", np.mean(final <= TARGET),
          lo=0.9))
  claims.append(check(
      f"tau=0.1: median gap of Nash-MD (constant eta={ETA[0.1]:g}) after "
      f"{steps[0.1]} steps: stalls far above 1e-8",
      np.median(kl[0.1]["nash_md"]["final"]), lo=1e-6))
  half = RPS_STEPS // 2
  mwu_last, mwu_avg = rps["mwu"]["last"], rps["mwu"]["average"]
  claims.append(check(
      f"RPS: min exploitability of MWU's last iterate over steps "
      f"{half}..{RPS_STEPS} (does not converge)", mwu_last[half:].min(),
      lo=0.05))
  claims.append(check(
      f"RPS: MWU's average exploitability after {RPS_STEPS} steps minus "
      "Hedge's bound ln(1/min mu)/(eta(T+1)) + eta/8",
      mwu_avg[-1] - _hedge_bound(rps["ref"], RPS_STEPS), hi=0.0))
  claims.append(check(
      f"RPS: MWU's average exploitability after {RPS_STEPS} steps",
      mwu_avg[-1], hi=0.01))
  claims.append(check(
      f"RPS: optimistic MWU's last-iterate exploitability after {RPS_STEPS} "
      "steps (converges)", rps["optimistic_mwu"]["last"][-1], hi=1e-3))

  fig = _figure(kl, rps, steps, n_games)
  series = {"quantiles": QUANTILES}
  for tau in TAUS:
    for name in SOLVERS:
      r = kl[tau][name]
      # Every 10th step of the quantile curves keeps the JSON small.
      series[f"tau{tau:g}_{name}_gap_quantiles_every10"] = r["quantiles"][
          :, ::10]
      series[f"tau{tau:g}_{name}_final_gap_median"] = float(
          np.median(r["final"]))
      series[f"tau{tau:g}_{name}_nonfinite_share"] = r["nonfinite_share"]
  for name in SOLVERS:
    series[f"rps_{name}_last_every10"] = rps[name]["last"][::10]
    series[f"rps_{name}_average_every10"] = rps[name]["average"][::10]
  return Report(figure=fig, series=series, claims=claims, config=config,
                seeds=[0, 1, 2])
