r"""Preference data sets: pairs from a behaviour policy, labels, label flips.

A data set of ``P`` comparisons is a :class:`PreferenceData` pytree of three
integer arrays: the prompt ``x``, the chosen response ``y_w`` and the
rejected one ``y_l``. The pipeline is

  ``sample_pairs`` (two responses per prompt from a behaviour policy)
  -> ``label`` / ``label_bt`` (a preference model picks the winner)
  -> ``flip`` (optional label noise at rate :math:`\epsilon`).

``bt_dataset`` does the first two steps with Bradley-Terry labels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim.models import bradley_terry


class PreferenceData(NamedTuple):
  """``P`` comparisons: response ``chosen[p]`` beat ``rejected[p]`` at ``prompt[p]``.

  Attributes:
    prompt: int ``[P]`` prompt indices in ``[0, X)``.
    chosen: int ``[P]`` indices of the preferred responses in ``[0, K)``.
    rejected: int ``[P]`` indices of the dispreferred responses.
  """

  prompt: jax.Array
  chosen: jax.Array
  rejected: jax.Array


def sample_pairs(key: jax.Array, logprobs: jax.Array, n_pairs: int, *,
                 prompt_logprobs: jax.Array | None = None,
                 distinct: bool = True
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Samples ``n_pairs`` unlabelled pairs of responses from a behaviour policy.

  The prompt is :math:`x \sim \rho` (uniform unless ``prompt_logprobs`` is
  given: uniform prompts are drawn with ``jax.random.randint``, :math:`O(P)`
  work, a given :math:`\rho` by ``jax.random.categorical``, :math:`O(PX)`),
  then :math:`y_1 \sim \pi_b(\cdot\mid x)` and, independently,
  :math:`y_2 \sim \pi_b(\cdot\mid x)`, conditioned on :math:`y_2 \ne y_1` when
  ``distinct`` (a pair of equal responses carries no preference).

  Args:
    key: a ``jax.random`` key.
    logprobs: ``[X, K]`` log-probabilities of the behaviour policy :math:`\pi_b`.
    n_pairs: number of pairs ``P`` (static).
    prompt_logprobs: ``[X]`` log-probabilities of the prompt distribution.
    distinct: draw the second response from :math:`\pi_b` restricted to
      responses other than the first. Where :math:`\pi_b(\cdot\mid x)` has a
      single response in its support, that pair is not distinct (inside jit
      this cannot raise).
  Returns:
    ``(prompt, first, second)``, each int ``[P]``.
  """
  _checks.check_ndim("logprobs", logprobs, 2, "[X, K]")
  n_pairs = _checks.check_static_int("n_pairs", n_pairs)
  n_prompts, n_responses = logprobs.shape
  if distinct and n_responses < 2:
    raise ValueError("distinct pairs need K >= 2 responses, got logprobs of "
                     f"shape {logprobs.shape}")
  if prompt_logprobs is not None and prompt_logprobs.shape != (n_prompts,):
    raise ValueError(f"prompt_logprobs must have shape [X] = ({n_prompts},), "
                     f"got {prompt_logprobs.shape}")
  k_prompt, k_first, k_second = jax.random.split(key, 3)
  if prompt_logprobs is None:
    # One integer per pair; a categorical draws X Gumbel variates per pair.
    prompt = jax.random.randint(k_prompt, (n_pairs,), 0, n_prompts)
  else:
    prompt = jax.random.categorical(k_prompt, prompt_logprobs,
                                    shape=(n_pairs,))
  rows = logprobs[prompt]
  first = jax.random.categorical(k_first, rows, axis=-1)
  if distinct:
    taken = jnp.arange(n_responses) == first[:, None]
    rows = jnp.where(taken, -jnp.inf, rows)
    # A row with a single supported response has nothing left: keep it.
    rows = jnp.where(jnp.all(rows == -jnp.inf, axis=-1, keepdims=True),
                     logprobs[prompt], rows)
  second = jax.random.categorical(k_second, rows, axis=-1)
  return prompt, first, second


def label(key: jax.Array, prompt: jax.Array, first: jax.Array,
          second: jax.Array, win_prob: jax.Array) -> PreferenceData:
  r"""Labels pairs: ``first`` is chosen with probability ``win_prob``.

  Any preference model fits: for a preference tensor ``P[X, K, K]`` pass
  ``P[prompt, first, second]``; for Bradley-Terry rewards use
  :func:`label_bt`.

  Args:
    key: a ``jax.random`` key.
    prompt: int ``[P]`` prompts.
    first: int ``[P]`` first responses.
    second: int ``[P]`` second responses.
    win_prob: ``[P]`` probabilities :math:`\Pr(y_1 \succ y_2 \mid x)` in
      [0, 1] (checked eagerly).
  Returns:
    The labelled :class:`PreferenceData`.
  """
  _checks.check_same_shape(prompt=prompt, first=first, second=second,
                           win_prob=win_prob)
  _checks.check_in_range("win_prob", win_prob, 0.0, 1.0)
  first_wins = jax.random.bernoulli(key, win_prob)
  return PreferenceData(prompt=prompt,
                        chosen=jnp.where(first_wins, first, second),
                        rejected=jnp.where(first_wins, second, first))


def label_bt(key: jax.Array, rewards: jax.Array, prompt: jax.Array,
             first: jax.Array, second: jax.Array) -> PreferenceData:
  r"""Labels pairs by Bradley-Terry on rewards ``r[X, K]``.

  .. math:: \Pr(y_1 \succ y_2 \mid x) = \sigma(r(x, y_1) - r(x, y_2))

  Args:
    key: a ``jax.random`` key.
    rewards: ``[X, K]`` true rewards.
    prompt: int ``[P]`` prompts.
    first: int ``[P]`` first responses.
    second: int ``[P]`` second responses.
  Returns:
    The labelled :class:`PreferenceData`.
  """
  _checks.check_ndim("rewards", rewards, 2, "[X, K]")
  _checks.check_indices("prompt", prompt, rewards.shape[0])
  _checks.check_indices("first", first, rewards.shape[1])
  _checks.check_indices("second", second, rewards.shape[1])
  win_prob = bradley_terry.prob(rewards[prompt, first], rewards[prompt, second])
  return label(key, prompt, first, second, win_prob)


def bt_dataset(key: jax.Array, logprobs: jax.Array, rewards: jax.Array,
               n_pairs: int, *, distinct: bool = True) -> PreferenceData:
  """Samples pairs from a behaviour policy and labels them by Bradley-Terry.

  Args:
    key: a ``jax.random`` key.
    logprobs: ``[X, K]`` log-probabilities of the behaviour policy.
    rewards: ``[X, K]`` true rewards.
    n_pairs: number of comparisons ``P`` (static).
    distinct: as in :func:`sample_pairs`.
  Returns:
    A :class:`PreferenceData` of ``P`` comparisons.
  """
  if logprobs.shape != rewards.shape:
    raise ValueError(f"logprobs and rewards must both be [X, K], got "
                     f"{logprobs.shape} and {rewards.shape}")
  k_pairs, k_label = jax.random.split(key)
  pairs = sample_pairs(k_pairs, logprobs, n_pairs, distinct=distinct)
  return label_bt(k_label, rewards, *pairs)


def flip(key: jax.Array, data: PreferenceData, eps: float) -> PreferenceData:
  r"""Swaps chosen and rejected independently with probability ``eps``.

  The label-noise model of robust DPO: each observed label is the true one
  with probability :math:`1-\epsilon` and flipped with probability
  :math:`\epsilon`. Which pairs flipped is ``flipped.chosen != data.chosen``.

  Args:
    key: a ``jax.random`` key.
    data: a :class:`PreferenceData` of ``P`` comparisons.
    eps: flip rate in [0, 1] (checked eagerly; rates above 1/2 make the
      labels anti-informative but are allowed for simulation).
  Returns:
    The noisy :class:`PreferenceData`.
  References:
    Chowdhury, Kini, Natarajan. Provably Robust DPO: Aligning Language
    Models with Noisy Feedback. ICML 2024, arXiv:2403.00409.
  """
  _checks.check_in_range("eps", eps, 0.0, 1.0)
  swap = jax.random.bernoulli(key, eps, data.chosen.shape)
  return data._replace(chosen=jnp.where(swap, data.rejected, data.chosen),
                       rejected=jnp.where(swap, data.chosen, data.rejected))
