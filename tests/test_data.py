"""Tests of prefsim.data: pair sampling, labelling, label flips."""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from prefsim import data
from prefsim import testing as pt
from prefsim.testing import strategies as pst


def _binomial_ok(successes, n, p, z=4.5):
  """|k - np| within z standard deviations (z = 4.5: false alarm < 1e-5)."""
  return abs(successes - n * p) <= z * np.sqrt(n * p * (1 - p)) + 1e-9


def test_sample_pairs_marginals_and_distinctness():
  probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
  n = 40000
  prompt, first, second = data.sample_pairs(jax.random.key(0), jnp.log(probs),
                                            n)
  prompt, first, second = map(np.asarray, (prompt, first, second))
  assert np.all(first != second)
  assert _binomial_ok(np.sum(prompt == 1), n, 0.5)
  for x in range(2):
    rows = prompt == x
    counts = np.bincount(first[rows], minlength=3)
    stat = np.sum((counts - rows.sum() * probs[x]) ** 2 /
                  (rows.sum() * probs[x]))
    assert stat < scipy.stats.chi2.ppf(0.999, df=2)
    # Second given first = i: pi(j) / (1 - pi(i)) over j != i.
    given = rows & (first == 0)
    expected = probs[x, 1] / (1 - probs[x, 0])
    assert _binomial_ok(np.sum(second[given] == 1), given.sum(), expected)


@pytest.mark.parametrize("rho", [None, (0.1, 0.2, 0.3, 0.4, 0.0)])
def test_sample_pairs_prompt_frequencies(rho):
  """Prompts follow rho: uniform (randint) by default, else categorical."""
  n, n_prompts = 30000, 5
  logprobs = jnp.zeros((n_prompts, 3))
  kwargs = {} if rho is None else {"prompt_logprobs": jnp.log(jnp.array(rho))}
  prompt, _, _ = data.sample_pairs(jax.random.key(2), logprobs, n, **kwargs)
  probs = np.full(n_prompts, 1 / n_prompts) if rho is None else np.array(rho)
  counts = np.bincount(np.asarray(prompt), minlength=n_prompts)
  assert counts.shape == (n_prompts,)
  assert np.all(counts[probs == 0] == 0)
  seen = probs > 0
  stat = np.sum((counts[seen] - n * probs[seen]) ** 2 / (n * probs[seen]))
  assert stat < scipy.stats.chi2.ppf(0.999, df=seen.sum() - 1)


def test_sample_pairs_non_distinct_are_independent_draws():
  probs = np.array([[0.5, 0.5]])
  _, first, second = data.sample_pairs(jax.random.key(1), jnp.log(probs),
                                       20000, distinct=False)
  assert _binomial_ok(np.sum(np.asarray(first) == np.asarray(second)), 20000,
                      0.5)


def test_label_bt_frequencies_match_sigmoid_of_reward_gap():
  rewards = jnp.array([[0.0, 1.0, -2.0]])
  n = 30000
  prompt = jnp.zeros(n, jnp.int32)
  first = jnp.zeros(n, jnp.int32)
  for other, gap in [(1, -1.0), (2, 2.0)]:
    second = jnp.full(n, other, jnp.int32)
    labelled = data.label_bt(jax.random.key(other), rewards, prompt, first,
                             second)
    wins = int(np.sum(np.asarray(labelled.chosen) == 0))
    assert _binomial_ok(wins, n, 1 / (1 + np.exp(-gap)))
    np.testing.assert_array_equal(
        np.sort(np.stack([labelled.chosen, labelled.rejected]), axis=0),
        np.sort(np.stack([first, second]), axis=0))


@hypothesis.given(eps=pst.flip_rates(1.0, include_max=True), key=pst.keys())
def test_flip_rate_matches_eps(eps, key):
  n = 20000
  clean = data.PreferenceData(jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.int32),
                              jnp.ones(n, jnp.int32))
  noisy = data.flip(key, clean, eps)
  flipped = int(np.sum(np.asarray(noisy.chosen) != 0))
  assert _binomial_ok(flipped, n, eps)
  np.testing.assert_array_equal(np.asarray(noisy.chosen) + noisy.rejected, 1)


def test_flip_extremes_and_jit():
  clean = data.PreferenceData(jnp.arange(4), jnp.arange(4), jnp.arange(4) + 10)
  key = jax.random.key(0)
  same = data.flip(key, clean, 0.0)
  np.testing.assert_array_equal(same.chosen, clean.chosen)
  np.testing.assert_array_equal(same.rejected, clean.rejected)
  swapped = data.flip(key, clean, 1.0)
  np.testing.assert_array_equal(swapped.chosen, clean.rejected)
  np.testing.assert_array_equal(swapped.rejected, clean.chosen)
  pt.assert_jit_matches_eager(lambda k, d: data.flip(k, d, 0.3), key, clean)
  keys = jax.random.split(key, 3)
  pt.assert_vmap_matches_loop(lambda k: data.flip(k, clean, 0.5), keys)


def test_bt_dataset_jit_and_vmap_over_keys():
  logprobs = jnp.log(jnp.full((2, 4), 0.25))
  rewards = jnp.arange(8.0).reshape(2, 4)
  fn = lambda k: data.bt_dataset(k, logprobs, rewards, 16)
  pt.assert_jit_matches_eager(fn, jax.random.key(3))
  pt.assert_vmap_matches_loop(fn, jax.random.split(jax.random.key(3), 2))
  out = fn(jax.random.key(3))
  assert out.prompt.shape == out.chosen.shape == out.rejected.shape == (16,)


@pytest.mark.parametrize("call, match", [
    (lambda: data.flip(jax.random.key(0), data.PreferenceData(
        jnp.zeros(2, int), jnp.zeros(2, int), jnp.ones(2, int)), 1.5), "eps"),
    (lambda: data.flip(jax.random.key(0), data.PreferenceData(
        jnp.zeros(2, int), jnp.zeros(2, int), jnp.ones(2, int)), -0.1), "eps"),
    (lambda: data.label_bt(jax.random.key(0), jnp.zeros((2, 3)),
                           jnp.array([0, 2]), jnp.array([0, 1]),
                           jnp.array([1, 2])), "prompt"),
    (lambda: data.label_bt(jax.random.key(0), jnp.zeros((2, 3)),
                           jnp.array([0, 1]), jnp.array([0, 3]),
                           jnp.array([1, 2])), "first"),
    (lambda: data.label(jax.random.key(0), jnp.zeros(3, int),
                        jnp.zeros(3, int), jnp.ones(2, int), jnp.ones(3)),
     "shapes must match"),
    (lambda: data.label(jax.random.key(0), jnp.zeros(2, int),
                        jnp.zeros(2, int), jnp.ones(2, int),
                        jnp.array([0.5, 1.2])), "win_prob"),
    (lambda: data.sample_pairs(jax.random.key(0), jnp.zeros(3), 5), "logprobs"),
    (lambda: data.sample_pairs(jax.random.key(0), jnp.zeros((2, 1)), 5),
     "K >= 2"),
    (lambda: data.bt_dataset(jax.random.key(0), jnp.zeros((2, 3)),
                             jnp.zeros((2, 4)), 5), "logprobs and rewards"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises((TypeError, ValueError), match=match):
    call()
