r"""A synthetic preference task for language models, with a known reward.

Everything an LLM preference experiment needs, small enough for a CPU, and
with a **true reward that is exact**: win rates against the reference and
reward/KL trade-offs are computed, not judged.

* The **tokenizer** is a fixed vocabulary: ``<pad>`` (id 0), ``<bos>`` (1),
  ``<eos>`` (2), then the letters of :attr:`TaskConfig.alphabet` (ids 3, 4,
  ...). ``<eos>`` is reserved: the task's sequences have a fixed length.
* The **text** is a Markov chain over letters: the first letter is uniform,
  and each next letter is the successor of the previous one (``a -> b -> ...
  -> a``) with probability ``stick``, else uniform. A sequence is ``[<bos>,
  prompt (prompt_len letters), response (response_len letters)]``, length
  ``L = 1 + prompt_len + response_len``, no padding; the response continues
  the chain of its prompt.
* The **reference policy** is a GPT trained by :func:`sft` for a few hundred
  steps on that text (next-token cross-entropy on every token after
  ``<bos>``).
* The **true reward** is a linear score over the token counts of the
  response,

  .. math:: r(y) = \sum_{t \in \text{response}} w[y_t],

  by default the number of times the ``target`` letter appears (``w`` one-hot).
  A policy raises it by writing the target letter more often than the chain
  does, which costs KL to the reference: writing only the target letter
  maximises the reward and is the reward-hacking end of the trade-off.
* **Preference pairs** (:func:`preference_pairs`): two responses sampled
  from the reference for each prompt, labelled by Bradley-Terry on the true
  reward, :math:`P(y_1 \succ y_2) = \sigma(s\,(r(y_1) - r(y_2)))`, then
  flipped at rate :math:`\epsilon`, so that the labelled-chosen response is
  the BT winner with probability :math:`(1-\epsilon)\sigma(s\Delta r) +
  \epsilon\,\sigma(-s\Delta r)` (:func:`label_pairs`).

Shapes: ``P`` pairs (or prompts), ``B`` batch, ``L`` sequence length, ``V``
vocabulary size.

References:
  Rafailov et al. Direct Preference Optimization. NeurIPS 2023,
  arXiv:2305.18290, Sec. 6.1 (controlled sentiment generation: a known
  reward, the reward/KL frontier).
  Chowdhury, Kini, Natarajan. Provably Robust DPO: Aligning Language Models
  with Noisy Feedback. ICML 2024, arXiv:2403.00409, Sec. 2 (labels flipped
  at rate eps).
  Bradley, Terry. Rank Analysis of Incomplete Block Designs. Biometrika
  39 (1952), Eq. 1.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefsim import _checks
from prefsim.llm.logps import sequence_logps
from prefsim.llm.model import GPT, sample

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "PreferenceData",
    "TaskConfig",
    "completion_mask",
    "decode",
    "encode",
    "evaluate",
    "generate_text",
    "label_pairs",
    "preference_pairs",
    "prompts",
    "sft",
    "true_reward",
]

PAD, BOS, EOS = 0, 1, 2
"""Special token ids: padding, beginning and end of sequence."""
_FIRST_LETTER = 3


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """The synthetic task's shape; hashable, so it can be a static argument.

  Attributes:
    alphabet: the letters, distinct; ``V = 3 + len(alphabet)``.
    prompt_len: letters in a prompt, >= 1.
    response_len: letters in a response, >= 1.
    stick: probability in [0, 1] that the next letter is the successor of
      the previous one (else uniform).
    target: the letter whose count is the default true reward.
    reward_scale: ``s`` in the BT labels, :math:`\\sigma(s\\,\\Delta r)`, > 0.
  Raises:
    ValueError: an alphabet with repeats or fewer than 2 letters, a target
      outside it, a length < 1, ``stick`` outside [0, 1], a scale <= 0.
  """

  alphabet: str = "abcdefgh"
  prompt_len: int = 4
  response_len: int = 8
  stick: float = 0.6
  target: str = "a"
  reward_scale: float = 1.0

  def __post_init__(self):
    if len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
      raise ValueError("alphabet must hold >= 2 distinct letters, got "
                       f"{self.alphabet!r}")
    if self.target not in self.alphabet:
      raise ValueError(f"target {self.target!r} is not in the alphabet "
                       f"{self.alphabet!r}")
    _checks.check_static_int("prompt_len", self.prompt_len, 1)
    _checks.check_static_int("response_len", self.response_len, 1)
    _checks.check_in_range("stick", self.stick, 0.0, 1.0)
    _checks.check_positive("reward_scale", self.reward_scale)

  @property
  def vocab_size(self) -> int:
    """V: the three special tokens and the letters."""
    return _FIRST_LETTER + len(self.alphabet)

  @property
  def length(self) -> int:
    """L = 1 + prompt_len + response_len."""
    return 1 + self.prompt_len + self.response_len

  @property
  def weights(self) -> np.ndarray:
    """The default reward weights ``w [V]``: 1 at the target letter, else 0."""
    w = np.zeros(self.vocab_size, np.float32)
    w[_FIRST_LETTER + self.alphabet.index(self.target)] = 1.0
    return w


def encode(config: TaskConfig, text: str, *, bos: bool = True) -> np.ndarray:
  """Token ids ``[len(text) (+1)]`` int32 of ``text``, ``<bos>`` first.

  Raises:
    ValueError: a character outside the alphabet.
  """
  bad = sorted(set(text) - set(config.alphabet))
  if bad:
    raise ValueError(f"text holds characters outside the alphabet "
                     f"{config.alphabet!r}: {bad[:6]}")
  ids = [_FIRST_LETTER + config.alphabet.index(c) for c in text]
  return np.asarray(([BOS] if bos else []) + ids, np.int32)


def decode(config: TaskConfig, ids: Any) -> str:
  """The text of token ids ``[L]``; special tokens as ``<pad>``, ``<bos>``,
  ``<eos>``.

  Raises:
    ValueError: an id outside ``[0, V)``.
  """
  ids = np.asarray(ids)
  _checks.check_indices("ids", ids, config.vocab_size)
  names = ("<pad>", "<bos>", "<eos>") + tuple(config.alphabet)
  return "".join(names[int(i)] for i in ids.reshape(-1))


def completion_mask(config: TaskConfig, n: int) -> jax.Array:
  """``[n, L]`` bool: True at the response positions."""
  pos = jnp.arange(config.length)
  return jnp.broadcast_to(pos >= 1 + config.prompt_len, (n, config.length))


def _chain(key: jax.Array, config: TaskConfig, n: int, length: int,
           first: jax.Array | None) -> jax.Array:
  """``[n, length]`` letter indices of the Markov chain (continuing from
  ``first [n]`` when given, else starting uniform)."""
  a = len(config.alphabet)
  k_start, k_stick, k_jump = jax.random.split(key, 3)
  start = jax.random.randint(k_start, (n,), 0, a) if first is None else first
  sticks = jax.random.bernoulli(k_stick, config.stick, (n, length))
  jumps = jax.random.randint(k_jump, (n, length), 0, a)

  def step(prev, inputs):
    stick, jump = inputs
    nxt = jnp.where(stick, (prev + 1) % a, jump)
    return nxt, nxt

  if first is None:
    _, rest = jax.lax.scan(step, start, (sticks.T[1:], jumps.T[1:]))
    return jnp.concatenate([start[:, None], rest.T], axis=1)
  _, rest = jax.lax.scan(step, start, (sticks.T, jumps.T))
  return rest.T


def prompts(key: jax.Array, config: TaskConfig, n: int) -> jax.Array:
  """``[n, 1 + prompt_len]`` int32 prompts: ``<bos>`` and a chain prefix."""
  n = _checks.check_static_int("n", n, 1)
  letters = _chain(key, config, n, config.prompt_len, None)
  bos = jnp.full((n, 1), BOS, jnp.int32)
  return jnp.concatenate([bos, (letters + _FIRST_LETTER).astype(jnp.int32)],
                         axis=1)


def generate_text(key: jax.Array, config: TaskConfig, n: int) -> jax.Array:
  """``[n, L]`` int32 sequences of the task's text (prompt and response
  both from the chain): the data :func:`sft` trains on."""
  n = _checks.check_static_int("n", n, 1)
  letters = _chain(key, config, n, config.prompt_len + config.response_len,
                   None)
  bos = jnp.full((n, 1), BOS, jnp.int32)
  return jnp.concatenate([bos, (letters + _FIRST_LETTER).astype(jnp.int32)],
                         axis=1)


def true_reward(tokens: jax.Array, mask: jax.Array,
                weights: jax.Array) -> jax.Array:
  r"""The true reward :math:`r(y) = \sum_t m_t\, w[y_t]` of each row.

  Args:
    tokens: ``[..., L]`` integer ids in ``[0, V)``.
    mask: ``[..., L]`` bool, True at the response tokens.
    weights: ``[V]`` reward weights (e.g. :attr:`TaskConfig.weights`).
  Returns:
    ``[...]`` rewards, in the weights' float type.
  Raises:
    ValueError: shapes that differ, weights not ``[V]``; eagerly, a token
      outside ``[0, V)``.

  Tests:
    tests/llm/test_task.py::test_true_reward_on_hand_made_responses.
  """
  _checks.check_same_shape(tokens=tokens, mask=mask)
  _checks.check_ndim("weights", weights, 1, "[V]")
  _checks.check_indices("tokens", tokens, np.shape(weights)[0])
  w = jnp.asarray(weights)
  if not jnp.issubdtype(w.dtype, jnp.floating):
    w = w.astype(_checks.default_float())
  per_token = jnp.take(w, jnp.asarray(tokens), mode="clip")
  return jnp.sum(jnp.where(jnp.asarray(mask, bool), per_token, 0), axis=-1)


# --------------------------------------------------------------------------
# The reference policy
# --------------------------------------------------------------------------


def sft(key: jax.Array, model: GPT, config: TaskConfig, *, steps: int = 300,
        batch: int = 32, learning_rate: float = 3e-3) -> np.ndarray:
  r"""Train ``model`` in place on the task's text: the reference policy.

  Minimises the mean next-token cross-entropy of every token after
  ``<bos>``, :math:`-\frac{1}{L-1}\sum_{t\ge1}\log\pi(s_t\mid s_{<t})`, with
  Adam, on a fresh batch of :func:`generate_text` each step (batch ``t``
  from ``fold_in(key, t)``).

  Args:
    key: a ``jax.random`` key.
    model: a :class:`GPT` with ``vocab_size == config.vocab_size`` and
      ``context >= config.length``; updated in place.
    config: the :class:`TaskConfig`.
    steps: Adam steps, >= 1.
    batch: sequences per step, >= 1.
    learning_rate: Adam's step size, > 0.
  Returns:
    ``[steps]`` float losses (nats per token).
  Raises:
    ValueError: a model whose vocabulary or context does not fit the task.

  Tests:
    tests/llm/test_task.py::test_sft_learns_the_chain.
  """
  _check_model(model, config)
  steps = _checks.check_static_int("steps", steps, 1)
  batch = _checks.check_static_int("batch", batch, 1)
  _checks.check_positive("learning_rate", learning_rate)
  graphdef, params = nnx.split(model)
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)
  mask = jnp.arange(config.length)[None, :] >= 1

  @jax.jit
  def step(params, opt_state, t):
    tokens = generate_text(jax.random.fold_in(key, t), config, batch)

    def loss_fn(params):
      logits = nnx.merge(graphdef, params)(tokens)
      m = jnp.broadcast_to(mask, tokens.shape)
      return -jnp.mean(sequence_logps(logits, tokens, m, average=True))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = np.empty(steps, np.float32)
  for t in range(steps):
    params, opt_state, loss = step(params, opt_state, t)
    losses[t] = loss
  nnx.update(model, params)
  return losses


def _check_model(model: Any, config: TaskConfig) -> None:
  if not isinstance(model, GPT):
    raise TypeError(f"model must be a GPT, got {type(model).__name__}")
  if model.config.vocab_size != config.vocab_size:
    raise ValueError(f"the model's vocab_size {model.config.vocab_size} is "
                     f"not the task's V = {config.vocab_size}")
  if model.config.context < config.length:
    raise ValueError(f"the model's context {model.config.context} is shorter "
                     f"than the task's sequences, L = {config.length}")


# --------------------------------------------------------------------------
# Preference pairs
# --------------------------------------------------------------------------


def label_pairs(key: jax.Array, reward_1: jax.Array, reward_2: jax.Array, *,
                scale: float = 1.0, eps: float = 0.0
                ) -> tuple[jax.Array, jax.Array]:
  r"""Bradley-Terry labels on true rewards, flipped at rate ``eps``.

  .. math:: P(\text{1 labelled chosen}) = (1-\epsilon)\,\sigma(s(r_1-r_2))
            + \epsilon\,\sigma(-s(r_1-r_2))

  A BT label is drawn, then flipped independently with probability
  :math:`\epsilon`.

  Args:
    key: a ``jax.random`` key.
    reward_1: ``[P]`` true rewards of the first responses.
    reward_2: ``[P]`` true rewards of the second responses.
    scale: ``s`` > 0.
    eps: flip rate in [0, 1].
  Returns:
    A pair of ``[P]`` bools: ``first_chosen`` and ``flipped``.
  Raises:
    ValueError: shapes that differ; eagerly, ``scale <= 0`` or ``eps``
      outside [0, 1].

  References:
    Bradley, Terry (1952), Eq. 1; Chowdhury, Kini, Natarajan,
    arXiv:2403.00409, Sec. 2 (the flip model).
  Tests:
    tests/llm/test_task.py::test_label_frequency_is_bt_mixed_with_flips.
  """
  _checks.check_same_shape(reward_1=reward_1, reward_2=reward_2)
  _checks.check_positive("scale", scale)
  _checks.check_in_range("eps", eps, 0.0, 1.0)
  k_bt, k_flip = jax.random.split(key)
  diff = jnp.asarray(reward_1) - jnp.asarray(reward_2)
  bt = jax.random.bernoulli(k_bt, jax.nn.sigmoid(scale * diff))
  flipped = jax.random.bernoulli(k_flip, eps, jnp.shape(diff))
  return bt ^ flipped, flipped


class PreferenceData(NamedTuple):
  """Labelled response pairs, one per prompt.

  Attributes:
    chosen: ``[P, L]`` int32 prompt + labelled-chosen response.
    rejected: ``[P, L]`` int32 prompt + labelled-rejected response.
    chosen_mask: ``[P, L]`` bool, True at the chosen response's tokens.
    rejected_mask: ``[P, L]`` bool, True at the rejected response's tokens.
    chosen_reward: ``[P]`` true rewards of the chosen responses.
    rejected_reward: ``[P]`` true rewards of the rejected responses.
    flipped: ``[P]`` bool, True where the BT label was flipped.
  """

  chosen: jax.Array
  rejected: jax.Array
  chosen_mask: jax.Array
  rejected_mask: jax.Array
  chosen_reward: jax.Array
  rejected_reward: jax.Array
  flipped: jax.Array


def preference_pairs(key: jax.Array, ref_model: GPT, config: TaskConfig,
                     n: int, *, eps: float = 0.0, temperature: float = 1.0,
                     weights: Any = None) -> PreferenceData:
  r"""``n`` prompts, two reference responses each, labelled by BT + flips.

  Prompts from :func:`prompts`; the two responses of a prompt drawn
  independently from ``ref_model`` (:func:`prefsim.llm.sample`, the given
  temperature); true rewards by :func:`true_reward`; labels by
  :func:`label_pairs` with ``scale = config.reward_scale``.

  Args:
    key: a ``jax.random`` key.
    ref_model: the reference :class:`GPT` (e.g. after :func:`sft`).
    config: the :class:`TaskConfig`.
    n: P, the number of pairs, >= 1.
    eps: flip rate in [0, 1].
    temperature: sampling temperature, >= 0.
    weights: ``[V]`` reward weights; None: ``config.weights``.
  Returns:
    A :class:`PreferenceData`.
  Raises:
    ValueError, TypeError: a model that does not fit the task, and the
      errors of :func:`label_pairs` and :func:`prefsim.llm.sample`.

  Tests:
    tests/llm/test_task.py::test_preference_pairs_are_consistent.
  """
  _check_model(ref_model, config)
  n = _checks.check_static_int("n", n, 1)
  w = jnp.asarray(config.weights if weights is None else weights)
  k_prompt, k_sample, k_label = jax.random.split(key, 3)
  prompt = prompts(k_prompt, config, n)
  both = jnp.concatenate([prompt, prompt])
  responses = sample(k_sample, ref_model, both,
                     max_new_tokens=config.response_len,
                     temperature=temperature)
  seqs = jnp.concatenate([both, responses], axis=1)
  mask = completion_mask(config, 2 * n)
  rewards = true_reward(seqs, mask, w)
  first, second = seqs[:n], seqs[n:]
  first_chosen, flipped = label_pairs(k_label, rewards[:n], rewards[n:],
                                      scale=config.reward_scale, eps=eps)
  pick = first_chosen[:, None]
  return PreferenceData(
      chosen=jnp.where(pick, first, second),
      rejected=jnp.where(pick, second, first),
      chosen_mask=mask[:n], rejected_mask=mask[n:],
      chosen_reward=jnp.where(first_chosen, rewards[:n], rewards[n:]),
      rejected_reward=jnp.where(first_chosen, rewards[n:], rewards[:n]),
      flipped=flipped)


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate(key: jax.Array, model: GPT, ref_model: GPT, config: TaskConfig,
             prompt: jax.Array, *, temperature: float = 1.0,
             weights: Any = None) -> dict[str, float]:
  r"""True reward, win rate against the reference, and KL, by sampling.

  One response per prompt from ``model`` and one from ``ref_model``. The
  rewards are exact (:func:`true_reward`); the win rate is
  :math:`\hat P(r(y) > r(y_{\rm ref})) + \tfrac12 \hat P(r(y) = r(y_{\rm
  ref}))`; the KL is the Monte Carlo estimate :math:`\frac1n\sum_i
  \log\pi(y_i\mid x_i) - \log\pi_{\rm ref}(y_i\mid x_i)`, :math:`y_i \sim
  \pi`, of the sequence-level :math:`\mathrm{KL}(\pi\,\|\,\pi_{\rm ref})`
  (unbiased; a single draw can be negative).

  Args:
    key: a ``jax.random`` key.
    model: the policy :class:`GPT`.
    ref_model: the reference :class:`GPT`.
    config: the :class:`TaskConfig`.
    prompt: ``[X, 1 + prompt_len]`` prompts (:func:`prompts`).
    temperature: sampling temperature for both models, >= 0.
    weights: ``[V]`` reward weights; None: ``config.weights``.
  Returns:
    A dict of floats: ``reward``, ``ref_reward``, ``win_rate``, ``kl``.

  Tests:
    tests/llm/test_train.py::test_training_raises_true_reward.
  """
  _check_model(model, config)
  _check_model(ref_model, config)
  w = jnp.asarray(config.weights if weights is None else weights)
  k_pol, k_ref = jax.random.split(key)
  steps = config.response_len
  y = sample(k_pol, model, prompt, max_new_tokens=steps,
             temperature=temperature)
  y_ref = sample(k_ref, ref_model, prompt, max_new_tokens=steps,
                 temperature=temperature)
  seqs = jnp.concatenate([prompt, y], axis=1)
  seqs_ref = jnp.concatenate([prompt, y_ref], axis=1)
  mask = completion_mask(config, prompt.shape[0])
  r = true_reward(seqs, mask, w)
  r_ref = true_reward(seqs_ref, mask, w)
  kl = sequence_logps(model(seqs), seqs, mask) \
      - sequence_logps(ref_model(seqs), seqs, mask)
  win = jnp.mean((r > r_ref) + 0.5 * (r == r_ref))
  return {"reward": float(jnp.mean(r)), "ref_reward": float(jnp.mean(r_ref)),
          "win_rate": float(win), "kl": float(jnp.mean(kl))}
