r"""Classic K-armed dueling bandits: RUCB, Double Thompson Sampling, IF2.

The baselines of the dueling-bandit literature, as :class:`prefsim.Algorithm`\ s
over a :class:`~prefsim.bandits.env.DuelingProblem`. They ignore the arms'
features: all they keep is the win-count matrix

.. math:: W_{ij} = \#\{\text{duels so far in which } i \text{ beat } j\},
          \qquad N = W + W^\top,

and they learn only through :func:`~prefsim.bandits.env.feedback`. From it,
at round :math:`t = 1, 2, \dots` (``t`` counts this round), the relative
confidence bounds of RUCB and D-TS are

.. math:: u_{ij} = \frac{W_{ij}}{N_{ij}} + \sqrt{\frac{\alpha\ln t}{N_{ij}}},
          \qquad
          l_{ij} = \frac{W_{ij}}{N_{ij}} - \sqrt{\frac{\alpha\ln t}{N_{ij}}},
          \qquad u_{ii} = l_{ii} = \tfrac12 .

The papers write ":math:`x/0 := 1`" for a pair never compared; only the
comparisons with :math:`\tfrac12` and the argmax over :math:`u` use these
bounds, and we take the limit :math:`N_{ij} \to 0`, as the D-TS authors'
code does (counts start at :math:`10^{-6}`): an unplayed pair has
:math:`u_{ij} = +\infty`, :math:`l_{ij} = -\infty`.

=============================  ==============================================
algorithm                      pair :math:`(a_t, b_t)` at round :math:`t`
=============================  ==============================================
:func:`rucb`                   champion :math:`c` from
                               :math:`\mathcal C = \{i : u_{ij} \ge \frac12\
                               \forall j\}`; challenger
                               :math:`\arg\max_j u_{jc}` (may be :math:`c`)
:func:`double_thompson`        :math:`a^{(1)}`: the best Copeland score under
                               a Beta posterior draw, among the arms of
                               highest upper Copeland score; :math:`a^{(2)}`:
                               the highest posterior draw of
                               :math:`P(i \succ a^{(1)})` among
                               :math:`\{i: l_{ia^{(1)}} \le \frac12\}`
:func:`interleaved_filter`     the candidate :math:`\hat b` against each arm
                               still in play, round robin; then
                               :math:`(\hat b, \hat b)`
=============================  ==============================================

A self-duel :math:`(i, i)` tells nothing and is not recorded (the diagonal
of :math:`W` stays 0); it is how RUCB and D-TS exploit once they trust a
winner, at weak, average and strong regret :math:`u^* - u_i`.

Ties (in every argmax, and the paper's random choices) are broken uniformly
at random with the step's key. Each step's ``info`` is
:func:`~prefsim.bandits.env.regret_info`: ``"pair"`` (int32 ``[2]``, the
queried arms), ``"reported_regret"`` of the arm the algorithm reports as
best after the round, and the ``"average_regret"``, ``"weak_regret"`` and
``"strong_regret"`` of the pair. The reported arm is

- RUCB and D-TS: the empirical Copeland winner, the arm that beats the most
  arms on the counts so far, :math:`\arg\max_i \#\{j : W_{ij} > W_{ji}\}`
  (RUCB's "Return" line, Zoghi et al. 2014, Algorithm 1; duelpy's D-TS
  reports the same);
- IF2: its current candidate :math:`\hat b` (the arm it returns).

Everything is pure: ``prefsim.sweep(key, alg, problem, T, S)`` runs ``S``
seeds at once, and with ``problem_axis=0`` a batch of problems.

Shapes: ``K`` arms.

References:
  Zoghi, Whiteson, Munos, de Rijke. Relative Upper Confidence Bound for the
  K-Armed Dueling Bandit Problem. ICML 2014, arXiv:1312.3393, Algorithm 1
  (RUCB; its regret bounds assume :math:`\alpha > \tfrac12`).
  Wu, Liu. Double Thompson Sampling for Dueling Bandits. NeurIPS 2016,
  arXiv:1604.07101, Algorithm 1 (D-TS).
  Yue, Broder, Kleinberg, Joachims. The K-armed dueling bandits problem.
  J. Comput. Syst. Sci. 78(5), 2012, Algorithm 2 (Interleaved Filter 2).
  The D-TS authors' simulation code, github.com/HuasenWu/DuelingBandits
  (the unplayed-pair convention).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim.bandits import env
from prefsim.run import Algorithm

__all__ = [
    "DTSState",
    "IFState",
    "RUCBState",
    "double_thompson",
    "interleaved_filter",
    "rucb",
]


class RUCBState(NamedTuple):
  """The state of :func:`rucb`.

  Attributes:
    wins: ``[K, K]`` float, ``wins[i, j]`` the duels in which ``i`` beat
      ``j`` (diagonal 0).
    n_rounds: ``[]`` int32, rounds played.
    hypothesis: ``[]`` int32, the hypothesised best arm :math:`B`, or -1
      when :math:`B = \\emptyset`.
  """

  wins: jax.Array
  n_rounds: jax.Array
  hypothesis: jax.Array


class IFState(NamedTuple):
  """The state of :func:`interleaved_filter`.

  Attributes:
    wins: ``[K, K]`` win counts over all rounds, as :class:`RUCBState`.
    n_rounds: ``[]`` int32, rounds played.
    candidate: ``[]`` int32, the candidate :math:`\\hat b`.
    remaining: ``[K]`` bool, the arms still in play :math:`W` (never the
      candidate); all False once exploration is over.
    pending: ``[K]`` bool, the arms of :math:`W` not yet compared with
      :math:`\\hat b` in the current pass.
    reset_wins: ``[K, K]`` the counts when :math:`\\hat b` last changed; the
      estimates use ``wins - reset_wins``.
  """

  wins: jax.Array
  n_rounds: jax.Array
  candidate: jax.Array
  remaining: jax.Array
  pending: jax.Array
  reset_wins: jax.Array


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def _check_alpha(alpha: Any) -> float:
  """``alpha`` as a float, raising unless it is a finite number > 1/2."""
  if isinstance(alpha, bool) or not isinstance(
      alpha, (int, float, np.integer, np.floating)):
    raise TypeError(f"alpha must be a Python float (a static exploration "
                    f"constant), got {type(alpha).__name__}")
  if not np.isfinite(alpha) or alpha <= 0.5:
    raise ValueError(f"alpha must be a finite number > 1/2 (the papers' "
                     f"regret bounds need alpha > 1/2), got {alpha}")
  return float(alpha)


def _n_arms(problem: Any) -> int:
  """``K``, after :func:`env.check_problem` (values too when concrete)."""
  n_arms, _ = env.check_problem(problem)
  return n_arms


def _init_counts(problem: env.DuelingProblem) -> tuple[jax.Array, jax.Array]:
  """Zero win counts ``[K, K]`` (the problem's float dtype) and round 0."""
  n_arms = _n_arms(problem)
  dtype = jnp.result_type(problem.utilities)
  return jnp.zeros((n_arms, n_arms), dtype), jnp.zeros((), jnp.int32)


def _bounds(wins: jax.Array, t: jax.Array,
            alpha: float) -> tuple[jax.Array, jax.Array]:
  """The relative confidence bounds ``(u, l)`` of the module docstring.

  Unplayed pairs get ``u = +inf`` and ``l = -inf``; the diagonal is 1/2.
  """
  n = wins + wins.T
  played = n > 0
  safe_n = jnp.where(played, n, 1.0)
  mean = wins / safe_n
  radius = jnp.sqrt(alpha * jnp.log(t) / safe_n)
  eye = jnp.eye(wins.shape[0], dtype=bool)
  upper = jnp.where(eye, 0.5, jnp.where(played, mean + radius, jnp.inf))
  lower = jnp.where(eye, 0.5, jnp.where(played, mean - radius, -jnp.inf))
  return upper, lower


def _random_argmax(noise: jax.Array, scores: jax.Array,
                   mask: jax.Array) -> jax.Array:
  """An index of ``max(scores[mask])``, ties uniform; int32 scalar.

  ``noise`` is ``[K]`` fresh U(0, 1) draws: the tied entry with the largest
  draw wins. With no True in ``mask`` it returns 0; callers discard that.
  """
  masked = jnp.where(mask, scores, -jnp.inf)
  ties = mask & (masked == jnp.max(masked))
  return jnp.argmax(jnp.where(ties, noise, -1.0)).astype(jnp.int32)


def _random_member(noise: jax.Array, mask: jax.Array) -> jax.Array:
  """A uniform draw from the True entries of ``mask`` (int32 scalar)."""
  return _random_argmax(noise, jnp.zeros(mask.shape, noise.dtype), mask)


def _record(key: jax.Array, problem: env.DuelingProblem, wins: jax.Array,
            a: jax.Array, b: jax.Array) -> jax.Array:
  """Duel ``a`` against ``b`` and add the outcome to ``wins``.

  A self-duel (``a == b``) is not recorded.
  """
  a_won = env.feedback(key, problem, a, b).astype(wins.dtype)
  counted = (a != b).astype(wins.dtype)
  return wins.at[a, b].add(a_won * counted).at[b, a].add((1 - a_won)
                                                         * counted)


def _copeland_winner(noise: jax.Array, wins: jax.Array) -> jax.Array:
  r"""The empirical Copeland winner,
  :math:`\arg\max_i \#\{j: W_{ij} > W_{ji}\}`, ties at random."""
  score = jnp.sum(wins > wins.T, axis=1)
  return _random_argmax(noise, score, jnp.ones(score.shape, bool))


# --------------------------------------------------------------------------
# RUCB
# --------------------------------------------------------------------------


def rucb(alpha: float = 0.51) -> Algorithm:
  r"""Relative Upper Confidence Bound (RUCB) for the K-armed dueling bandit.

  At round :math:`t`, with :math:`u` the upper bounds of the module
  docstring (:math:`u_{ii} = \tfrac12`):

  1. :math:`\mathcal C = \{c : u_{cj} \ge \tfrac12\ \forall j\}`, the arms
     that could still be a Condorcet winner; if :math:`\mathcal C` is empty,
     :math:`c` is uniform over all arms.
  2. :math:`B \leftarrow B \cap \mathcal C`; if :math:`|\mathcal C| = 1`,
     :math:`B \leftarrow \mathcal C` and :math:`c` is its arm.
  3. If :math:`|\mathcal C| > 1`, draw :math:`c \in \mathcal C` with
     :math:`p(c) = \tfrac12` for :math:`c \in B` and
     :math:`1 / (2^{|B|}\,|\mathcal C \setminus B|)` otherwise.
  4. :math:`d = \arg\max_j u_{jc}`, ties at random: the arm most likely to
     beat :math:`c`. When no arm can beat :math:`c` any more
     (:math:`u_{jc} < \tfrac12` for all :math:`j \ne c`), :math:`d = c` and
     the round costs no regret; duelpy's ``RelativeUCB`` forbids
     :math:`d = c`.
  5. Duel :math:`(c, d)`; report the empirical Copeland winner.

  Args:
    alpha: the exploration constant :math:`\alpha > \tfrac12`.
  Returns:
    ``Algorithm(init, step)`` over a :class:`~prefsim.bandits.DuelingProblem`
    with state :class:`RUCBState`; ``info`` as in the module docstring.
  Raises:
    TypeError: ``alpha`` is not a number.
    ValueError: ``alpha <= 1/2`` or not finite; (at ``init``) a malformed
      problem.
  References:
    Zoghi, Whiteson, Munos, de Rijke. ICML 2014, arXiv:1312.3393,
    Algorithm 1; :math:`O(K \log T)` regret for :math:`\alpha > \tfrac12`
    when a Condorcet winner exists.
  Tests: tests/bandits/test_classic.py::test_regret_falls_with_condorcet_winner,
    ::test_rucb_champion_rules, ::test_rucb_champion_law,
    ::test_regrets_nonnegative_and_pairs_valid,
    ::test_sweep_equals_eager_steps, ::test_bad_parameters_raise.
  """
  alpha = _check_alpha(alpha)

  def init(key, problem):
    del key
    wins, n_rounds = _init_counts(problem)
    return RUCBState(wins, n_rounds, jnp.full((), -1, jnp.int32))

  def step(key, state, problem):
    noise_key, duel_key = jax.random.split(key)
    wins = state.wins
    n_arms = wins.shape[0]
    arms = jnp.arange(n_arms)
    # Rows: ties of c, of d, of the report; the coin for B.
    noise = jax.random.uniform(noise_key, (3 * n_arms + 1,), wins.dtype)
    t = (state.n_rounds + 1).astype(wins.dtype)
    upper, _ = _bounds(wins, t, alpha)
    in_c = jnp.all(upper >= 0.5, axis=1)
    n_c = jnp.sum(in_c)
    hyp = state.hypothesis
    hyp = jnp.where((hyp >= 0) & in_c[jnp.maximum(hyp, 0)], hyp, -1)
    hyp = jnp.where(n_c == 1, jnp.argmax(in_c), hyp).astype(jnp.int32)
    # C \ B (every arm when C is empty, where B is empty too).
    others = jnp.where(n_c == 0, True, in_c) & (arms != hyp)
    take_hyp = (hyp >= 0) & ((n_c == 1) | (noise[-1] < 0.5))
    c = jnp.where(take_hyp, hyp, _random_member(noise[:n_arms], others))
    d = _random_argmax(noise[n_arms:2 * n_arms], upper[:, c],
                       jnp.ones(arms.shape, bool))
    wins = _record(duel_key, problem, wins, c, d)
    new = RUCBState(wins, state.n_rounds + 1, hyp)
    report = _copeland_winner(noise[2 * n_arms:3 * n_arms], wins)
    return new, env.regret_info(problem, c, d, report)

  return Algorithm(init, step)


# --------------------------------------------------------------------------
# Double Thompson Sampling
# --------------------------------------------------------------------------


def _gamma(key: jax.Array, shape: jax.Array) -> jax.Array:
  r""":math:`\mathrm{Gamma}(a, 1)` draws, one per entry ``a >= 1`` of ``shape``.

  ``shape`` is a vector ``[n]`` of shape parameters.

  Marsaglia and Tsang's squeeze-free rejection sampler: with
  :math:`d = a - \tfrac13`, :math:`c = 1/\sqrt{9d}`, propose
  :math:`v = (1 + cx)^3`, :math:`x \sim \mathcal N(0, 1)` (Box-Muller),
  accept when
  :math:`v > 0` and :math:`\log U < x^2/2 + d - dv + d\log v`, return
  :math:`dv`. Every entry redraws until it accepts (a ``while_loop``; the
  acceptance rate is above 0.95 for :math:`a \ge 1`). Each attempt draws
  the whole batch from one key, where ``jax.random.gamma`` splits a key per
  entry and runs each entry's own loop: Beta draws for 20 seeds x 20 arms
  took about a third of ``jax.random.beta``'s time on the 2-core CPU.

  References:
    Marsaglia, Tsang. A simple method for generating gamma variables. ACM
    Trans. Math. Softw. 26(3), 2000.
  Tests: tests/bandits/test_classic.py::test_beta_sampler_moments.
  """
  d = shape - 1.0 / 3.0
  c = 1.0 / jnp.sqrt(9.0 * d)
  n = d.shape[0]
  half = (n + 1) // 2

  def attempt(carry):
    key, done, out = carry
    key, sub = jax.random.split(key)
    # 1 - U lies in (0, 1]: finite logs. Box-Muller: each pair of uniforms
    # gives two independent normals (cos and sin), for two entries.
    u = 1.0 - jax.random.uniform(sub, (2 * half + n,), d.dtype)
    radius = jnp.sqrt(-2.0 * jnp.log(u[:half]))
    angle = 2.0 * jnp.pi * u[half:2 * half]
    x = jnp.concatenate([radius * jnp.cos(angle),
                         radius * jnp.sin(angle)])[:n]
    v = (1.0 + c * x)**3
    safe_v = jnp.where(v > 0, v, 1.0)
    accept = (v > 0) & (jnp.log(u[2 * half:]) < 0.5 * x**2 + d - d * safe_v
                        + d * jnp.log(safe_v))
    out = jnp.where(accept & ~done, d * safe_v, out)
    return key, done | accept, out

  _, _, out = jax.lax.while_loop(
      lambda carry: ~jnp.all(carry[1]), attempt,
      (key, jnp.zeros(d.shape, bool), jnp.zeros_like(d)))
  return out


def _beta(key: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  r"""Draws of :math:`\mathrm{Beta}(a, b)` for ``a, b >= 1``: ``X / (X + Y)``
  with independent :math:`X \sim \mathrm{Gamma}(a)`,
  :math:`Y \sim \mathrm{Gamma}(b)`."""
  g = _gamma(key, jnp.concatenate([a, b]))
  x, y = g[:a.shape[0]], g[a.shape[0]:]
  return x / (x + y)


def _above_half(wins_ij: jax.Array, wins_ji: jax.Array) -> jax.Array:
  r""":math:`\Pr(\theta > \tfrac12)` for
  :math:`\theta \sim \mathrm{Beta}(W_{ij} + 1, W_{ji} + 1)`, which is
  :math:`I_{1/2}(W_{ji} + 1, W_{ij} + 1)`."""
  return jax.scipy.special.betainc(wins_ji + 1, wins_ij + 1, 0.5)


class DTSState(NamedTuple):
  r"""The state of :func:`double_thompson`.

  Attributes:
    wins: ``[K, K]`` win counts, as :class:`RUCBState`.
    n_rounds: ``[]`` int32, rounds played.
    above_half: ``[K, K]`` the posterior probability that
      :math:`P(i \succ j) > \tfrac12`, :math:`\Pr(\theta_{ij} > \tfrac12)`
      for :math:`\theta_{ij} \sim \mathrm{Beta}(W_{ij} + 1, W_{ji} + 1)`;
      kept up to date one pair per round (diagonal unused).
  """

  wins: jax.Array
  n_rounds: jax.Array
  above_half: jax.Array


def double_thompson(alpha: float = 0.51) -> Algorithm:
  r"""Double Thompson Sampling (D-TS) with Beta(1, 1) priors.

  At round :math:`t`, with :math:`u, l` the confidence bounds of the module
  docstring:

  1. Upper Copeland scores
     :math:`\hat\zeta_i = \sum_{j \ne i} \mathbb 1(u_{ij} > \tfrac12)` and
     candidates :math:`\mathcal C = \arg\max_i \hat\zeta_i` (arms that are
     unlikely Copeland winners are out).
  2. First candidate: for :math:`i < j` draw
     :math:`\theta^{(1)}_{ij} \sim \mathrm{Beta}(W_{ij} + 1, W_{ji} + 1)`,
     :math:`\theta^{(1)}_{ji} = 1 - \theta^{(1)}_{ij}`;
     :math:`a^{(1)} = \arg\max_{i \in \mathcal C}
     \sum_{j \ne i} \mathbb 1(\theta^{(1)}_{ij} > \tfrac12)`.
  3. Second candidate: draw
     :math:`\theta^{(2)}_{i} \sim \mathrm{Beta}(W_{ia^{(1)}} + 1,
     W_{a^{(1)}i} + 1)` for :math:`i \ne a^{(1)}`,
     :math:`\theta^{(2)}_{a^{(1)}} = \tfrac12`;
     :math:`a^{(2)} = \arg\max_{i : l_{ia^{(1)}} \le 1/2} \theta^{(2)}_i`
     (only arms that may still beat :math:`a^{(1)}`, and :math:`a^{(1)}`
     itself).
  4. Duel :math:`(a^{(1)}, a^{(2)})`; report the empirical Copeland winner.

  Ties at random throughout. It seeks a Copeland winner, so it needs no
  Condorcet winner.

  Step 2 uses the draws :math:`\theta^{(1)}` only through the events
  :math:`\theta^{(1)}_{ij} > \tfrac12`, independent across pairs with
  probability :math:`q_{ij} = I_{1/2}(W_{ji} + 1, W_{ij} + 1)` (the
  regularised incomplete beta function). So we draw those events directly,
  one uniform per pair, and keep :math:`q` in the state (recomputed for the
  duelled pair each round): the same law of :math:`a^{(1)}` as drawing
  :math:`K(K-1)/2` Beta variables, at a fraction of the cost. The
  :math:`\theta^{(2)}` are Beta draws (Marsaglia-Tsang gammas).

  Args:
    alpha: the exploration constant :math:`\alpha > \tfrac12` of the
      confidence bounds.
  Returns:
    ``Algorithm(init, step)`` with state :class:`DTSState`; ``info`` as in
    the module docstring.
  Raises:
    TypeError: ``alpha`` is not a number.
    ValueError: ``alpha <= 1/2`` or not finite; (at ``init``) a malformed
      problem.
  References:
    Wu, Liu. Double Thompson Sampling for Dueling Bandits. NeurIPS 2016,
    arXiv:1604.07101, Algorithm 1; :math:`O(K^2 \log T)` regret for
    Copeland dueling bandits, refined to
    :math:`O(K \log T + K^2 \log\log T)` with a Condorcet winner.
  Tests: tests/bandits/test_classic.py::test_regret_falls_with_condorcet_winner,
    ::test_dts_second_candidate_rules,
    ::test_dts_pair_law_matches_beta_sampling,
    ::test_dts_above_half_matches_scipy, ::test_beta_sampler_moments,
    ::test_regrets_nonnegative_and_pairs_valid,
    ::test_sweep_equals_eager_steps, ::test_bad_parameters_raise.
  """
  alpha = _check_alpha(alpha)

  def init(key, problem):
    del key
    wins, n_rounds = _init_counts(problem)
    return DTSState(wins, n_rounds, jnp.full(wins.shape, 0.5, wins.dtype))

  def step(key, state, problem):
    uniform_key, theta2_key, duel_key = jax.random.split(key, 3)
    wins = state.wins
    n_arms = wins.shape[0]
    arms = jnp.arange(n_arms)
    rows, cols = np.triu_indices(n_arms, 1)
    # One coin per pair i < j, then the ties of a1, of a2, of the report.
    u = jax.random.uniform(uniform_key, (rows.size + 3 * n_arms,),
                           wins.dtype)
    noise = u[rows.size:].reshape(3, n_arms)
    t = (state.n_rounds + 1).astype(wins.dtype)
    upper, lower = _bounds(wins, t, alpha)
    off_diagonal = ~jnp.eye(n_arms, dtype=bool)
    zeta = jnp.sum((upper > 0.5) & off_diagonal, axis=1)
    candidates = zeta == jnp.max(zeta)
    # 1(theta1_ij > 1/2) for i < j; theta1_ji = 1 - theta1_ij.
    coins = u[:rows.size] < state.above_half[rows, cols]
    won = coins.astype(jnp.int32)
    copeland = jnp.zeros(n_arms, jnp.int32).at[rows].add(won).at[cols].add(
        1 - won)
    a1 = _random_argmax(noise[0], copeland, candidates)
    theta2 = _beta(theta2_key, wins[:, a1] + 1, wins[a1, :] + 1)
    theta2 = jnp.where(arms == a1, 0.5, theta2)
    a2 = _random_argmax(noise[1], theta2, lower[:, a1] <= 0.5)
    wins = _record(duel_key, problem, wins, a1, a2)
    first, second = jnp.stack([a1, a2]), jnp.stack([a2, a1])
    above_half = state.above_half.at[first, second].set(
        _above_half(wins[first, second], wins[second, first]))
    new = DTSState(wins, state.n_rounds + 1, above_half)
    return new, env.regret_info(problem, a1, a2,
                                _copeland_winner(noise[2], wins))

  return Algorithm(init, step)


# --------------------------------------------------------------------------
# Interleaved Filter 2
# --------------------------------------------------------------------------


def interleaved_filter(horizon: int) -> Algorithm:
  r"""Interleaved Filter 2 (IF2): explore by elimination, then exploit.

  With :math:`\delta = 1/(TK^2)` for the horizon :math:`T`: a random
  candidate :math:`\hat b`, the others in play (:math:`W`). In passes,
  :math:`\hat b` duels every arm of :math:`W` once (one duel per round, in
  index order). After each pass, with :math:`n` the duels of each pair since
  :math:`\hat b` was chosen, :math:`\hat P_b` the fraction :math:`\hat b`
  won against :math:`b` and :math:`c_n = \sqrt{\log(1/\delta) / n}`:

  1. drop every :math:`b \in W` with :math:`\hat P_b - c_n \ge \tfrac12`
     (confidently beaten by :math:`\hat b`);
  2. if some :math:`b' \in W` has :math:`\hat P_{b'} + c_n \le \tfrac12`
     (confidently beats :math:`\hat b`; one at random if several): drop
     every :math:`b` with :math:`\hat P_b > \tfrac12` (IF2's pruning),
     make :math:`b'` the candidate, remove it from :math:`W` and restart
     the estimates.

  Once :math:`W` is empty, every round duels :math:`(\hat b, \hat b)`.
  Rounds beyond ``horizon`` go on exploiting.

  Args:
    horizon: :math:`T \ge 1`, the planned number of rounds (sets
      :math:`\delta`; static).
  Returns:
    ``Algorithm(init, step)`` with state :class:`IFState`; ``info`` as in
    the module docstring, the reported arm being :math:`\hat b`.
  Raises:
    TypeError, ValueError: ``horizon`` not an int ``>= 1``; (at ``init``) a
      malformed problem.
  References:
    Yue, Broder, Kleinberg, Joachims. The K-armed dueling bandits problem.
    J. Comput. Syst. Sci. 78(5), 2012, Algorithms 1 and 2 (IF1, IF2; IF2's
    expected regret is :math:`O(\frac{K}{\epsilon_{1,2}} \log T)` under strong
    stochastic transitivity and the stochastic triangle inequality).
  Tests: tests/bandits/test_classic.py::test_regret_falls_with_condorcet_winner,
    ::test_interleaved_filter_finds_best_and_exploits,
    ::test_regrets_nonnegative_and_pairs_valid,
    ::test_sweep_equals_eager_steps, ::test_bad_parameters_raise.
  """
  horizon = _checks.check_static_int("horizon", horizon)

  def init(key, problem):
    wins, n_rounds = _init_counts(problem)
    n_arms = wins.shape[0]
    candidate = jax.random.randint(key, (), 0, n_arms, jnp.int32)
    remaining = jnp.arange(n_arms) != candidate
    return IFState(wins, n_rounds, candidate, remaining, remaining, wins)

  def step(key, state, problem):
    duel_key, switch_key = jax.random.split(key)
    n_arms = state.wins.shape[0]
    arms = jnp.arange(n_arms)
    log_inv_delta = np.log(horizon) + 2 * np.log(n_arms)
    cand = state.candidate
    exploring = jnp.any(state.remaining)
    b = jnp.where(exploring, jnp.argmax(state.pending), cand).astype(jnp.int32)
    wins = _record(duel_key, problem, state.wins, cand, b)
    pending = state.pending & (arms != b)
    pass_done = exploring & ~jnp.any(pending)
    since = wins - state.reset_wins
    n = since[cand] + since[:, cand]
    safe_n = jnp.maximum(n, 1)
    p_hat = since[cand] / safe_n
    width = jnp.sqrt(log_inv_delta / safe_n)
    remaining = state.remaining & ~(p_hat - width >= 0.5)
    challengers = remaining & (p_hat + width <= 0.5)
    switch = pass_done & jnp.any(challengers)
    new_cand = _random_member(
        jax.random.uniform(switch_key, (n_arms,), wins.dtype), challengers)
    pruned = remaining & ~(p_hat > 0.5) & (arms != new_cand)
    remaining = jnp.where(switch, pruned, remaining)
    remaining = jnp.where(pass_done, remaining, state.remaining)
    cand = jnp.where(switch, new_cand, cand).astype(jnp.int32)
    new = IFState(wins, state.n_rounds + 1, cand, remaining,
                  jnp.where(pass_done, remaining, pending),
                  jnp.where(switch, wins, state.reset_wins))
    return new, env.regret_info(problem, state.candidate, b, cand)

  return Algorithm(init, step)
