"""Tests for prefsim.games.solvers: the iterative preference-game solvers.

Reference values: each update re-implemented by hand in NumPy float64, in
probability space (the library works in log space). Theorems, checked on
drawn games: linear last-iterate convergence of extragradient, OMD and
optimistic MWU on the KL game; Nash-MD's constant-step stall; MWU's
diverging last iterate and its average's regret bound on rock-paper-scissors;
fictitious play's converging average; SPO's average approaching the
Condorcet winner. Transformations: jit, vmap, sweep over a batch of games.

Drawn games follow EGPO's simulations (Zhou, Fazel, Du 2025): K = 10, the
strict lower triangle of P ~ U(0, 1), reference logits ~ N(0, 1).
"""

from __future__ import annotations

import functools

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import prefsim
from prefsim import testing as pt
from prefsim.games import core
from prefsim.games import solvers
from prefsim.models import general
from prefsim.run import seed_keys
from prefsim.testing import strategies as pst

K = 10
TAUS = st.floats(0.1, 0.5)          # KL strengths of the drawn games
ETA = 0.5                           # eta * tau <= 1/4
LINEAR = {"omd": solvers.omd(ETA), "extragradient": solvers.extragradient(ETA),
          "optimistic_mwu": solvers.optimistic_mwu(ETA)}
ALL = {"mwu": solvers.mwu(ETA), **LINEAR, "nash_md": solvers.nash_md(ETA),
       "spo": solvers.spo(ETA, 4), "fictitious_play": solvers.fictitious_play()}
INFO_KEYS = {"policy", "average_policy", "gap", "average_gap"}
_GAP = jax.jit(jax.vmap(core.gap, in_axes=(None, 0)))  # gap of [T, K] policies


def _egpo_game(seed: int, tau: float, k: int = K) -> core.Game:
  """EGPO's synthetic game: lower triangle of P ~ U(0, 1), ref logits ~ N(0, 1)."""
  rng = np.random.default_rng(seed)
  low = np.tril(rng.uniform(size=(k, k)), -1)
  p = low + np.triu(1.0 - low.T, 1) + 0.5 * np.eye(k)
  z = rng.normal(size=k)
  return core.make_game(p, np.exp(z) / np.exp(z).sum(), tau)


def _rps_game(strength: float, logits) -> core.Game:
  """Rock-paper-scissors at tau = 0, started away from the uniform winner."""
  z = np.asarray(logits, np.float64) + np.array([1.0, 0.0, -1.0])
  return core.make_game(general.rock_paper_scissors(strength),
                        np.exp(z) / np.exp(z).sum(), 0.0)


def _run(alg, game, n_steps, seed=0):
  return prefsim.run(jax.random.key(seed), alg, game, n_steps)


def _hitting_time(gaps: np.ndarray, level: float) -> int:
  """First step after which the gap stays <= level (len(gaps) if never)."""
  above = np.nonzero(gaps > level)[0]
  return 0 if above.size == 0 else int(above[-1]) + 1


def _float_tol():
  return 1e-5 if jnp.zeros(()).dtype == jnp.float32 else 1e-12


# ---------------------------------------------------------------- reference


def _softmax(x):
  x = x - x.max()
  return np.exp(x) / np.exp(x).sum()


def _by_hand(name, p, ref, tau, eta, n_steps, sampled=None):
  """The iterates pi_1..pi_T of each update, in probability space (float64).

  ``sampled[t]`` is the empirical law of SPO's draws at step t.
  """
  p, ref = np.asarray(p, np.float64), np.asarray(ref, np.float64)
  pi, prev, avg = ref.copy(), p @ ref, ref.copy()
  out = []
  mirror = lambda pi, g: _normalise(pi**(1 - eta * tau) * ref**(eta * tau)
                                    * np.exp(eta * g))
  for t in range(n_steps):
    if name == "mwu":
      new = _normalise(pi * np.exp(eta * (p @ pi)))
    elif name == "omd":
      new = mirror(pi, p @ pi)
    elif name == "nash_md":
      mix = _normalise(pi**(1 - eta * tau) * ref**(eta * tau))
      new = _normalise(mix * np.exp(eta * (p @ mix)))
    elif name == "extragradient":
      half = mirror(pi, p @ pi)
      new = mirror(pi, p @ half)
    elif name == "optimistic_mwu":
      new = mirror(pi, 2 * (p @ pi) - prev)
      prev = p @ pi
    elif name == "spo":
      new = mirror(pi, p @ sampled[t])
    elif name == "fictitious_play":
      v = p @ avg
      new = (_softmax(np.log(ref) + v / tau) if tau > 0
             else np.eye(len(ref))[np.argmax(v)])
    pi = new
    avg = avg + (pi - avg) / (t + 2)
    out.append(pi)
  return np.array(out)


def _normalise(x):
  return x / x.sum()


@pytest.mark.parametrize("tau", [0.0, 0.3])
@pytest.mark.parametrize("name", sorted(ALL))
def test_iterates_match_the_update_by_hand(name, tau):
  game = _egpo_game(7, tau, k=4)
  args = {"spo": (0.7, 3), "fictitious_play": ()}.get(name, (0.7,))
  alg = getattr(solvers, name)(*args)
  n_steps = 5
  _, info = _run(alg, game, n_steps, seed=3)
  sampled = None
  if name == "spo":  # The draws, from the documented key schedule.
    _, steps_key = jax.random.split(jax.random.key(3))
    pis = np.concatenate([np.asarray(game.ref)[None],
                          np.asarray(info["policy"])])
    sampled = [np.bincount(np.asarray(jax.random.categorical(
        k, jnp.log(jnp.asarray(pis[t])), shape=(3,))), minlength=4) / 3
               for t, k in enumerate(jax.random.split(steps_key, n_steps))]
  expected = _by_hand(name, game.P, game.ref, tau, 0.7, n_steps, sampled)
  np.testing.assert_allclose(info["policy"], expected, rtol=20 * _float_tol(),
                             atol=_float_tol())


@hypothesis.settings(max_examples=4)
@hypothesis.given(seed=pst.seeds(), tau=st.sampled_from([0.0, 0.05, 0.3]))
def test_info_is_the_documented_dict_and_iterates_stay_distributions(seed, tau):
  game = _egpo_game(seed, tau)
  for name, alg in ALL.items():
    final, info = _run(alg, game, 40, seed)
    assert set(info) == INFO_KEYS, name
    pi, avg = np.asarray(info["policy"]), np.asarray(info["average_policy"])
    for x in (pi, avg):
      assert np.all(x >= 0), name
      np.testing.assert_allclose(x.sum(-1), 1.0, atol=10 * _float_tol())
    # The average is the uniform average of pi_0 = ref, pi_1, ..., pi_{t+1}.
    counts = np.arange(2, 42)[:, None]
    np.testing.assert_allclose(
        avg, (np.asarray(game.ref) + np.cumsum(pi, 0)) / counts,
        atol=10 * _float_tol())
    # Each gap is core.gap of the reported policy, and >= 0.
    for g, x in (("gap", pi), ("average_gap", avg)):
      assert np.all(np.asarray(info[g]) >= 0), (name, g)
      np.testing.assert_allclose(info[g], _GAP(game, x), rtol=1e-4,
                                 atol=_float_tol())
    np.testing.assert_allclose(final.policy, pi[-1], rtol=10 * _float_tol())
    np.testing.assert_allclose(final.average_policy, avg[-1],
                               atol=_float_tol())


# ------------------------------------------------------------------ theorems


@hypothesis.given(seed=pst.seeds(), tau=TAUS)
def test_omd_and_extragradient_last_iterate_converge_linearly(seed, tau):
  """On the KL game (tau > 0) the last iterate of extragradient (EGPO) and
  of online mirror descent converges *linearly* to the regularised Nash
  equilibrium: gap(pi_t) <= C rho^t with rho < 1 (Zhou, Fazel, Du 2025,
  for small enough steps). Optimistic MWU, checked alongside, behaves the
  same here (measured, not a cited theorem for this single-sequence form).

  Checked with eta = 0.5, tau in [0.1, 0.5]: the gap falls below 1e-6
  within 300 steps (float32 resolves gaps to ~1e-12), and it does so
  geometrically: the steps taken from 1e-4 to 1e-6 are at most twice those
  taken from 1e-2 to 1e-4 (a 1/t rate would need 100 times as many, 1/t^2
  ten times).
  """
  game = _egpo_game(seed, tau)
  for name, alg in LINEAR.items():
    _, info = _run(alg, game, 300)
    gaps = np.asarray(info["gap"], np.float64)
    assert np.all(gaps >= 0), name
    h2, h4, h6 = (_hitting_time(gaps, 10.0**-k) for k in (2, 4, 6))
    assert h6 < len(gaps), (name, gaps[-1])
    assert h6 - h4 <= 2 * max(h4 - h2, 1), (name, h2, h4, h6)


@hypothesis.given(seed=pst.seeds(), tau=TAUS)
def test_nash_md_stalls_at_a_gap_that_shrinks_with_the_step(seed, tau):
  """Nash-MD with a constant step eta converges (linearly) to a fixed point
  that is not the regularised equilibrium: the fixed point solves
  pi = BR(pi^mu) with pi^mu ∝ pi^(1-eta tau) mu^(eta tau), a bias of O(eta)
  from pi*_tau. So its gap stalls at a positive level that shrinks with the
  step; since the gap is quadratic near pi*_tau, by about 4x when eta halves
  (checked: by at least 2x and at most 8x). The paper's convergence to
  pi*_tau needs a decreasing step (Munos et al. 2023).
  """
  game = _egpo_game(seed, tau)
  stall = {}
  for eta in (1.0, 0.5):
    _, info = _run(_NASH_MD[eta], game, 1500)
    gaps = np.asarray(info["gap"], np.float64)
    stall[eta] = gaps[-1]
    # Stalled: a level that no longer moves, well above float32's floor.
    assert abs(gaps[-1] - gaps[-200]) <= 1e-3 * gaps[-1], (eta, gaps[-200:])
    assert gaps[-1] > 1e-8, eta
  assert 2.0 <= stall[1.0] / stall[0.5] <= 8.0, stall


_NASH_MD = {eta: solvers.nash_md(eta) for eta in (1.0, 0.5)}


_GRID = 600


def _min_exploitability_outside_kl_ball(strength: float, radius: float
                                        ) -> float:
  """min expl(pi) over the simplex grid with KL(uniform || pi) >= radius."""
  n = _GRID
  i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
  keep = i + j <= n
  pi = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], -1) / n
  with np.errstate(divide="ignore"):
    kl_u = np.sum(np.log(1 / 3) - np.log(pi), -1) / 3
  p = np.asarray(general.rock_paper_scissors(strength), np.float64)
  expl = np.max(pi @ p.T, -1) - 0.5
  return float(expl[kl_u >= radius].min())


@hypothesis.settings(max_examples=6)
@hypothesis.given(strength=st.floats(0.6, 1.0), logits=pst.vectors(3, -0.5,
                                                                   0.5))
def test_mwu_last_iterate_cycles_on_rps(strength, logits):
  """MWU's last iterate does not converge on rock-paper-scissors (tau = 0).

  With v_t = (P - 1/2) pi_t and the uniform minimax winner u (so
  (P - 1/2) u = 0 and u^T v_t = 0),
  KL(u || pi_{t+1}) - KL(u || pi_t) = log E_{pi_t}[e^{eta v_t}] >= eta pi_t^T v_t = 0
  (Jensen), strictly unless pi_t = u: the iterates move *away* from the
  equilibrium (Bailey and Piliouras 2018). Hence the exploitability of every
  iterate is at least the minimum of the exploitability outside the KL ball
  {KL(u || pi) < KL(u || pi_0)}, which is > 0 (computed here on a grid).
  """
  game = _rps_game(strength, logits)
  _, info = _run(_MWU_RPS, game, 3000)
  pi = np.asarray(info["policy"], np.float64)
  kl = np.sum(np.log(1 / 3) - np.log(pi), -1) / 3
  kl0 = float(np.sum(np.log(1 / 3) - np.log(np.asarray(game.ref))) / 3)
  assert np.all(np.diff(np.concatenate([[kl0], kl])) >= -1e-5), kl
  # The grid's spacing 1/n moves expl by at most 1/n (|P - 1/2| <= 1/2).
  floor = _min_exploitability_outside_kl_ball(strength, kl0) - 1 / _GRID
  assert floor > 0.0
  expl = np.asarray(info["gap"], np.float64)
  assert expl.min() >= floor, (expl.min(), floor)


_MWU_RPS = solvers.mwu(0.1)
_HORIZONS = (100, 1000, 10000)
_MWU_TUNED = {t: solvers.mwu(float(np.sqrt(8 * np.log(3) / (t + 1))))
              for t in _HORIZONS}


@hypothesis.settings(max_examples=6)
@hypothesis.given(strength=st.floats(0.6, 1.0), logits=pst.vectors(3, -0.5,
                                                                   0.5))
def test_mwu_average_meets_hedge_regret_bound_on_rps(strength, logits):
  """MWU's average converges to the minimax winner at O(1/sqrt(T)).

  In self-play pi_t^T P pi_t = 1/2, so the exploitability of the average of
  pi_0..pi_T is the learner's average regret over those T + 1 rounds, and
  Hedge's bound (payoffs of range 1, start mu) gives
  expl(avg) <= ln(1 / min_j mu_j) / (eta (T + 1)) + eta / 8
  (Freund and Schapire 1999). With eta_T = sqrt(8 ln 3 / (T + 1)) the bound
  is C / sqrt(T + 1) with C = (ln(1/min mu) / ln 3 + 1) sqrt(ln 3 / 8)
  (C <= 1.19 for the drawn starts); it is checked at T = 100, 1000, 10000.
  """
  game = _rps_game(strength, logits)
  log_inv = float(-np.log(np.min(np.asarray(game.ref, np.float64))))
  for t in _HORIZONS:
    eta = float(np.sqrt(8 * np.log(3) / (t + 1)))
    _, info = _run(_MWU_TUNED[t], game, t)
    expl = float(info["average_gap"][-1])
    bound = log_inv / (eta * (t + 1)) + eta / 8
    assert expl <= bound + _float_tol(), (t, expl, bound)


_FP = solvers.fictitious_play()


@hypothesis.settings(max_examples=6)
@hypothesis.given(strength=st.floats(0.6, 1.0), logits=pst.vectors(3, -0.5,
                                                                   0.5))
def test_fictitious_play_average_converges_on_rps(strength, logits):
  """Fictitious play's average converges to the minimax winner in zero-sum
  games (Robinson 1951), at rate O(T^(-1/(m+n-2))) = O(T^(-1/4)) for a 3x3
  game (Shapiro 1958). Checked on rock-paper-scissors: every iterate is a
  pure best response, and the envelope max_{s >= t} expl(avg_s) has a
  log-log slope <= -1/4 over t = 100..4000 and ends below 0.02·(2s - 1).
  """
  game = _rps_game(strength, logits)
  _, info = _run(_FP, game, 4000)
  pi = np.asarray(info["policy"])
  assert np.all(np.sort(pi, -1)[:, :2] == 0) and np.all(pi.max(-1) == 1)
  expl = np.asarray(info["average_gap"], np.float64)
  envelope = np.maximum.accumulate(expl[::-1])[::-1]
  ts = np.unique(np.geomspace(100, 4000, 12).astype(int))
  slope = np.polyfit(np.log(ts), np.log(envelope[ts - 1]), 1)[0]
  assert slope <= -0.25, slope
  assert envelope[-1] <= 0.02 * (2 * strength - 1), envelope[-1]


_SPO = solvers.spo(0.1, 4)


@hypothesis.settings(max_examples=4)
@hypothesis.given(u=pst.utilities(5, 2.0), logits=pst.vectors(5, -1.0, 1.0))
def test_spo_average_approaches_the_condorcet_winner(u, logits):
  """SPO's average is an approximate minimax winner (Swamy et al. 2024).

  The exploitability of the average of pi_0..pi_T equals the learner's
  average regret against the true payoffs P pi_t. Hedge run on unbiased
  estimates of them (win rates against n samples) has expected regret at most
  ln(1/min mu)/eta + eta (T+1)/8 + sqrt(2 (T+1) ln K), the last term bounding
  the expected maximum of the K estimation-error martingales (increments in
  [-1, 1]). On a Bradley-Terry game with a Condorcet winner (its unique
  minimax winner), checked for 8 fixed seeds: each seed's exploitability is
  within that bound, and the average puts most of its mass (> 1/2) on the
  Condorcet winner.
  """
  hypothesis.assume(np.sort(u)[-1] - np.sort(u)[-2] > 0.1)
  game = core.make_game(general.from_utilities(u),
                        np.exp(logits) / np.exp(logits).sum(), 0.0)
  n_steps, eta = 2000, 0.1
  _, info = prefsim.sweep(jax.random.key(0), _SPO, game, n_steps, 8)
  expl = np.asarray(info["average_gap"][:, -1], np.float64)
  log_inv = float(-np.log(np.min(np.asarray(game.ref, np.float64))))
  bound = (log_inv / (eta * (n_steps + 1)) + eta / 8
           + np.sqrt(2 * np.log(5) / (n_steps + 1)))
  assert np.all(expl <= bound), (expl, bound)
  winner = int(general.condorcet_winner(game.P))
  assert winner == int(np.argmax(u))
  assert np.all(np.asarray(info["average_policy"][:, -1, winner]) > 0.5)


@hypothesis.settings(max_examples=4)
@hypothesis.given(strength=st.floats(0.8, 1.0), logits=pst.vectors(3, -0.5,
                                                                   0.5))
def test_optimistic_mwu_last_iterate_converges(strength, logits):
  """Where MWU's last iterate cycles, optimistic MWU's converges: on
  rock-paper-scissors at tau = 0 (a unique, interior minimax winner) its
  exploitability after 3000 steps with eta = 0.5 is below 1e-3 (Daskalakis
  and Panageas 2019, for small enough steps), while MWU's stays above the
  floor of test_mwu_last_iterate_cycles_on_rps."""
  game = _rps_game(strength, logits)
  _, info = _run(LINEAR["optimistic_mwu"], game, 3000)
  assert float(info["gap"][-1]) <= 1e-3
  _, info_mwu = _run(ALL["mwu"], game, 3000)
  assert float(info_mwu["gap"][-1]) > 1e-2


# ---------------------------------------------------------- transformations


def _batch(seeds, taus):
  games = [_egpo_game(s, t) for s, t in zip(seeds, taus)]
  return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *games), games


def test_sweep_over_games_equals_per_game_runs():
  """``sweep(..., problem_axis=0)`` over a batch of games (vmap) equals one
  ``run`` per seed and game (a loop), the same key for every game. SPO, the
  stochastic solver, so that the key schedule is checked too."""
  alg = ALL["spo"]
  batch, games = _batch([1, 2, 3], [0.0, 0.05, 0.5])
  _, infos = prefsim.sweep(jax.random.key(5), alg, batch, 30, 2,
                           problem_axis=0)
  for s, key in enumerate(seed_keys(jax.random.key(5), 2)):
    for b, game in enumerate(games):
      _, info = prefsim.run(key, alg, game, 30)
      pt.assert_trees_allclose(
          jax.tree_util.tree_map(lambda x: x[s, b], infos), info,
          rtol=1e-4, atol=_float_tol())


def test_step_jit_matches_eager():
  alg, game, key = ALL["extragradient"], _egpo_game(11, 0.1), jax.random.key(2)

  def one_step(game):
    return alg.step(jax.random.fold_in(key, 1), alg.init(key, game), game)

  pt.assert_jit_matches_eager(one_step, game, rtol=1e-5, atol=_float_tol())


@pytest.mark.parametrize("name", ["spo", "fictitious_play", "optimistic_mwu"])
def test_new_game_values_do_not_retrace(name):
  alg = ALL[name]

  def scan(key, game):
    state = alg.init(key, game)
    return jax.lax.scan(lambda s, k: alg.step(k, s, game), state,
                        jax.random.split(key, 5))

  calls = [(jax.random.key(s), _egpo_game(s, tau))
           for s, tau in ((1, 0.0), (2, 0.2), (3, 0.4))]
  pt.assert_traced_once(scan, calls)


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize("factory", [solvers.mwu, solvers.omd,
                                     solvers.nash_md, solvers.extragradient,
                                     solvers.optimistic_mwu,
                                     functools.partial(solvers.spo,
                                                       n_samples=2)])
@pytest.mark.parametrize("eta", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_eta_raises(factory, eta):
  with pytest.raises(ValueError, match="eta"):
    factory(eta)


def test_bad_arguments_raise():
  with pytest.raises(TypeError, match="eta"):
    solvers.mwu("0.1")
  with pytest.raises(TypeError, match="eta"):
    solvers.omd(jnp.array(0.1))
  with pytest.raises(ValueError, match="n_samples"):
    solvers.spo(0.1, 0)
  with pytest.raises(TypeError, match="n_samples"):
    solvers.spo(0.1, 2.5)
  game = _egpo_game(0, 0.1)
  alg = solvers.omd(0.1)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="P must be"):
    alg.init(key, core.Game(game.P[:, :3], game.ref, game.tau))
  with pytest.raises(ValueError, match="ref must be"):
    alg.init(key, core.Game(game.P, game.ref[:3], game.tau))
  with pytest.raises(ValueError, match="one game"):
    alg.init(key, core.Game(game.P[None], game.ref[None], game.tau[None]))
  with pytest.raises(ValueError, match="preference matrix"):  # eagerly
    alg.init(key, core.Game(game.P.at[0, 1].set(0.9), game.ref, game.tau))
  with pytest.raises(ValueError, match="tau"):
    alg.init(key, core.Game(game.P, game.ref, jnp.asarray(-0.1)))
  with pytest.raises(TypeError, match="Game"):
    alg.init(key, {"P": game.P})
  # Inside jit only the static checks run: shapes still raise at trace time.
  with pytest.raises(ValueError, match="ref must be"):
    prefsim.run(key, alg, core.Game(game.P, game.ref[:3], game.tau), 3)
