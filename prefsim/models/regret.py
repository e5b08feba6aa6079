r"""Regret and partial-return models of preferences between segments.

A segment :math:`\sigma = (s_0, a_0, s_1, \dots, a_{T-1}, s_T)` of a
:class:`prefsim.mdp.TabularMDP` is a pair of integer arrays
``(states [T+1], actions [T])``; every function broadcasts over leading
batch axes (``states [B, T+1]``, ``actions [B, T]``).

* Partial return: :math:`\mathrm{PR}(\sigma) = \sum_{t<T}\gamma^t
  r(s_t, a_t, s_{t+1})`, and :math:`P(\sigma_1\succ\sigma_2) =
  \sigma(\mathrm{PR}(\sigma_1) - \mathrm{PR}(\sigma_2))`.
* Regret: :math:`\mathrm{regret}(\sigma) = -\sum_{t<T}\gamma^t
  A^*(s_t, a_t)` with :math:`A^* = Q^* - V^*`, and
  :math:`P(\sigma_1\succ\sigma_2) = \sigma(\mathrm{regret}(\sigma_2) -
  \mathrm{regret}(\sigma_1))`. Where transitions are deterministic this is
  :math:`V^*(s_0) - [\mathrm{PR}(\sigma) + \gamma^T V^*(s_T)]`.

Knox et al. (2022) work undiscounted (:math:`\gamma = 1`, episodic tasks);
the :math:`\gamma^t` weights are our generalisation and equal theirs at
:math:`\gamma = 1`. Terminal states are absorbing and worth nothing
(:mod:`prefsim.mdp`): steps taken from a terminal state contribute no
reward and no regret.

References:
  Knox, W. B., Hatgis-Kessell, S., Booth, S., Niekum, S., Stone, P. and
  Allievi, A. Models of human preference for learning reward functions.
  Transactions on Machine Learning Research 2023, arXiv:2206.02231.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim import _optim
from prefsim import mdp as mdp_lib

__all__ = [
    "MODELS",
    "fit_reward",
    "partial_return",
    "prob",
    "regret",
    "sample_labels",
    "sample_segments",
]

MODELS = ("regret", "partial_return")

Segment = tuple[Any, Any]


def _check_segments(mdp: mdp_lib.TabularMDP, states: Any,
                    actions: Any) -> None:
  """Shapes at trace time; ranges and connectivity eagerly."""
  s, a = mdp_lib.check_mdp(mdp)
  _checks.check_integer("states", states)
  _checks.check_integer("actions", actions)
  ss, sa = np.shape(states), np.shape(actions)
  if len(ss) < 1 or len(sa) != len(ss) or ss[:-1] != sa[:-1] or (
      ss[-1] != sa[-1] + 1):
    raise ValueError(f"a segment is (states [..., T+1], actions [..., T]); "
                     f"got states {ss} and actions {sa}")
  _checks.check_indices("states", states, s)
  _checks.check_indices("actions", actions, a)
  if _checks.is_concrete(states, actions, mdp.transitions) and sa[-1] > 0:
    st, ac = np.asarray(states), np.asarray(actions)
    p = np.asarray(mdp.transitions)[st[..., :-1], ac, st[..., 1:]]
    if np.any(p <= 0):
      bad = np.argwhere(p <= 0)[0]
      raise ValueError(
          f"states must follow the transitions: segment {tuple(bad[:-1])} "
          f"moves from state {st[tuple(bad)]} by action {ac[tuple(bad)]} to "
          f"state {st[(*bad[:-1], bad[-1] + 1)]}, which has probability 0")


def _discounts(mdp: mdp_lib.TabularMDP, states: jax.Array) -> jax.Array:
  """gamma^t for the T steps, zero from the first terminal state on."""
  t = states.shape[-1] - 1
  powers = mdp.gamma ** jnp.arange(t, dtype=mdp.gamma.dtype)
  return powers * jnp.logical_not(mdp.terminal[states[..., :-1]])


def partial_return(mdp: mdp_lib.TabularMDP, states: jax.typing.ArrayLike,
                   actions: jax.typing.ArrayLike) -> jax.Array:
  r"""Discounted partial return of segments.

  .. math:: \mathrm{PR}(\sigma) = \sum_{t=0}^{T-1} \gamma^t\,
            [s_t\notin\mathcal{T}]\; r(s_t, a_t, s_{t+1})

  (with :math:`r(s_t, a_t)` for rewards of shape [S, A]).

  Args:
    mdp: the :class:`prefsim.mdp.TabularMDP`.
    states: integer states, shape [..., T+1].
    actions: integer actions, shape [..., T].

  Returns:
    The partial returns, shape [...].

  Raises:
    ValueError, TypeError: bad shapes or dtypes; and, when concrete, states
      or actions out of range or consecutive states joined by a transition
      of probability 0. Under ``jit`` (or ``vmap``) values are not
      checked: an index past the end is clamped to the last state or
      action (JAX's gather; negative ones count from the end), and a
      step of probability 0 is scored like any other step (its reward, or
      its advantage for :func:`regret`): validate segments eagerly, once,
      before a jitted loop.

  References:
    Knox et al. (2022), the partial-return preference model.

  Tests:
    tests/models/test_regret.py::test_prob_matches_hand_computed_gridworld,
    tests/models/test_regret.py::test_deterministic_and_advantage_forms_agree,
    tests/models/test_regret.py::test_shaping_keeps_regret_preferences_changes_partial_return
  """
  _check_segments(mdp, states, actions)
  states, actions = jnp.asarray(states), jnp.asarray(actions)
  r = mdp.rewards
  if r.ndim == 3:
    step = r[states[..., :-1], actions, states[..., 1:]]
  else:
    step = r[states[..., :-1], actions]
  return jnp.sum(_discounts(mdp, states) * step, -1)


def regret(mdp: mdp_lib.TabularMDP, states: jax.typing.ArrayLike,
           actions: jax.typing.ArrayLike, *, form: str = "advantage",
           tol: float = 1e-4) -> jax.Array:
  r"""Discounted regret of segments.

  .. math:: \mathrm{regret}(\sigma) = -\sum_{t=0}^{T-1}\gamma^t
            A^*(s_t, a_t), \qquad A^* = Q^* - V^*,

  (``form="advantage"``, any MDP), or, for deterministic transitions,

  .. math:: \mathrm{regret}(\sigma) = V^*(s_0) - \bigl[\mathrm{PR}(\sigma)
            + \gamma^T V^*(s_T)\bigr]

  (``form="deterministic"``); the two agree where every step of the
  segment is deterministic (telescoping). At :math:`\gamma = 1` these are
  the regret of Knox et al. (2022). :math:`V^*, Q^*` come from
  :func:`prefsim.mdp.value_iteration` at ``tol`` (and carry its gradients
  in the rewards). Regret is :math:`\ge 0` and zero iff every action of the
  segment is optimal.

  Args:
    mdp: the :class:`prefsim.mdp.TabularMDP`.
    states: integer states, shape [..., T+1].
    actions: integer actions, shape [..., T].
    form: ``"advantage"`` or ``"deterministic"``.
    tol: tolerance of value iteration.

  Returns:
    The regrets, shape [...].

  Raises:
    ValueError: as :func:`partial_return`; an unknown ``form``; and, for
      ``form="deterministic"`` with concrete inputs, a step of the segment
      with :math:`P(s_{t+1}|s_t,a_t) < 1`.

  References:
    Knox et al. (2022), the regret preference model.

  Tests:
    tests/models/test_regret.py::test_regret_nonnegative_and_zero_iff_optimal,
    tests/models/test_regret.py::test_deterministic_and_advantage_forms_agree,
    tests/models/test_regret.py::test_deterministic_form_rejects_stochastic_steps,
    tests/models/test_regret.py::test_prob_matches_hand_computed_gridworld
  """
  if form not in ("advantage", "deterministic"):
    raise ValueError(f"form must be 'advantage' or 'deterministic', got "
                     f"{form!r}")
  _check_segments(mdp, states, actions)
  states, actions = jnp.asarray(states), jnp.asarray(actions)
  v, q = mdp_lib.value_iteration(mdp, tol=tol)
  if form == "advantage":
    return _advantage_regret(mdp, v, q, states, actions)
  if _checks.is_concrete(states, actions, mdp.transitions):
    p = np.asarray(mdp.transitions)[np.asarray(states)[..., :-1],
                                    np.asarray(actions),
                                    np.asarray(states)[..., 1:]]
    if np.any(p < 1 - 1e-6):
      raise ValueError("form='deterministic' needs deterministic steps; a "
                       f"step of the segments has probability {p.min()}")
  t = states.shape[-1] - 1
  end = mdp.gamma ** t * v[states[..., -1]]
  return v[states[..., 0]] - (partial_return(mdp, states, actions) + end)


def _advantage_regret(mdp: mdp_lib.TabularMDP, v: jax.Array, q: jax.Array,
                      states: jax.Array, actions: jax.Array) -> jax.Array:
  """-sum_t gamma^t A*(s_t, a_t), given V* and Q*."""
  adv = q[states[..., :-1], actions] - v[states[..., :-1]]
  return -jnp.sum(_discounts(mdp, states) * adv, -1)


def _score_gap(mdp: mdp_lib.TabularMDP, seg_1: Segment, seg_2: Segment,
               model: str, tol: float) -> jax.Array:
  """score(seg_1) - score(seg_2): the logit of P(seg_1 > seg_2)."""
  _check_segments(mdp, *seg_1)
  _check_segments(mdp, *seg_2)
  seg_1 = jax.tree_util.tree_map(jnp.asarray, seg_1)
  seg_2 = jax.tree_util.tree_map(jnp.asarray, seg_2)
  if model == "regret":
    v, q = mdp_lib.value_iteration(mdp, tol=tol)
    return (_advantage_regret(mdp, v, q, *seg_2)
            - _advantage_regret(mdp, v, q, *seg_1))
  return partial_return(mdp, *seg_1) - partial_return(mdp, *seg_2)


def _check_model(model: str) -> None:
  if model not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def prob(mdp: mdp_lib.TabularMDP, seg_1: Segment, seg_2: Segment,
         model: str, *, tol: float = 1e-4) -> jax.Array:
  r"""Probability that segment 1 is preferred to segment 2.

  .. math:: P_\mathrm{PR}(\sigma_1\succ\sigma_2) =
            \sigma(\mathrm{PR}(\sigma_1) - \mathrm{PR}(\sigma_2)), \qquad
            P_\mathrm{regret}(\sigma_1\succ\sigma_2) =
            \sigma(\mathrm{regret}(\sigma_2) - \mathrm{regret}(\sigma_1)).

  Args:
    mdp: the :class:`prefsim.mdp.TabularMDP`.
    seg_1: ``(states [..., T+1], actions [..., T])``.
    seg_2: the same for the second segments (any length, same batch shape).
    model: ``"regret"`` or ``"partial_return"``.
    tol: tolerance of value iteration (regret model).

  Returns:
    The probabilities, shape [...].

  Raises:
    ValueError: an unknown ``model``, or bad segments (as
      :func:`partial_return`).

  References:
    Knox et al. (2022), the two preference models.

  Tests:
    tests/models/test_regret.py::test_prob_matches_hand_computed_gridworld,
    tests/models/test_regret.py::test_prob_complement_and_bad_inputs,
    tests/models/test_regret.py::test_prob_under_jit_and_vmap_equals_eager,
    tests/models/test_regret.py::test_shaping_keeps_regret_preferences_changes_partial_return,
    tests/models/test_regret.py::test_constant_reward_shift_keeps_partial_return_preferences_changes_policy
  """
  _check_model(model)
  return jax.nn.sigmoid(_score_gap(mdp, seg_1, seg_2, model, tol))


def sample_segments(key: jax.Array, mdp: mdp_lib.TabularMDP, n: int,
                    length: int, policy: jax.typing.ArrayLike | None = None
                    ) -> tuple[jax.Array, jax.Array]:
  r"""Segments from the initial distribution under a stochastic policy.

  .. math:: s_0 \sim \rho_0,\quad a_t \sim \pi(\cdot|s_t),\quad
            s_{t+1} \sim P(\cdot|s_t, a_t).

  Jittable with ``n`` and ``length`` static.

  Args:
    key: a ``jax.random`` key.
    mdp: the :class:`prefsim.mdp.TabularMDP`.
    n: number of segments (Python int).
    length: number of steps T (Python int).
    policy: :math:`\pi(a|s)`, shape [S, A]; default uniform random actions.

  Returns:
    ``(states [n, T+1], actions [n, T])``, int32.

  Raises:
    ValueError: ``policy`` is not [S, A], or (when concrete) its rows are
      not distributions.

  Tests:
    tests/models/test_regret.py::test_sampled_segments_follow_the_transitions
  """
  s, a = mdp_lib.check_mdp(mdp)
  n = _checks.check_static_int("n", n)
  length = _checks.check_static_int("length", length)
  dt = mdp.transitions.dtype
  if policy is None:
    policy = jnp.full((s, a), 1.0 / a, dt)
  mdp_lib.check_policy(policy, s, a)
  return _sample_segments(key, mdp, jnp.asarray(policy, dt), n, length)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _sample_segments(key, mdp, policy, n, length):
  """`sample_segments` without the checks."""
  k0, ks = jax.random.split(key)
  s0 = jax.random.choice(k0, mdp.initial.shape[0], (n,), p=mdp.initial)

  def step(s, k):
    ka, kn = jax.random.split(k)
    act = jax.random.categorical(ka, jnp.log(policy[s]), axis=-1)
    s_next = jax.random.categorical(kn, jnp.log(mdp.transitions[s, act]),
                                    axis=-1)
    return s_next, (act, s_next)

  _, (acts, path) = jax.lax.scan(step, s0, jax.random.split(ks, length))
  states = jnp.concatenate([s0[:, None], path.T], 1).astype(jnp.int32)
  return states, acts.T.astype(jnp.int32)


def sample_labels(key: jax.Array, mdp: mdp_lib.TabularMDP, seg_1: Segment,
                  seg_2: Segment, model: str, *,
                  tol: float = 1e-4) -> jax.Array:
  r"""Sampled preferences: True where segment 1 is preferred.

  .. math:: y \sim \mathrm{Bernoulli}(P_\mathrm{model}(\sigma_1\succ\sigma_2))

  Args:
    key: a ``jax.random`` key.
    mdp: the :class:`prefsim.mdp.TabularMDP`.
    seg_1, seg_2, model, tol: as :func:`prob`.

  Returns:
    Boolean labels, shape [...].

  Tests:
    tests/models/test_regret.py::test_sample_labels_frequencies_match_prob
  """
  return jax.random.bernoulli(key, prob(mdp, seg_1, seg_2, model, tol=tol))


def fit_reward(key: jax.Array, features: jax.typing.ArrayLike,
               segments: tuple[Segment, Segment],
               labels: jax.typing.ArrayLike, model: str, *,
               mdp: mdp_lib.TabularMDP,
               pair_weights: jax.typing.ArrayLike | None = None,
               l2: float = 0.0,
               max_iter: int = 200, n_starts: int = 8,
               tol: float = 1e-4) -> jax.Array:
  r"""Maximum-likelihood reward weights under the regret or PR model.

  The reward is linear, :math:`r_w = \Phi w` (``features @ w``), in the
  transitions, discount and terminal states of ``mdp`` (its rewards are
  ignored). With :math:`d_p(w)` the score difference of pair ``p`` under
  ``model`` (:func:`prob`), minimises by L-BFGS

  .. math:: L(w) = -\frac{1}{\sum_p c_p}\sum_p c_p\bigl[y_p\log\sigma(d_p)
            + (1-y_p)\log\sigma(-d_p)\bigr] + \tfrac{\ell_2}{2}\|w\|^2,

  from ``n_starts`` points :math:`w_0 \sim \mathcal{N}(0, I)` drawn from
  ``key`` (in parallel, with ``vmap``), keeping the lowest loss. The
  partial-return loss is convex in :math:`w`; the regret loss is not (the
  optimal policy, hence :math:`A^*`, changes with :math:`w`), and a single
  start can stop in a local minimum, hence the restarts. Labels may be soft
  (probabilities). The pair weights :math:`c_p` (``pair_weights``, default 1)
  let data sets of different sizes share one shape, so that one ``vmap``
  fits them all: pad to a common ``P`` and give the padding weight 0.
  Under the regret model the gradient flows through value iteration
  (:func:`prefsim.mdp.value_iteration`).

  Jittable and vmappable (over MDPs, features, segments, labels,
  ``pair_weights`` and keys; ``model``, ``max_iter`` and ``n_starts``
  static); under ``jit``/``vmap`` values are not checked (see Raises).

  Args:
    key: a ``jax.random`` key (the starting point).
    features: :math:`\Phi`, shape [S, A, F] or [S, A, S, F].
    segments: ``(seg_1, seg_2)``, each ``(states [P, T+1], actions [P, T])``.
    labels: preference for segment 1, in [0, 1], shape [P].
    model: ``"regret"`` or ``"partial_return"``.
    mdp: the dynamics (keyword only).
    pair_weights: :math:`c_p \ge 0`, shape [P], not all 0; default all 1.
    l2: the L2 penalty.
    max_iter: L-BFGS iterations.
    n_starts: number of random starting points (Python int).
    tol: tolerance of value iteration.

  Returns:
    The weights :math:`w`, shape [F].

  Raises:
    ValueError: an unknown ``model``; features not [S, A, F] or
      [S, A, S, F]; labels outside [0, 1] or not [P]; ``pair_weights``
      not [P], negative or all zero; bad segments (as
      :func:`partial_return`).

  Tests:
    tests/models/test_regret.py::test_regret_fit_recovers_the_optimal_policy,
    tests/models/test_regret.py::test_fit_weights_equal_fitting_the_subset
  """
  _check_model(model)
  s, a = mdp_lib.check_mdp(mdp)
  if np.ndim(features) not in (3, 4) or np.shape(features)[:2] != (s, a) or (
      np.ndim(features) == 4 and np.shape(features)[2] != s):
    raise ValueError(f"features must have shape [S, A, F] or [S, A, S, F] "
                     f"with S = {s}, A = {a}; got {np.shape(features)}")
  seg_1, seg_2 = segments
  dummy = mdp._replace(rewards=jnp.zeros(np.shape(features)[:-1],
                                         mdp.transitions.dtype))
  _check_segments(dummy, *seg_1)
  _check_segments(dummy, *seg_2)
  n_pairs = np.shape(seg_1[0])[:-1]
  if np.shape(labels) != n_pairs:
    raise ValueError(f"labels must have shape {n_pairs}, got "
                     f"{np.shape(labels)}")
  _checks.check_in_range("labels", labels, 0.0, 1.0)
  dt = mdp.transitions.dtype
  if pair_weights is None:
    pair_weights = jnp.ones(n_pairs, dt)
  if np.shape(pair_weights) != n_pairs:
    raise ValueError(f"pair_weights must have shape {n_pairs}, got "
                     f"{np.shape(pair_weights)}")
  _checks.check_nonnegative("pair_weights", pair_weights)
  if _checks.is_concrete(pair_weights) and not np.any(
      np.asarray(pair_weights) > 0):
    raise ValueError("pair_weights must not all be 0")
  _checks.check_nonnegative("l2", l2)
  n_starts = _checks.check_static_int("n_starts", n_starts)
  return _fit(key, jnp.asarray(features, dt), seg_1, seg_2,
              jnp.asarray(labels, dt), jnp.asarray(pair_weights, dt), mdp, l2,
              max_iter, tol, model, n_starts)


@functools.partial(jax.jit, static_argnames=("max_iter", "model", "n_starts"))
def _fit(key, features, seg_1, seg_2, labels, pair_weights, mdp, l2, max_iter,
         tol, model, n_starts):
  w0 = jax.random.normal(key, (n_starts, features.shape[-1]), features.dtype)
  c = pair_weights / jnp.sum(pair_weights)

  def loss(w):
    d = _score_gap(mdp._replace(rewards=features @ w), seg_1, seg_2, model,
                   tol)
    nll = -jnp.sum(c * (labels * log_sigmoid(d)
                        + (1 - labels) * log_sigmoid(-d)))
    return nll + 0.5 * l2 * jnp.sum(w ** 2)

  w, _ = jax.vmap(lambda x: _optim.minimize_lbfgs(
      loss, x, max_iter=max_iter, tol=1e-6))(w0)
  return w[jnp.argmin(jax.vmap(loss)(w))]
