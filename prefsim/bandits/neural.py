r"""APOHF and its baselines: dueling bandits that learn a utility model.

Each round a learner picks a pair of arms (prompts) ``(a, b)``, observes one
Bradley-Terry duel (:func:`prefsim.bandits.feedback`) and reports the arm it
believes best. The algorithms here learn a model :math:`h(x; \theta)` of the
latent utility from all duels so far,

.. math::
   \mathcal L_t(\theta) = -\frac1n \sum_{s=1}^{n}
     \log\sigma\bigl(h(x_{w_s};\theta) - h(x_{l_s};\theta)\bigr)
     + \frac{\lambda_{\mathrm{wd}}}{2}\lVert\theta\rVert^2

(winner :math:`w_s`, loser :math:`l_s`), and pick the pair by the APOHF rule
(Lin et al. 2024, the APOHF algorithm; its number in the paper unverified):

.. math::
   a_t = \arg\max_x h(x;\theta_t),\qquad
   b_t = \arg\max_{x \ne a_t}\ h(x;\theta_t)
     + \sqrt{\nu\,(g(x) - g(a_t))^\top U_t^{-1} (g(x) - g(a_t))},

   U_t = \lambda I + \sum_{s} (g(x_{s,1}) - g(x_{s,2}))(g(x_{s,1}) - g(x_{s,2}))^\top,

with :math:`g(x) = \nabla_\theta h(x; \theta_t)` (the neural tangent
features). The first arm is greedy; the second is optimistic *relative to the
first*: the bonus is zero at :math:`a_t` and large where the model has seen
few comparisons along :math:`g(x) - g(a_t)`.

* :func:`apohf` — :math:`h` a ReLU MLP (D→32→32→1), retrained each round from
  the same initialisation by a fixed number of Adam steps (weight decay
  :math:`\lambda/(n+50)`), :math:`U_t` diagonal (the full matrix has
  :math:`p^2` entries for :math:`p \approx 2.6\cdot 10^4` parameters), the
  reported arm the model's argmax over the arms queried so far.
* :func:`linear_dueling` — the same rule with :math:`h(x) = \theta^\top x`,
  :math:`g(x) = x`, :math:`\theta_t` the regularised MLE (L-BFGS), and
  :math:`U_t` full (default) or diagonal.
* :func:`double_ts` — ensemble Thompson sampling: two different members of
  an ensemble of MLPs, each arm the argmax of one member.
* :func:`random_pair` — a uniformly random pair; reports its winner.
* Building blocks: :func:`diag_bonus`, :func:`gram_bonus`,
  :func:`gram_update`, :func:`second_arm`, :func:`mlp_init`,
  :func:`fit_mlp`.

Every algorithm is a :class:`prefsim.Algorithm` over a
:class:`~prefsim.bandits.DuelingProblem`, vmappable over seeds by
:func:`prefsim.sweep`; ``init`` queries ``n_init`` uniformly random pairs
(APOHF's initial pairs; not counted as rounds) and each ``step`` is one round
with ``info`` from :func:`prefsim.bandits.regret_info` (``"pair"``,
``"reported_regret"``, ``"average_regret"``, ``"weak_regret"``,
``"strong_regret"``). The model-based ones store every duel in a buffer of
``n_init + horizon`` slots: run them for at most ``horizon`` steps (later
duels are not stored, so the model stops learning).

Where we follow the authors' code rather than the paper's text, we say so.
The details verified in their code (xqlin98/APOHF,
``Induction/experiments/LlamaForMLPRegression.py``, class ``NeuralDBDiag``,
and ``run_dbandits_po.sh``): ν = 1, λ = 0.1, 5 initial pairs, 200 prompts,
150 queries in all (the 5 initial pairs included), 1000 full-batch Adam steps
per round at learning rate 1e-3 with (coupled, PyTorch-style) weight decay
λ/(n+50), every round from the same initialisation (weights and biases
N(0, 1)); :math:`U_t` the diagonal of :math:`\lambda I + \sum_s (g_{s,1} -
g_{s,2})^{\otimes 2}` with the gradients at the *current* :math:`\theta_t`;
the bonus :math:`\sqrt{\nu \sum_j (g_j(x) - g_j(a_t))^2 / U_{jj}}`; the
reported prompt the argmax of :math:`h` over the queried prompts. Their
linear baseline omits λ (:math:`U = \mathrm{diag}(\sum_s z_s z_s^\top) +
10^{-10}`), their DoubleTS trains ten identically initialised members; ours
differ as documented at each function. The paper's equation numbers for
these formulas are unverified (the stored text of arXiv:2405.17346 reached
only its abstract).

Shapes: ``K`` arms, ``D`` features, ``P`` model parameters, ``N`` buffer
slots (``n_init + horizon``), ``M`` ensemble members.

References:
  Lin, Dai, Verma, Ng, Jaillet, Low. Prompt Optimization with Human Feedback.
  arXiv:2405.17346 (2024) (APOHF); code github.com/xqlin98/APOHF.
  Wu, Liu. Double Thompson Sampling for Dueling Bandits. NeurIPS 2016.
  Saha. Optimal Algorithms for Stochastic Contextual Preference Bandits.
  NeurIPS 2021 (linear dueling bandits).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from prefsim import _checks
from prefsim import _optim
from prefsim.bandits import env
from prefsim.models import bradley_terry
from prefsim.run import Algorithm

__all__ = [
    "EnsembleState",
    "History",
    "LinearState",
    "NeuralState",
    "apohf",
    "diag_bonus",
    "double_ts",
    "fit_mlp",
    "gram_bonus",
    "gram_update",
    "linear_dueling",
    "mlp_init",
    "random_pair",
    "second_arm",
]

Params = Any


# --------------------------------------------------------------------------
# States
# --------------------------------------------------------------------------


class History(NamedTuple):
  """The duels so far, in a fixed-size buffer.

  Attributes:
    pairs: queried pairs, int32 [N, 2]; slots ``>= n`` hold ``(0, 0)``, a
      self-duel whose BT log-likelihood :math:`\\log\\sigma(0)` is constant.
    wins: bool [N], True where ``pairs[s, 0]`` won.
    n: int32 scalar, the number of duels stored.
    queried: bool [K], the arms in some stored duel.
  """

  pairs: jax.Array
  wins: jax.Array
  n: jax.Array
  queried: jax.Array


class NeuralState(NamedTuple):
  """State of :func:`apohf`: the history and the MLP.

  Attributes:
    history: the :class:`History`.
    params: the MLP fitted to the history (see :func:`mlp_init`).
    init_params: the initialisation every fit starts from.
  """

  history: History
  params: Params
  init_params: Params


class LinearState(NamedTuple):
  """State of :func:`linear_dueling`.

  Attributes:
    history: the :class:`History`.
    theta: the regularised MLE, [D].
    precision: the Gram matrix :math:`X V_t^{-1} X^\top` [K, K] (full
      covariance) or the diagonal :math:`U_t` [D] (diagonal).
  """

  history: History
  theta: jax.Array
  precision: jax.Array


class EnsembleState(NamedTuple):
  """State of :func:`double_ts`: the history and ``M`` MLPs.

  Attributes:
    history: the :class:`History`.
    params: the fitted members, every leaf with a leading axis [M].
    init_params: their initialisations, same structure.
  """

  history: History
  params: Params
  init_params: Params


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------


def _random_pairs(key: jax.Array, n_arms: int, n: int) -> jax.Array:
  """``n`` uniformly random pairs of distinct arms, int32 [n, 2]."""
  a_key, b_key = jax.random.split(key)
  a = jax.random.randint(a_key, (n,), 0, n_arms)
  b = (a + jax.random.randint(b_key, (n,), 1, n_arms)) % n_arms
  return jnp.stack([a, b], axis=-1).astype(jnp.int32)


def _history_init(key: jax.Array, problem: env.DuelingProblem, n_init: int,
                  size: int) -> History:
  """A buffer of ``size`` slots holding ``n_init`` random duels."""
  n_arms = problem.utilities.shape[0]
  pair_key, duel_key = jax.random.split(key)
  first = _random_pairs(pair_key, n_arms, n_init)
  wins = env.feedback(duel_key, problem, first[:, 0], first[:, 1])
  pairs = jnp.zeros((size, 2), jnp.int32).at[:n_init].set(first)
  queried = jnp.zeros((n_arms,), bool).at[first.reshape(-1)].set(True)
  return History(pairs, jnp.zeros((size,), bool).at[:n_init].set(wins),
                 jnp.asarray(n_init, jnp.int32), queried)


def _history_add(history: History, a: jax.Array, b: jax.Array,
                 win: jax.Array) -> History:
  """Stores the duel ``(a, b, win)`` in slot ``n`` (dropped when full)."""
  n = history.n
  return History(
      history.pairs.at[n].set(jnp.stack([a, b]).astype(jnp.int32),
                              mode="drop"),
      history.wins.at[n].set(win, mode="drop"),
      n + 1,
      history.queried.at[a].set(True).at[b].set(True))


def _winners_losers(history: History) -> tuple[jax.Array, jax.Array]:
  a, b = history.pairs[:, 0], history.pairs[:, 1]
  return jnp.where(history.wins, a, b), jnp.where(history.wins, b, a)


def _stored(history: History) -> jax.Array:
  """Float mask [N] of the filled slots."""
  slots = jnp.arange(history.pairs.shape[0])
  return (slots < history.n).astype(_checks.default_float())


def _report(scores: jax.Array, queried: jax.Array) -> jax.Array:
  """The argmax of ``scores`` over the queried arms."""
  return jnp.argmax(jnp.where(queried, scores, -jnp.inf))


def _check_common(horizon: Any, n_init: Any, nu: Any, lam: Any
                  ) -> tuple[int, int]:
  horizon = _checks.check_static_int("horizon", horizon)
  n_init = _checks.check_static_int("n_init", n_init)
  _checks.check_nonnegative("nu", nu)
  _checks.check_positive("lam", lam)
  return horizon, n_init


def _check_training(train_steps: Any, lr: Any) -> int:
  train_steps = _checks.check_static_int("train_steps", train_steps)
  _checks.check_positive("lr", lr)
  return train_steps


# --------------------------------------------------------------------------
# The selection rule
# --------------------------------------------------------------------------


def diag_bonus(features: jax.Array, first: jax.Array, u_diag: jax.Array, *,
               nu: float = 1.0) -> jax.Array:
  r"""APOHF's exploration bonus with a diagonal :math:`U`.

  .. math::
     \beta_k = \sqrt{\nu \sum_j \frac{(g_j(x_k) - g_j(x_{a}))^2}{U_{jj}}}

  Zero at the first arm ``a``.

  Args:
    features: :math:`g(x_k)` for every arm, shape [K, P].
    first: the first arm ``a`` (int scalar).
    u_diag: the diagonal of :math:`U`, shape [P], positive.
    nu: the exploration weight :math:`\nu \ge 0`.
  Returns:
    The bonus of every arm, shape [K].
  References:
    Lin et al. 2024, arXiv:2405.17346 (the second arm of APOHF); the
    diagonal form as in their code (``NeuralDBDiag.select``).
  Tests: tests/bandits/test_neural.py::test_bonus_shrinks_like_inverse_sqrt,
    tests/bandits/test_neural.py::test_bonus_zero_at_first_arm_and_pair_distinct.
  """
  diff = features - features[first]
  return jnp.sqrt(nu * jnp.sum(diff**2 / u_diag, axis=-1))


def gram_bonus(gram: jax.Array, first: jax.Array, *,
               nu: float = 1.0) -> jax.Array:
  r"""The full-covariance bonus from the Gram matrix :math:`W = XV^{-1}X^\top`.

  .. math::
     \beta_k = \sqrt{\nu\,(x_k - x_a)^\top V^{-1} (x_k - x_a)}
             = \sqrt{\nu\,(W_{kk} - 2W_{ka} + W_{aa})}

  Exactly zero at the first arm ``a``. For a pair compared ``n`` times along
  :math:`z = x_k - x_a` and nothing else, :math:`V = \lambda I + n z
  z^\top` and :math:`\beta_k = \sqrt{\nu \lVert z\rVert^2 / (\lambda +
  n\lVert z\rVert^2)} \le \sqrt{\nu / n}` (Sherman-Morrison).

  Args:
    gram: :math:`W = X V^{-1} X^\top`, shape [K, K] (see
      :func:`gram_update`).
    first: the first arm ``a`` (int scalar).
    nu: the exploration weight :math:`\nu \ge 0`.
  Returns:
    The bonus of every arm, shape [K]; a quadratic form that rounding makes
    slightly negative gives 0.
  References:
    Saha 2021, NeurIPS (the confidence width of a linear dueling bandit);
    Lin et al. 2024, arXiv:2405.17346 (APOHF).
  Tests: tests/bandits/test_neural.py::test_bonus_shrinks_like_inverse_sqrt,
    tests/bandits/test_neural.py::test_gram_update_matches_inverse.
  """
  quad = jnp.diag(gram) - 2.0 * gram[:, first] + gram[first, first]
  return jnp.sqrt(nu * jnp.maximum(quad, 0.0))


def gram_update(gram: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  r"""Sherman-Morrison on the Gram matrix: :math:`V \to V + zz^\top`, :math:`z = x_a - x_b`.

  With :math:`W = X V^{-1} X^\top` and :math:`w = XV^{-1}z = W_{:,a} -
  W_{:,b}`,

  .. math::
     X (V + zz^\top)^{-1} X^\top = W - \frac{w w^\top}{1 + w_a - w_b},

  :math:`O(K^2)` per comparison, whatever ``D`` (the bonus needs only
  :math:`W`). Start from :math:`W = XX^\top/\lambda`.

  Args:
    gram: :math:`W`, shape [K, K].
    a, b: the compared arms (int scalars).
  Returns:
    The updated :math:`W`, shape [K, K] (symmetrised).
  Tests: tests/bandits/test_neural.py::test_gram_update_matches_inverse.
  """
  w = gram[:, a] - gram[:, b]
  out = gram - jnp.outer(w, w) / (1.0 + w[a] - w[b])
  return 0.5 * (out + out.T)


def second_arm(scores: jax.Array, first: jax.Array) -> jax.Array:
  """The argmax of ``scores`` [K] over every arm but ``first``."""
  return jnp.argmax(scores.at[first].set(-jnp.inf))


# --------------------------------------------------------------------------
# The MLP model
# --------------------------------------------------------------------------


def mlp_init(key: jax.Array, dim: int, hidden: Sequence[int] = (32, 32), *,
             scale: float = 1.0) -> tuple[tuple[jax.Array, jax.Array], ...]:
  r"""APOHF's MLP initialisation: every weight and bias :math:`\mathcal N(0, s^2)`.

  The authors' code draws weights and biases from :math:`\mathcal N(0, 1)`
  (not PyTorch's default), so :math:`h` starts with outputs of size
  :math:`\sim\sqrt{H}` and the features :math:`g` are far from zero.

  Args:
    key: a ``jax.random`` key.
    dim: input dimension ``D`` (static).
    hidden: hidden widths, each ``>= 1``.
    scale: the standard deviation ``s > 0``.
  Returns:
    The layers ``((W_1, b_1), ..., (W_L, b_L))`` for
    :func:`prefsim.bandits.mlp`, the last of width 1.
  Tests: tests/bandits/test_neural.py::test_info_keys_and_regrets.
  """
  widths = (dim, *hidden, 1)
  dtype = _checks.default_float()
  layers = []
  for layer_key, fan_in, fan_out in zip(
      jax.random.split(key, len(widths) - 1), widths[:-1], widths[1:]):
    w_key, b_key = jax.random.split(layer_key)
    layers.append((scale * jax.random.normal(w_key, (fan_in, fan_out), dtype),
                   scale * jax.random.normal(b_key, (fan_out,), dtype)))
  return tuple(layers)


def fit_mlp(init_params: Params, embeddings: jax.Array, history: History, *,
            train_steps: int, lr: float, lam: float) -> Params:
  r"""Fits the MLP to the stored duels: full-batch Adam from ``init_params``.

  Minimises the mean BT loss plus APOHF's weight decay,

  .. math::
     \mathcal L(\theta) = -\frac1n\sum_{s<n}\log\sigma\bigl(h(x_{w_s}) -
       h(x_{l_s})\bigr) + \frac{\lambda}{2(n + 50)}\lVert\theta\rVert^2,

  by ``train_steps`` Adam steps (the decay enters the gradient, as PyTorch's
  ``Adam(weight_decay=λ/(n+50))`` of the authors' code). A fixed number of
  steps in a ``lax.fori_loop``: jittable and vmappable.

  Args:
    init_params: the starting MLP.
    embeddings: arm features, shape [K, D].
    history: the duels (only the first ``history.n`` slots count).
    train_steps: Adam steps (static).
    lr: Adam's learning rate.
    lam: :math:`\lambda`.
  Returns:
    The fitted MLP, structured like ``init_params``.
  Tests: tests/bandits/test_neural.py::test_fit_mlp_learns_the_order.
  """
  winners, losers = _winners_losers(history)
  n = history.n.astype(embeddings.dtype)
  decay = lam / (n + 50.0)
  opt = optax.adam(lr)

  def loss(params):
    u = env.mlp(params, embeddings)
    # Empty slots are self-duels (0, 0): constant log σ(0), zero gradient.
    nll = -bradley_terry.log_likelihood(u, winners, losers) / n
    sq = sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(params))
    return nll + 0.5 * decay * sq

  def body(_, carry):
    params, opt_state = carry
    updates, opt_state = opt.update(jax.grad(loss)(params), opt_state)
    return optax.apply_updates(params, updates), opt_state

  params, _ = jax.lax.fori_loop(0, train_steps, body,
                                (init_params, opt.init(init_params)))
  return params


def _tangent_blocks(params: Params, embeddings: jax.Array
                    ) -> tuple[jax.Array, list[tuple[jax.Array, jax.Array]]]:
  r"""The MLP's outputs and its gradient features, one dense layer at a time.

  For layer ``l`` with input :math:`\tilde a_{l-1} = (a_{l-1}, 1)` and
  backpropagated signal :math:`\delta_l = \partial h / \partial z_l`, the
  gradient of :math:`h(x_k)` with respect to :math:`(W_l; b_l)` is the outer
  product :math:`\tilde a_{l-1,k} \otimes \delta_{l,k}`: the features
  :math:`g(x_k)` [P] are never materialised.

  Returns:
    ``(h [K], [(inputs [K, H_{l-1} + 1], signals [K, H_l]) per layer])``.
  """
  ones = jnp.ones(embeddings.shape[:1] + (1,), embeddings.dtype)
  inputs, pre = [], []
  a = embeddings
  for w, b in params:
    inputs.append(jnp.concatenate([a, ones], axis=-1))
    pre.append(a @ w + b)
    a = jax.nn.relu(pre[-1])
  signals = [ones]
  for layer in range(len(params) - 1, 0, -1):
    signals.append((signals[-1] @ params[layer][0].T) * (pre[layer - 1] > 0))
  return pre[-1][:, 0], list(zip(inputs, signals[::-1]))


def _mlp_bonus(blocks: list[tuple[jax.Array, jax.Array]], first: jax.Array,
               history: History, *, nu: float, lam: float) -> jax.Array:
  r""":func:`diag_bonus` for the MLP's features, by matrix products.

  Per layer, with :math:`g = \tilde a \otimes \delta` and the stored pairs
  :math:`(p_s, q_s)` (mask :math:`m_s`), squares of differences of outer
  products expand into products of small matrices:

  .. math::
     U = \lambda + \sum_s m_s\bigl(\tilde a_{p_s}^{2} \otimes \delta_{p_s}^{2}
       + \tilde a_{q_s}^{2} \otimes \delta_{q_s}^{2}
       - 2\, \tilde a_{p_s}\tilde a_{q_s} \otimes \delta_{p_s}\delta_{q_s}\bigr),

     \beta_k^2 = \nu \sum_{\text{layers}} \bigl[(\tilde a_k^2 R)\cdot\delta_k^2
       - 2 (\tilde a_k \tilde a_f R)\cdot(\delta_k\delta_f)
       + (\tilde a_f^2 R)\cdot\delta_f^2\bigr],\quad R = 1/U,

  (squares and products elementwise, :math:`f` the first arm), costing
  :math:`O((K + N) \cdot \#\text{weights})` flops and no [K, P] array.
  Rounding can leave :math:`\beta^2` slightly negative near the first arm:
  it is clamped at 0.
  """
  p, q = history.pairs[:, 0], history.pairs[:, 1]
  mask = _stored(history)[:, None]
  total = 0.0
  for a, d in blocks:
    a_p, a_q, d_p, d_q = a[p], a[q], d[p], d[q]
    u = (lam + (mask * a_p**2).T @ d_p**2 + (mask * a_q**2).T @ d_q**2
         - 2.0 * (mask * a_p * a_q).T @ (d_p * d_q))
    r = 1.0 / u
    a_f, d_f = a[first], d[first]
    total = (total + jnp.sum(((a**2) @ r) * d**2, axis=-1)
             - 2.0 * jnp.sum(((a * a_f) @ r) * (d * d_f), axis=-1)
             + (a_f**2) @ r @ d_f**2)
  return jnp.sqrt(nu * jnp.maximum(total, 0.0))


# --------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------


def apohf(horizon: int, *, n_init: int = 5, hidden: Sequence[int] = (32, 32),
          nu: float = 1.0, lam: float = 0.1, train_steps: int = 1000,
          lr: float = 1e-3, init_scale: float = 1.0) -> Algorithm:
  r"""APOHF (Lin et al. 2024): neural dueling UCB for prompt selection.

  Round ``t`` (one ``step``), with :math:`\theta_t` the MLP fitted to every
  stored duel and :math:`g = \nabla_\theta h(\cdot;\theta_t)`:

  .. math::
     a_t = \arg\max_k h(x_k;\theta_t),\qquad
     b_t = \arg\max_{k \ne a_t} h(x_k;\theta_t)
       + \sqrt{\nu \sum_j (g_j(x_k) - g_j(x_{a_t}))^2 / U_{jj}},

     U_{jj} = \lambda + \sum_{s<n} (g_j(x_{s,1}) - g_j(x_{s,2}))^2;

  then one duel :math:`y_t \sim \mathrm{Bernoulli}(\sigma(u(a_t) - u(b_t)))`
  is stored, :math:`\theta_{t+1}` = :func:`fit_mlp` from the same
  initialisation :math:`\theta_0`, and the reported arm is
  :math:`\hat x_t = \arg\max h(\cdot;\theta_{t+1})` over the arms queried so
  far. (Their code reports with :math:`\theta_t`, before fitting the new
  duel; we report with the freshest model.) ``init`` draws
  :math:`\theta_0` (per seed; their code fixes one seed for every run),
  queries ``n_init`` random pairs and fits.

  Args:
    horizon: the rounds the algorithm will be run for, ``>= 1`` (sizes the
      buffer: ``n_init + horizon`` slots).
    n_init: initial random pairs, ``>= 1``.
    hidden: the MLP's hidden widths.
    nu: exploration weight :math:`\nu \ge 0`.
    lam: :math:`\lambda > 0`, in :math:`U` and in the weight decay.
    train_steps: Adam steps per fit (1000 in the paper's code).
    lr: Adam's learning rate.
    init_scale: standard deviation of the initial weights and biases.
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`NeuralState` and the
    info of :func:`prefsim.bandits.regret_info`.
  Raises:
    TypeError, ValueError: ``horizon``, ``n_init`` or ``train_steps`` not an
      int ``>= 1``; ``nu < 0``; ``lam``, ``lr`` or ``init_scale`` not
      positive. The problem is validated (shapes; finite values when
      concrete) when ``init`` is traced.
  References:
    Lin et al. 2024, arXiv:2405.17346 (APOHF); code xqlin98/APOHF
    ``NeuralDBDiag`` and ``run_dbandits_po.sh`` (hyperparameters).
  Tests: tests/bandits/test_neural.py::test_info_keys_and_regrets,
    tests/bandits/test_neural.py::test_bonus_zero_at_first_arm_and_pair_distinct,
    tests/bandits/test_neural.py::test_apohf_beats_random_on_nonlinear.
  """
  horizon, n_init = _check_common(horizon, n_init, nu, lam)
  train_steps = _check_training(train_steps, lr)
  hidden = tuple(_checks.check_static_int("hidden width", h) for h in hidden)
  _checks.check_positive("init_scale", init_scale)

  def fit(init_params, problem, history):
    return fit_mlp(init_params, problem.embeddings, history,
                   train_steps=train_steps, lr=lr, lam=lam)

  def init(key, problem):
    _, dim = env.check_problem(problem)
    theta_key, pair_key = jax.random.split(key)
    init_params = mlp_init(theta_key, dim, hidden, scale=init_scale)
    history = _history_init(pair_key, problem, n_init, n_init + horizon)
    return NeuralState(history, fit(init_params, problem, history),
                       init_params)

  def step(key, state, problem):
    x, history = problem.embeddings, state.history
    h, blocks = _tangent_blocks(state.params, x)
    first = jnp.argmax(h)
    bonus = _mlp_bonus(blocks, first, history, nu=nu, lam=lam)
    second = second_arm(h + bonus, first)
    history = _history_add(history, first, second,
                           env.feedback(key, problem, first, second))
    params = fit(state.init_params, problem, history)
    report = _report(env.mlp(params, x), history.queried)
    return (NeuralState(history, params, state.init_params),
            env.regret_info(problem, first, second, report))

  return Algorithm(init, step)


def _bt_map(embeddings: jax.Array, history: History, lam: float,
            theta0: jax.Array, max_iter: int) -> jax.Array:
  r"""The regularised BT MLE :math:`\arg\min -\ell(X\theta) + \frac\lambda2\lVert\theta\rVert^2`."""
  winners, losers = _winners_losers(history)

  def objective(theta):
    # Empty slots are self-duels: constant, zero gradient.
    return (-bradley_terry.log_likelihood(embeddings @ theta, winners, losers)
            + 0.5 * lam * theta @ theta)

  theta, _ = _optim.minimize_lbfgs(objective, theta0, max_iter=max_iter,
                                   tol=1e-3)
  return theta


def linear_dueling(horizon: int, *, n_init: int = 5, nu: float = 1.0,
                   lam: float = 0.1, covariance: str = "full",
                   max_iter: int = 100) -> Algorithm:
  r"""Linear dueling bandit: APOHF's pair rule on the raw features.

  With :math:`h(x) = \theta^\top x` the features are :math:`g(x) = x` and

  .. math::
     \theta_t = \arg\min_\theta -\sum_{s<n} \log\sigma(\theta^\top(x_{w_s} -
       x_{l_s})) + \frac\lambda2\lVert\theta\rVert^2,\qquad
     V_t = \lambda I + \sum_{s<n} z_s z_s^\top,\ z_s = x_{s,1} - x_{s,2},

     a_t = \arg\max_k \theta_t^\top x_k,\qquad
     b_t = \arg\max_{k\ne a_t} \theta_t^\top x_k
       + \sqrt{\nu (x_k - x_{a_t})^\top V_t^{-1} (x_k - x_{a_t})};

  ``covariance="diag"`` replaces :math:`V_t^{-1}` by
  :math:`\mathrm{diag}(V_t)^{-1}` as in the authors' code (which also drops
  :math:`\lambda` there and fits :math:`\theta` by 1000 Adam steps; we keep
  :math:`\lambda` and fit the MLE by L-BFGS, warm-started at the last
  :math:`\theta`). On raw embeddings the diagonal ignores correlations
  between coordinates and explores too little. The full form keeps only
  the Gram matrix :math:`XV_t^{-1}X^\top` [K, K] (:func:`gram_update`,
  :func:`gram_bonus`): :math:`O(K^2)` per round instead of :math:`O(KD^2)`.
  The reported arm is the argmax of :math:`\theta^\top x` over the arms
  queried so far.

  Args:
    horizon: rounds to run, ``>= 1`` (buffer size ``n_init + horizon``).
    n_init: initial random pairs, ``>= 1``.
    nu: exploration weight :math:`\nu \ge 0`.
    lam: ridge :math:`\lambda > 0`.
    covariance: ``"full"`` or ``"diag"``.
    max_iter: L-BFGS iterations per fit (it stops earlier once the largest
      gradient entry is below 1e-3).
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`LinearState`.
  Raises:
    TypeError, ValueError: bad ``horizon``, ``n_init``, ``nu``, ``lam``,
      ``max_iter``, or ``covariance`` not ``"full"``/``"diag"``.
  References:
    Saha 2021, NeurIPS; Lin et al. 2024, arXiv:2405.17346 (the linear
    dueling bandit baseline) and code ``LinearDBDiag``.
  Tests: tests/bandits/test_neural.py::test_linear_noiseless_finds_best_arm,
    tests/bandits/test_neural.py::test_info_keys_and_regrets.
  """
  horizon, n_init = _check_common(horizon, n_init, nu, lam)
  max_iter = _checks.check_static_int("max_iter", max_iter)
  if covariance not in ("full", "diag"):
    raise ValueError(f"covariance must be 'full' or 'diag', got "
                     f"{covariance!r}")
  full = covariance == "full"

  def add_precision(precision, x, a, b):
    return (gram_update(precision, a, b) if full
            else precision + (x[a] - x[b])**2)

  def init(key, problem):
    _, dim = env.check_problem(problem)
    x = problem.embeddings
    history = _history_init(key, problem, n_init, n_init + horizon)
    precision = x @ x.T / lam if full else jnp.full((dim,), lam, x.dtype)
    precision = jax.lax.fori_loop(
        0, n_init, lambda s, p: add_precision(p, x, *history.pairs[s]),
        precision)
    theta = _bt_map(x, history, lam, jnp.zeros(dim, x.dtype), max_iter)
    return LinearState(history, theta, precision)

  def step(key, state, problem):
    x, history = problem.embeddings, state.history
    mean = x @ state.theta
    first = jnp.argmax(mean)
    bonus = (gram_bonus(state.precision, first, nu=nu) if full
             else diag_bonus(x, first, state.precision, nu=nu))
    second = second_arm(mean + bonus, first)
    history = _history_add(history, first, second,
                           env.feedback(key, problem, first, second))
    precision = add_precision(state.precision, x, first, second)
    theta = _bt_map(x, history, lam, state.theta, max_iter)
    report = _report(x @ theta, history.queried)
    return (LinearState(history, theta, precision),
            env.regret_info(problem, first, second, report))

  return Algorithm(init, step)


def double_ts(horizon: int, *, n_members: int = 10, n_init: int = 5,
              hidden: Sequence[int] = (32, 32), lam: float = 0.1,
              train_steps: int = 1000, lr: float = 1e-3,
              init_scale: float = 1.0) -> Algorithm:
  r"""Double Thompson sampling with an ensemble of MLPs.

  ``M`` MLPs with independent initialisations :math:`\theta_0^{(m)}`, each
  fitted every round by :func:`fit_mlp` from its own initialisation; the
  spread of the ensemble stands in for the posterior. Each round draws two
  different members :math:`m_1 \ne m_2` uniformly and queries

  .. math::
     a_t = \arg\max_k h(x_k;\theta^{(m_1)}),\qquad
     b_t = \arg\max_{k \ne a_t} h(x_k;\theta^{(m_2)}),

  and reports the argmax of the ensemble mean over the arms queried so far.
  (The authors' code initialises all ten members identically, trains a
  random member on each minibatch with a pull toward the shared
  initialisation, redraws a member until its argmax differs from
  :math:`a_t` (at most five times, then a random arm), and reports with a
  random member; the independent initialisations, the exclusion of
  :math:`a_t` and the mean are ours.)

  Args:
    horizon: rounds to run, ``>= 1``.
    n_members: ensemble size ``M >= 2``.
    n_init: initial random pairs, ``>= 1``.
    hidden: the MLPs' hidden widths.
    lam: :math:`\lambda > 0` of the weight decay :math:`\lambda/(n+50)`.
    train_steps: Adam steps per fit and member.
    lr: Adam's learning rate.
    init_scale: standard deviation of the initial weights and biases.
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`EnsembleState`.
  Raises:
    TypeError, ValueError: bad ``horizon``, ``n_members < 2``, ``n_init``,
      ``lam``, ``train_steps``, ``lr`` or ``init_scale``.
  References:
    Wu and Liu, NeurIPS 2016 (Double Thompson Sampling); Lin et al. 2024,
    arXiv:2405.17346 and code ``DoubleTS`` (the neural ensemble
    version).
  Tests: tests/bandits/test_neural.py::test_info_keys_and_regrets.
  """
  horizon, n_init = _check_common(horizon, n_init, 0.0, lam)
  n_members = _checks.check_static_int("n_members", n_members, 2)
  train_steps = _check_training(train_steps, lr)
  hidden = tuple(_checks.check_static_int("hidden width", h) for h in hidden)
  _checks.check_positive("init_scale", init_scale)

  def fit(init_params, problem, history):
    return jax.vmap(lambda p: fit_mlp(
        p, problem.embeddings, history, train_steps=train_steps, lr=lr,
        lam=lam))(init_params)

  def scores(params, x):
    return jax.vmap(env.mlp, in_axes=(0, None))(params, x)   # [M, K]

  def init(key, problem):
    _, dim = env.check_problem(problem)
    theta_key, pair_key = jax.random.split(key)
    init_params = jax.vmap(lambda k: mlp_init(k, dim, hidden,
                                              scale=init_scale))(
        jax.random.split(theta_key, n_members))
    history = _history_init(pair_key, problem, n_init, n_init + horizon)
    return EnsembleState(history, fit(init_params, problem, history),
                         init_params)

  def step(key, state, problem):
    member_key, duel_key = jax.random.split(key)
    x, history = problem.embeddings, state.history
    h = scores(state.params, x)
    m = jax.random.choice(member_key, n_members, (2,), replace=False)
    first = jnp.argmax(h[m[0]])
    second = second_arm(h[m[1]], first)
    history = _history_add(history, first, second,
                           env.feedback(duel_key, problem, first, second))
    params = fit(state.init_params, problem, history)
    report = _report(jnp.mean(scores(params, x), axis=0), history.queried)
    return (EnsembleState(history, params, state.init_params),
            env.regret_info(problem, first, second, report))

  return Algorithm(init, step)


def random_pair() -> Algorithm:
  r"""Uniformly random pairs of distinct arms; reports the winner of each duel.

  The "Random" baseline of Lin et al. (2024) as in their code: no model;
  after each duel the reported arm is its winner, so the reported regret
  stays at its initial level in expectation, about
  :math:`\mathbb E[u^* - u(\text{winner of a random pair})]`.

  Returns:
    An :class:`prefsim.Algorithm`; the state is the round count (int32).
  References:
    Lin et al. 2024, arXiv:2405.17346 (baselines); code
    ``run_dbandits_po.py``.
  Tests: tests/bandits/test_neural.py::test_info_keys_and_regrets.
  """

  def init(key, problem):
    env.check_problem(problem)
    return jnp.zeros((), jnp.int32)

  def step(key, state, problem):
    pair_key, duel_key = jax.random.split(key)
    pair = _random_pairs(pair_key, problem.utilities.shape[0], 1)[0]
    win = env.feedback(duel_key, problem, pair[0], pair[1])
    report = jnp.where(win, pair[0], pair[1])
    return state + 1, env.regret_info(problem, pair[0], pair[1], report)

  return Algorithm(init, step)
