"""Tests of prefsim.offline: offline preference optimisation as an Algorithm."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import prefsim
from prefsim import loglinear
from prefsim import losses
from prefsim import offline
from prefsim import testing as pt
from prefsim.run import _sweep_jit

X, K, D = 20, 5, 3
BETA, THETA_NORM = 0.5, 2.0
LR = 4.0  # <= 1/L for DPO/cDPO/rDPO here: L <= beta^2 lambda_max / 4 ~ 0.2.


def _problem(eps=0.0, seed=0):
  return loglinear.make_problem(jax.random.key(seed), X, K, D, beta=BETA,
                                theta_norm=THETA_NORM, eps=eps, ref_scale=1.0)


def _np_softplus(x):
  return np.logaddexp(0.0, x)


# Per-example losses as functions of s = beta * margin, written out
# independently of prefsim.losses (THEORY.md §2).
_NP_LOSSES = {
    "dpo": lambda s, eps: _np_softplus(-s),
    "cdpo": lambda s, eps: (1 - eps) * _np_softplus(-s) + eps * _np_softplus(s),
    "rdpo": lambda s, eps: ((1 - eps) * _np_softplus(-s)
                            - eps * _np_softplus(s)) / (1 - 2 * eps),
}


def _np_pair_law(problem):
  """(M[x,i,j], z[x,i,j,:]): probability that a noisy comparison has i chosen
  over j at prompt x, and the feature differences phi_i - phi_j, float64.

  Pairs: x uniform, y1 ~ pi_ref, y2 ~ pi_ref given y2 != y1; i is chosen with
  the noisy probability q_ij = eps + (1 - 2 eps) sigma(r_i - r_j) whichever
  slot it came in.
  """
  features, ref, theta_star, beta, eps = [np.asarray(a, np.float64)
                                          for a in problem]
  pr = np.exp(ref)
  w = pr[:, :, None] * pr[:, None, :] / (1 - pr[:, :, None]) / X
  idx = np.arange(K)
  w[:, idx, idx] = 0.0
  r = beta * features @ theta_star
  p = 1 / (1 + np.exp(-(r[:, :, None] - r[:, None, :])))
  q = eps + (1 - 2 * eps) * p
  z = features[:, :, None, :] - features[:, None, :, :]
  return (w + np.swapaxes(w, 1, 2)) * q, z


def _np_population_optimum(name, problem):
  """argmin_theta sum M[x,i,j] loss(beta theta.z_ij), by BFGS in float64."""
  m, z = _np_pair_law(problem)
  beta, eps = float(problem.beta), float(problem.eps)
  fn = _NP_LOSSES[name]

  def objective(theta):
    return np.sum(m * fn(beta * z @ theta, eps))

  res = scipy.optimize.minimize(objective, np.zeros(D), method="BFGS",
                                options={"gtol": 1e-10})
  return res.x


def _final_theta(loss, problem, n_pairs, n_seeds, n_steps=300, key=0,
                 **kwargs):
  alg = offline.offline_po(loss, n_pairs=n_pairs, lr=LR, **kwargs)
  finals, infos = prefsim.sweep(jax.random.key(key), alg, problem, n_steps,
                                n_seeds)
  return np.asarray(finals.theta, np.float64), infos


def test_mean_loss_on_counts_equals_mean_over_pairs():
  problem = _problem(eps=0.3)
  data = loglinear.sample_dataset(jax.random.key(1), problem, 700)
  counts = offline.comparison_counts(data, X, K)
  np.testing.assert_allclose(counts.sum(), 700)
  assert np.all(np.asarray(counts)[:, np.arange(K), np.arange(K)] == 0)
  theta = jnp.array([0.7, -1.2, 2.0])
  h = loglinear.logratios(theta, problem)
  hw, hl = h[data.prompt, data.chosen], h[data.prompt, data.rejected]
  cases = [(losses.dpo, {}), (losses.ipo, {}), (losses.rdpo, {"eps": 0.3}),
           (losses.cdpo, {"eps": 0.1})]
  for loss, hyper in cases:
    direct = jnp.mean(loss(hw, hl, beta=problem.beta, **hyper))
    ours = offline.mean_loss(loss, theta, counts, problem, **hyper)
    np.testing.assert_allclose(ours, direct, rtol=2e-5, atol=1e-6)

    # Gradients too: one full-batch step is the step on the per-pair mean.
    def per_pair_mean(t, loss=loss, hyper=hyper):
      h = loglinear.logratios(t, problem)
      return jnp.mean(loss(h[data.prompt, data.chosen],
                           h[data.prompt, data.rejected], beta=problem.beta,
                           **hyper))

    g_direct = jax.jit(jax.grad(per_pair_mean))(theta)
    g_ours = jax.jit(jax.grad(lambda t, loss=loss, hyper=hyper:
                              offline.mean_loss(loss, t, counts, problem,
                                                **hyper)))(theta)
    np.testing.assert_allclose(g_ours, g_direct, rtol=2e-4, atol=1e-6)


def _asymmetric_loss(chosen, rejected, *, beta):
  """A per-example loss that is not a function of the margin alone."""
  return beta * (chosen - 2.0 * rejected) ** 2 + jnp.sin(3.0 * chosen)


@pytest.mark.parametrize("loss, hyper", [
    (losses.dpo, {}), (losses.cdpo, {"eps": 0.1}), (losses.rdpo, {"eps": 0.3}),
    (losses.ipo, {}), (losses.apo_zero, {}), (losses.sppo_hard, {}),
    (_asymmetric_loss, {}),
])
def test_mean_loss_and_grad_equals_autodiff(loss, hyper):
  """The written-out gradient (row sums only, the loss evaluated again on
  the swapped tables, the log-ratios' pullback by hand) equals reverse mode
  through mean_loss, also for losses whose two slots enter differently
  (apo_zero, sppo_hard, an asymmetric one) and a non-uniform pi_ref."""
  problem = _problem(eps=0.3)
  data = loglinear.sample_dataset(jax.random.key(1), problem, 700)
  counts = offline.comparison_counts(data, X, K)
  for theta in (jnp.array([0.7, -1.2, 2.0]), jnp.array([-3.0, 0.5, 4.0])):
    value, grad = jax.jit(jax.value_and_grad(
        lambda t: offline.mean_loss(loss, t, counts, problem, **hyper)))(theta)
    ours = jax.jit(lambda t: offline.mean_loss_and_grad(
        loss, t, counts, problem, **hyper))(theta)
    np.testing.assert_allclose(ours[0], value, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], grad, rtol=2e-4, atol=1e-5)
    assert float(jnp.abs(grad).max()) > 1e-3  # a gradient worth comparing


def test_mean_loss_and_grad_under_jit_and_vmap():
  problem = _problem(eps=0.2)
  data = jax.vmap(loglinear.sample_dataset, in_axes=(0, None, None))(
      jax.random.split(jax.random.key(3), 4), problem, 300)
  counts = jax.vmap(offline.comparison_counts, in_axes=(0, None, None))(
      data, X, K)
  thetas = jax.random.normal(jax.random.key(4), (4, D))

  def fn(theta, counts):
    return offline.mean_loss_and_grad(losses.rdpo, theta, counts, problem,
                                      eps=problem.eps)

  pt.assert_vmap_matches_loop(fn, thetas, counts, rtol=1e-5, atol=1e-7)
  pt.assert_jit_matches_eager(fn, thetas[0], counts[0], rtol=1e-5,
                              atol=1e-7)
  with pytest.raises(ValueError, match="theta"):
    offline.mean_loss_and_grad(losses.dpo, jnp.zeros(D + 1), counts[0],
                               problem)


def test_init_starts_at_the_reference_policy_with_the_data():
  problem = _problem(eps=0.2)
  alg = offline.offline_po(losses.dpo, n_pairs=123, lr=LR)
  state = alg.init(jax.random.key(5), problem)
  np.testing.assert_array_equal(state.theta, np.zeros(D))
  expected = offline.comparison_counts(
      loglinear.sample_dataset(jax.random.key(5), problem, 123), X, K)
  np.testing.assert_array_equal(state.counts, expected)


def test_offline_dpo_clean_large_n_recovers_theta_star_at_the_cramer_rao_rate():
  """DPO on a log-linear policy is the Bradley-Terry MLE on the features
  beta (phi_w - phi_l): E||theta_hat - theta*||^2 ~ tr(I^-1)/n, with I the
  Fisher information of one comparison, computed here from the pair law."""
  problem = _problem(eps=0.0)
  n, seeds = 20000, 64
  thetas, infos = _final_theta(losses.dpo, problem, n, seeds, n_steps=200)
  m, z = _np_pair_law(problem)
  s = float(problem.beta) * z @ np.asarray(problem.theta_star, np.float64)
  sig = 1 / (1 + np.exp(-s))
  fisher = np.einsum("xij,xija,xijb->ab", m * sig * (1 - sig) * BETA**2, z, z)
  predicted = np.trace(np.linalg.inv(fisher)) / n
  sq = np.sum((thetas - np.asarray(problem.theta_star)) ** 2, axis=-1)
  assert 0.6 < sq.mean() / predicted < 1.5, (sq.mean(), predicted)
  assert np.sqrt(sq.mean()) < 0.1  # small against ||theta*|| = 2
  # Converged: the last step's gradient vanishes (interior optimum).
  assert float(infos["grad_norm"][:, -1].max()) < 1e-5


def test_large_n_estimates_match_population_optima():
  """Under flips at rate eps, DPO, cDPO and rDPO are logistic regressions
  with soft targets 1, 1-eps and (1-eps)/(1-2eps): at large n each estimate
  converges to its own population optimum (computed in NumPy). rDPO's is
  theta* (unbiased); DPO's and cDPO's are shrunk towards 0 (biased)."""
  eps = 0.2
  problem = _problem(eps=eps)
  theta_star = np.asarray(problem.theta_star, np.float64)
  rdpo_pop = _np_population_optimum("rdpo", problem)
  np.testing.assert_allclose(rdpo_pop, theta_star, atol=1e-5)
  for name, loss in [("dpo", losses.dpo), ("cdpo", losses.cdpo),
                     ("rdpo", losses.rdpo)]:
    pop = _np_population_optimum(name, problem)
    kwargs = ({} if name == "dpo"
              else {"loss_kwargs": offline.known_flip_rate})
    thetas, _ = _final_theta(loss, problem, 100000, 4, **kwargs)
    assert np.linalg.norm(thetas.mean(0) - pop) < 0.1, (name, thetas, pop)
    if name != "rdpo":
      assert np.linalg.norm(pop) < 0.8 * THETA_NORM
      assert np.linalg.norm(pop - theta_star) > 0.5
  assert (np.linalg.norm(_np_population_optimum("cdpo", problem))
          < np.linalg.norm(_np_population_optimum("dpo", problem)))


def test_huge_radius_equals_unconstrained():
  problem = _problem(eps=0.1)
  kw = {"loss_kwargs": offline.known_flip_rate}
  free, _ = _final_theta(losses.rdpo, problem, 500, 3, n_steps=50, **kw)
  ball, _ = _final_theta(losses.rdpo, problem, 500, 3, n_steps=50,
                         radius=1e6, **kw)
  np.testing.assert_array_equal(ball, free)


def test_project_to_ball():
  inside = jnp.array([0.3, -0.4, 0.0])
  np.testing.assert_array_equal(offline.project_to_ball(inside, 1.0), inside)
  outside = jnp.array([3.0, -4.0, 0.0])
  np.testing.assert_allclose(offline.project_to_ball(outside, 1.0),
                             [0.6, -0.8, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(offline.project_to_ball(jnp.zeros(3), 1.0),
                                np.zeros(3))
  pt.assert_finite(jax.grad(lambda t: offline.project_to_ball(t, 1.0).sum())(
      jnp.zeros(3)))


def test_projection_keeps_rdpo_in_the_ball_where_it_would_diverge():
  """On a small, noisy sample the empirical rDPO loss is unbounded below:
  unconstrained gradient descent runs off (the gradient never vanishes),
  while projected descent stays in the ball and stops at a KKT point of the
  constrained problem: -grad = lambda theta with lambda >= 0."""
  problem = _problem(eps=0.4)
  radius = 3.0
  kw = {"loss_kwargs": offline.known_flip_rate}
  alg = offline.offline_po(losses.rdpo, n_pairs=40, lr=LR, radius=radius, **kw)
  finals, infos = prefsim.sweep(jax.random.key(2), alg, problem, 300, 16)
  assert float(infos["theta_norm"].max()) <= radius * (1 + 1e-6)
  on_ball = np.asarray(infos["theta_norm"][:, -1]) > radius * (1 - 1e-5)
  assert on_ball.sum() >= 4  # the constraint is active in several seeds
  _, free = _final_theta(losses.rdpo, problem, 40, 16, n_steps=300, key=2,
                         **kw)
  runaway = ((np.asarray(free["theta_norm"][:, -1]) > 10 * radius)
             & (np.asarray(free["grad_norm"][:, -1]) > 1e-3))
  assert runaway[on_ball].any()
  grads = jax.jit(jax.vmap(lambda t, c: jax.grad(offline.mean_loss, 1)(
      losses.rdpo, t, c, problem, eps=problem.eps)))(finals.theta,
                                                     finals.counts)
  cosine = -jnp.sum(grads * finals.theta, -1) / (
      jnp.linalg.norm(grads, axis=-1) * radius)
  assert float(cosine[on_ball].min()) > 1 - 1e-4, cosine[on_ball]
  assert float(infos["step_norm"][:, -1].max()) < 1e-5


def test_flip_rate_reaches_the_loss_when_sweeping_over_problems():
  """One sweep over a batch of flip rates (problem_axis=0, eps from the
  problem) equals a sweep with eps fixed in the loss, rate by rate."""
  rates = [0.1, 0.4]
  base = _problem()
  batch = loglinear.with_flip_rates(base, rates)
  alg = offline.offline_po(losses.rdpo, n_pairs=300, lr=LR, radius=5.0,
                           loss_kwargs=offline.known_flip_rate)
  finals, _ = prefsim.sweep(jax.random.key(4), alg, batch, 60, 3,
                            problem_axis=0)
  assert finals.theta.shape == (3, len(rates), D)
  fixed = offline.offline_po(functools.partial(losses.rdpo, eps=rates[1]),
                             n_pairs=300, lr=LR, radius=5.0)
  single, _ = prefsim.sweep(jax.random.key(4), fixed,
                            base._replace(eps=jnp.asarray(rates[1])), 60, 3)
  np.testing.assert_allclose(finals.theta[:, 1], single.theta, rtol=1e-5,
                             atol=1e-6)
  # The rates differ, so the estimates do.
  assert float(jnp.abs(finals.theta[:, 0] - finals.theta[:, 1]).max()) > 1e-2


def test_sweep_seed_equals_run_and_second_sweep_does_not_recompile():
  problem = _problem(eps=0.1)
  alg = offline.offline_po(losses.cdpo, n_pairs=200, lr=LR,
                           loss_kwargs=offline.known_flip_rate)
  key = jax.random.key(8)
  finals, infos = prefsim.sweep(key, alg, problem, 20, 3)
  assert set(infos) == {"loss", "grad_norm", "step_norm", "theta_norm",
                        "reward", "suboptimality", "kl_gap", "param_error"}
  assert infos["kl_gap"].shape == (3, 20)
  one, one_infos = prefsim.run(jax.random.fold_in(key, 2), alg, problem, 20)
  np.testing.assert_allclose(finals.theta[2], one.theta, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(infos["kl_gap"][2], one_infos["kl_gap"],
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      infos["param_error"][2, -1], loglinear.param_error(one.theta, problem),
      rtol=1e-5)
  size = _sweep_jit._cache_size()
  prefsim.sweep(jax.random.key(9), alg, _problem(eps=0.3, seed=1), 20, 3)
  assert _sweep_jit._cache_size() == size


def test_step_jit_matches_eager_and_optimizer_is_pluggable():
  import optax
  problem = _problem(eps=0.1)
  alg = offline.offline_po(losses.ipo, n_pairs=300, lr=0.05,
                           optimizer=optax.adam, log_metrics=False)
  state = alg.init(jax.random.key(0), problem)
  pt.assert_jit_matches_eager(lambda s: alg.step(jax.random.key(1), s,
                                                 problem), state, rtol=1e-5,
                              atol=1e-7)
  _, info = alg.step(jax.random.key(1), state, problem)
  assert set(info) == {"loss", "grad_norm", "step_norm", "theta_norm"}
  # Adam's first step moves every coordinate by lr (its normalised update).
  new, _ = alg.step(jax.random.key(1), state, problem)
  np.testing.assert_allclose(jnp.abs(new.theta), 0.05, rtol=1e-3)


@pytest.mark.parametrize("call, match", [
    (lambda: offline.offline_po(losses.dpo, n_pairs=0, lr=1.0), "n_pairs"),
    (lambda: offline.offline_po(losses.dpo, n_pairs=10.0, lr=1.0), "n_pairs"),
    (lambda: offline.offline_po(losses.dpo, n_pairs=10, lr=0.0), "lr"),
    (lambda: offline.offline_po(losses.dpo, n_pairs=10, lr=1.0, radius=-1.0),
     "radius"),
    (lambda: offline.offline_po("dpo", n_pairs=10, lr=1.0), "loss"),
    (lambda: offline.offline_po(losses.aot, n_pairs=10, lr=1.0),
     "per-example"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises((TypeError, ValueError), match=match):
    call()
