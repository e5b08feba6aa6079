"""Tests of prefsim.bandits.classic: RUCB, Double Thompson Sampling, IF2.

One learning run per algorithm (module fixture: 16 seeds x 2,000 rounds on a
10-arm Bradley-Terry problem with a Condorcet winner) feeds the statistical
and structural checks; the selection rules are checked on drawn win counts
against a NumPy transcription of the papers' rules; D-TS's sampling law is
compared with a NumPy D-TS that draws the Beta variables themselves.
"""

from __future__ import annotations

import math

import hypothesis
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import prefsim
from prefsim.bandits import classic
from prefsim.bandits import env
from prefsim.testing import strategies as pst

ALPHA = 0.51
K_LEARN, T_LEARN, S_LEARN = 10, 2000, 16
FEW = hypothesis.settings(max_examples=5)
K_RULES, N_KEYS = 5, 8000   # the rule and law tests: one compile per algorithm
# Two independent 8,000-draw samples of DTS_LAW_W's pair law differ in total
# variation by 0.023 +- 0.005 (12 NumPy samples): 0.05 is 5 sd above.
TV_MAX = 0.05

FACTORIES = {
    "rucb": lambda: classic.rucb(ALPHA),
    "double_thompson": lambda: classic.double_thompson(ALPHA),
    "interleaved_filter": lambda: classic.interleaved_filter(T_LEARN),
}


def _problem(utilities) -> env.DuelingProblem:
  u = np.asarray(utilities)
  return env.from_embeddings(np.eye(u.shape[0]), u)


def _np_bounds(W: np.ndarray, t: float, alpha: float = ALPHA):
  """The papers' u and l in float64 (unplayed pairs: +inf and -inf)."""
  W = np.asarray(W, np.float64)
  N = W + W.T
  with np.errstate(divide="ignore", invalid="ignore"):
    mean = W / N
    radius = np.sqrt(alpha * np.log(t) / N)
  U = np.where(N > 0, mean + radius, np.inf)
  L = np.where(N > 0, mean - radius, -np.inf)
  np.fill_diagonal(U, 0.5)
  np.fill_diagonal(L, 0.5)
  return U, L


@pytest.fixture(scope="module")
def learning_runs():
  """Each algorithm on u = linspace(0, 3, 10) (arm 9 the Condorcet winner)."""
  problem = _problem(np.linspace(0.0, 3.0, K_LEARN))
  runs = {}
  for name, make in FACTORIES.items():
    alg = make()
    final, infos = prefsim.sweep(jax.random.key(7), alg, problem, T_LEARN,
                                 S_LEARN)
    runs[name] = (alg, final, jax.tree_util.tree_map(np.asarray, infos))
  return problem, runs


@pytest.mark.parametrize("name", list(FACTORIES))
def test_regret_falls_with_condorcet_winner(learning_runs, name):
  """Each algorithm learns (RUCB: O(K log T) regret, Zoghi et al. 2014;
  D-TS: O(K log T + K^2 log log T), Wu & Liu 2016; IF2: O(K log T / eps),
  Yue et al. 2012): with a Condorcet winner, over 16 seeds, the mean weak
  regret of rounds 1,501-2,000 is below a quarter of rounds 1-200's and
  below 15 % of a uniformly random pair's, and the reported arm's regret is
  below a quarter of a random arm's."""
  problem, runs = learning_runs
  _, _, infos = runs[name]
  u = np.asarray(problem.utilities, np.float64)
  random_pair_weak = np.mean(u.max() - np.maximum(u[:, None], u[None, :]))
  random_arm = u.max() - u.mean()
  weak = infos["weak_regret"]
  early, late = weak[:, :200].mean(), weak[:, -500:].mean()
  assert late < 0.25 * early, (early, late)
  assert late < 0.15 * random_pair_weak, (late, random_pair_weak)
  reported = infos["reported_regret"][:, -500:].mean()
  assert reported < 0.25 * random_arm, (reported, random_arm)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_regrets_nonnegative_and_pairs_valid(learning_runs, name):
  """Regrets are >= 0 and ordered weak <= average <= strong; pairs are arms;
  each regret is the definition's u* - ... of the logged pair."""
  problem, runs = learning_runs
  _, _, infos = runs[name]
  u = np.asarray(problem.utilities)
  pair = infos["pair"]
  assert pair.dtype == np.int32 and pair.shape == (S_LEARN, T_LEARN, 2)
  assert pair.min() >= 0 and pair.max() < K_LEARN
  weak, avg, strong = (infos[k] for k in ("weak_regret", "average_regret",
                                          "strong_regret"))
  assert weak.min() >= 0 and infos["reported_regret"].min() >= 0
  assert np.all(weak <= avg) and np.all(avg <= strong)
  ua, ub = u[pair[..., 0]], u[pair[..., 1]]
  np.testing.assert_allclose(avg, u.max() - (ua + ub) / 2, atol=1e-6)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_sweep_equals_eager_steps(learning_runs, name):
  """jit + vmap = eager: seed i of the sweep equals a Python loop of the
  un-jitted ``step`` with that seed's keys (fold_in, then run's schedule)."""
  problem, runs = learning_runs
  alg, final, infos = runs[name]
  seed, n = 3, 4
  key = jax.random.fold_in(jax.random.key(7), seed)
  init_key, steps_key = jax.random.split(key)
  step_keys = jax.random.split(steps_key, T_LEARN)
  state = alg.init(init_key, problem)
  for t in range(n):
    state, info = alg.step(step_keys[t], state, problem)
    np.testing.assert_array_equal(info["pair"], infos["pair"][seed, t])
    np.testing.assert_allclose(info["reported_regret"],
                               infos["reported_regret"][seed, t])
  assert int(state.n_rounds) == n
  assert int(final.n_rounds[seed]) == T_LEARN
  assert float(final.wins[seed].sum()) <= T_LEARN   # self-duels not counted


def test_dts_above_half_matches_scipy(learning_runs):
  """D-TS keeps q_ij = Pr(theta_ij > 1/2), theta_ij ~ Beta(W_ij + 1,
  W_ji + 1): after 2,000 rounds it equals scipy's Beta survival function at
  1/2 for every pair (float32: 1e-5; float64: 1e-9)."""
  _, runs = learning_runs
  _, final, _ = runs["double_thompson"]
  W = np.asarray(final.wins, np.float64)
  expected = stats.beta.sf(0.5, W + 1, np.swapaxes(W, -1, -2) + 1)
  off = ~np.eye(K_LEARN, dtype=bool)
  tol = 1e-9 if final.wins.dtype == jnp.float64 else 1e-5
  np.testing.assert_allclose(np.asarray(final.above_half)[:, off],
                             expected[:, off], atol=tol)


def test_interleaved_filter_finds_best_and_exploits(learning_runs):
  """IF2 (Yue et al. 2012) duels its candidate against the others (pair[0]
  is last round's reported candidate); once it duels the candidate against
  itself it never explores again; with delta = 1/(T K^2) it ends holding
  the best arm. Noiseless duels (the learning problem's utilities), so that
  exploration (49 passes per candidate) ends within 2,000 rounds."""
  problem, runs = learning_runs
  alg, _, _ = runs["interleaved_filter"]
  problem = problem._replace(noisy=jnp.asarray(False))
  final, infos = prefsim.sweep(jax.random.key(7), alg, problem, T_LEARN,
                               S_LEARN)
  pair = np.asarray(infos["pair"])
  reported = np.asarray(infos["reported_regret"])
  u = np.asarray(problem.utilities)
  candidate = np.argmin(np.abs(u.max() - reported[..., None] - u), axis=-1)
  np.testing.assert_array_equal(pair[:, 1:, 0], candidate[:, :-1])
  exploiting = pair[..., 0] == pair[..., 1]
  assert exploiting[:, -1].all()
  started = np.argmax(exploiting, axis=1)
  assert all(exploiting[s, started[s]:].all() for s in range(S_LEARN))
  assert not np.asarray(final.remaining).any()
  np.testing.assert_array_equal(np.asarray(final.candidate), np.argmax(u))


def _win_matrices(k: int, high: int):
  """Drawn integer win counts [k, k] with a zero diagonal."""
  return hnp.arrays(np.int64, (k, k), elements=st.integers(0, high)).map(
      lambda w: w * (1 - np.eye(k, dtype=np.int64)))


def _batched_step(alg: prefsim.Algorithm):
  """``alg.step`` jitted and vmapped over N_KEYS keys for one state."""
  return jax.jit(jax.vmap(alg.step, in_axes=(0, None, None)))


RUCB_STEPS = _batched_step(classic.rucb(ALPHA))
DTS_STEPS = _batched_step(classic.double_thompson(ALPHA))


def _rules_problem() -> env.DuelingProblem:
  return _problem(np.arange(float(K_RULES)))


def _keys(seed: int) -> jax.Array:
  return jax.random.split(jax.random.key(seed), N_KEYS)


def _rucb_state(W, hyp, dtype) -> classic.RUCBState:
  return classic.RUCBState(jnp.asarray(W, dtype),
                           jnp.asarray(np.sum(W), jnp.int32),
                           jnp.asarray(hyp, jnp.int32))


def _dts_state(W, dtype) -> classic.DTSState:
  W = np.asarray(W)
  return classic.DTSState(jnp.asarray(W, dtype),
                          jnp.asarray(np.sum(W), jnp.int32),
                          jnp.asarray(stats.beta.sf(0.5, W + 1, W.T + 1),
                                      dtype))


@FEW
@given(W=_win_matrices(K_RULES, 30), hyp=st.integers(-1, K_RULES - 1),
       seed=pst.seeds())
def test_rucb_champion_rules(W, hyp, seed):
  """RUCB, Algorithm 1 (Zoghi et al. 2014), on drawn counts (t = duels + 1)
  and 8,000 keys: the champion c lies in C = {i : u_ij >= 1/2 for all j}
  (any arm if C is empty); the challenger maximises u_jc; B becomes C when
  |C| = 1, else B ∩ C."""
  problem = _rules_problem()
  t = W.sum() + 1
  new, info = RUCB_STEPS(_keys(seed), _rucb_state(W, hyp,
                                                   problem.utilities.dtype),
                         problem)
  c, d = (np.asarray(x) for x in (info["pair"][:, 0], info["pair"][:, 1]))
  U, _ = _np_bounds(W, t)
  tol = 1e-5   # float32 rounding of u next to the thresholds
  in_c_strict = np.all(U >= 0.5 + tol, axis=1)
  in_c_loose = np.all(U >= 0.5 - tol, axis=1)
  if in_c_strict.any():
    assert in_c_loose[c].all()
  assert np.all(U[d, c] >= np.max(U[:, c], axis=0) - tol)
  hypothesis_after = np.asarray(new.hypothesis)
  if in_c_strict.sum() == 1 and in_c_loose.sum() == 1:
    assert np.all(hypothesis_after == np.flatnonzero(in_c_strict)[0])
  elif hyp >= 0 and in_c_strict[hyp]:
    assert np.all(hypothesis_after == hyp)
  elif hyp >= 0 and not in_c_loose[hyp]:
    assert np.all(hypothesis_after == -1)


def test_rucb_champion_law():
  """RUCB draws c from C with p = 1/2 for the hypothesis B and
  1/(2|C \\ B|) for the others (uniform on C when B is empty): C = {0, 1, 2}
  here; frequencies over 8,000 keys within 0.02 (about 4 standard errors)."""
  problem = _rules_problem()
  W = np.zeros((K_RULES, K_RULES), np.int64)
  W[0, 3] = W[0, 4] = 100        # arms 3 and 4 lose clearly to arm 0
  U, _ = _np_bounds(W, W.sum() + 1)
  np.testing.assert_array_equal(np.all(U >= 0.5, axis=1),
                                [True, True, True, False, False])
  for hyp, law in ((1, [0.25, 0.5, 0.25]), (-1, [1 / 3] * 3)):
    _, info = RUCB_STEPS(_keys(0), _rucb_state(W, hyp,
                                               problem.utilities.dtype),
                         problem)
    champions = np.asarray(info["pair"][:, 0])
    freq = np.bincount(champions, minlength=K_RULES) / champions.size
    np.testing.assert_allclose(freq, law + [0.0, 0.0], atol=0.02)


@FEW
@given(W=_win_matrices(K_RULES, 30), seed=pst.seeds())
def test_dts_second_candidate_rules(W, seed):
  """D-TS, Algorithm 1 (Wu & Liu 2016), on drawn counts and 8,000 keys: the
  first candidate has the highest upper Copeland score sum_j 1(u_ij > 1/2);
  the second is an arm with l_{a2 a1} <= 1/2 (a1 itself included)."""
  problem = _rules_problem()
  t = W.sum() + 1
  _, info = DTS_STEPS(_keys(seed), _dts_state(W, problem.utilities.dtype),
                      problem)
  a1, a2 = (np.asarray(x) for x in (info["pair"][:, 0], info["pair"][:, 1]))
  U, L = _np_bounds(W, t)
  tol = 1e-5
  off = ~np.eye(K_RULES, dtype=bool)
  zeta_hi = np.sum((U > 0.5 - tol) & off, axis=1)
  zeta_lo = np.sum((U > 0.5 + tol) & off, axis=1)
  assert np.all(zeta_hi[a1] >= zeta_lo.max())
  assert np.all(L[a2, a1] <= 0.5 + tol)


def _numpy_dts_pairs(rng: np.random.Generator, W: np.ndarray, t: int,
                     n: int) -> np.ndarray:
  """D-TS Algorithm 1 in NumPy, drawing every Beta variable; n pairs."""
  k = W.shape[0]
  U, L = _np_bounds(W, t)
  off = ~np.eye(k, dtype=bool)
  zeta = np.sum((U > 0.5) & off, axis=1)
  cands = zeta == zeta.max()
  out = np.empty((n, 2), np.int64)
  iu = np.triu_indices(k, 1)
  for s in range(n):
    theta = np.full((k, k), 0.5)
    theta[iu] = rng.beta(W[iu] + 1, W.T[iu] + 1)
    theta.T[iu] = 1 - theta[iu]
    score = np.where(cands, np.sum(theta > 0.5, axis=1), -1)
    a1 = rng.choice(np.flatnonzero(score == score.max()))
    theta2 = rng.beta(W[:, a1] + 1, W[a1, :] + 1)
    theta2[a1] = 0.5
    out[s] = a1, np.argmax(np.where(L[:, a1] <= 0.5, theta2, -np.inf))
  return out


# Counts where both of D-TS's filters bind (arm 4 is out of the first
# candidates; arm 0 cannot be the second candidate against arm 4).
DTS_LAW_W = np.array([[0, 6, 5, 4, 60],
                      [3, 0, 4, 5, 2],
                      [4, 5, 0, 3, 3],
                      [5, 2, 6, 0, 4],
                      [10, 3, 2, 1, 0]])


def test_dts_pair_law_matches_beta_sampling():
  """Drawing the events 1(theta_ij > 1/2) with probability I_{1/2}(W_ji+1,
  W_ij+1) gives D-TS's law of (a1, a2): on fixed counts where both filters
  bind, the pair frequencies over 8,000 keys are within total variation
  TV_MAX of a NumPy D-TS that draws every Beta variable."""
  W = DTS_LAW_W
  t = int(W.sum()) + 1
  problem = _rules_problem()
  U, L = _np_bounds(W, t)
  assert U[4, 0] < 0.5 and L[0, 4] > 0.5   # both filters bind here
  _, info = DTS_STEPS(_keys(1), _dts_state(W, problem.utilities.dtype),
                      problem)
  ours = np.asarray(info["pair"])
  theirs = _numpy_dts_pairs(np.random.default_rng(0), W, t, N_KEYS)
  cells = K_RULES * K_RULES
  p = np.bincount(ours[:, 0] * K_RULES + ours[:, 1], minlength=cells)
  q = np.bincount(theirs[:, 0] * K_RULES + theirs[:, 1], minlength=cells)
  assert 0.5 * np.abs(p - q).sum() / N_KEYS < TV_MAX, (p, q)


def test_beta_sampler_moments():
  """The Marsaglia-Tsang Beta draws have Beta(a, b)'s mean and variance:
  20,000 draws each, within 4 standard errors."""
  a = np.array([1.0, 1.0, 3.0, 40.0, 200.0])
  b = np.array([1.0, 5.0, 2.0, 7.0, 900.0])
  n = 20000
  draws = jax.jit(classic._beta)(jax.random.key(2),
                                 jnp.asarray(np.tile(a, n)),
                                 jnp.asarray(np.tile(b, n)))
  draws = np.asarray(draws, np.float64).reshape(n, a.size)
  mean = a / (a + b)
  var = a * b / ((a + b)**2 * (a + b + 1))
  assert np.all((draws > 0) & (draws < 1))
  assert np.all(np.abs(draws.mean(0) - mean) < 4 * np.sqrt(var / n))
  # The sample variance has sd var * sqrt((kappa - 1) / n), kappa the
  # kurtosis; here kappa <= 4.2 (Beta(1, 5)), so the bound is >= 4 sd.
  assert np.all(np.abs(draws.var(0) - var) < 4 * var * math.sqrt(4 / n))


def test_bad_parameters_raise():
  """alpha must be a number > 1/2; horizon an int >= 1; the problem a
  DuelingProblem with K >= 2; a horizon of 0 rounds raises in run."""
  for bad in (0.5, 0.3, -1.0, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="alpha"):
      classic.rucb(bad)
    with pytest.raises(ValueError, match="alpha"):
      classic.double_thompson(bad)
  for bad in ("0.6", None, True, jnp.float32(0.7)):
    with pytest.raises(TypeError, match="alpha"):
      classic.rucb(bad)
  with pytest.raises(ValueError, match="horizon"):
    classic.interleaved_filter(0)
  with pytest.raises(TypeError, match="horizon"):
    classic.interleaved_filter(10.0)
  key = jax.random.key(0)
  with pytest.raises(TypeError, match="DuelingProblem"):
    classic.rucb().init(key, {"utilities": jnp.zeros(3)})
  one_arm = env.DuelingProblem(jnp.ones((1, 2)), jnp.zeros(1),
                               jnp.asarray(True))
  with pytest.raises(ValueError, match="K >= 2"):
    classic.double_thompson().init(key, one_arm)
  with pytest.raises(ValueError, match="n_steps"):
    prefsim.run(key, classic.rucb(), _problem(np.arange(3.0)), 0)
