"""Tests for prefsim.llm.task: the synthetic preference task."""

from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefsim import llm
from prefsim.llm import task

CFG = task.TaskConfig(prompt_len=3, response_len=6)


def _gpt(seed: int = 0, config: task.TaskConfig = CFG) -> llm.GPT:
  return llm.GPT(llm.GPTConfig(vocab_size=config.vocab_size,
                               context=config.length, width=16, depth=1,
                               heads=2), rngs=nnx.Rngs(seed))


def test_tokenizer_round_trip_and_special_ids():
  """Letters are ids 3.. in alphabet order, <bos> is 1; decode inverts
  encode."""
  ids = task.encode(CFG, "abha")
  np.testing.assert_array_equal(ids, [1, 3, 4, 10, 3])
  assert task.decode(CFG, ids) == "<bos>abha"
  assert task.decode(CFG, [0, 2]) == "<pad><eos>"
  assert (task.PAD, task.BOS, task.EOS) == (0, 1, 2)
  assert CFG.vocab_size == 11 and CFG.length == 10


def test_true_reward_on_hand_made_responses():
  """r(y) = sum over response tokens of w[y_t]: counts of the target
  letter, and a linear score, by hand; prompt tokens never count."""
  seqs = np.stack([task.encode(CFG, "aaa" + "aaaaaa"),
                   task.encode(CFG, "aaa" + "bcdefg"),
                   task.encode(CFG, "bbb" + "abacad")])
  mask = task.completion_mask(CFG, 3)
  np.testing.assert_array_equal(task.true_reward(seqs, mask, CFG.weights),
                                [6.0, 0.0, 3.0])
  w = np.zeros(CFG.vocab_size, np.float32)
  w[3], w[4], w[6] = 1.0, -2.0, 0.5       # a: +1, b: -2, d: +0.5
  np.testing.assert_allclose(task.true_reward(seqs, mask, w),
                             [6.0, -2.0 + 0.5, 3.0 - 2.0 + 0.5])


def test_generate_text_follows_the_chain():
  """P(next letter = successor) = stick + (1 - stick)/A, within 5 binomial
  standard deviations over 4096 x 8 transitions; every token is <bos> then
  letters."""
  seqs = np.asarray(task.generate_text(jax.random.key(0), CFG, 4096))
  assert seqs.shape == (4096, CFG.length)
  assert np.all(seqs[:, 0] == task.BOS) and np.all(seqs[:, 1:] >= 3)
  a = len(CFG.alphabet)
  letters = seqs[:, 1:] - 3
  succ = (letters[:, 1:] == (letters[:, :-1] + 1) % a)
  p = CFG.stick + (1 - CFG.stick) / a
  sd = np.sqrt(p * (1 - p) / succ.size)
  assert abs(succ.mean() - p) < 5 * sd


def test_label_frequency_is_bt_mixed_with_flips():
  """P(first chosen) = (1-eps) sigmoid(s d) + eps sigmoid(-s d) for reward
  difference d; flips occur at rate eps. 20000 draws per value, bound of 5
  binomial standard deviations."""
  n = 20000
  for eps, scale in ((0.0, 1.0), (0.3, 0.7)):
    for d in (-1.5, 0.0, 2.0):
      r1 = jnp.full((n,), 1.0 + d)
      r2 = jnp.full((n,), 1.0)
      first, flipped = task.label_pairs(jax.random.key(7), r1, r2,
                                        scale=scale, eps=eps)
      s = 1 / (1 + np.exp(-scale * d))
      p = (1 - eps) * s + eps * (1 - s)
      assert abs(np.mean(first) - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-9
      assert abs(np.mean(flipped) - eps) < 5 * np.sqrt(
          eps * (1 - eps) / n) + 1e-9


def test_preference_pairs_are_consistent():
  """Chosen and rejected share their prompt, the recorded rewards are the
  true rewards of the recorded responses, the chosen one wins the BT draw
  unless flipped (so without flips the chosen reward is >= the rejected one
  more often than not), and the flip rate is near eps."""
  ref = _gpt(1)
  data = task.preference_pairs(jax.random.key(3), ref, CFG, 512, eps=0.25)
  c, r = np.asarray(data.chosen), np.asarray(data.rejected)
  assert c.shape == r.shape == (512, CFG.length)
  p = 1 + CFG.prompt_len
  np.testing.assert_array_equal(c[:, :p], r[:, :p])
  assert np.all(c[:, 0] == task.BOS)
  mask = task.completion_mask(CFG, 512)
  np.testing.assert_array_equal(data.chosen_mask, mask)
  np.testing.assert_array_equal(
      data.chosen_reward, task.true_reward(c, mask, CFG.weights))
  np.testing.assert_array_equal(
      data.rejected_reward, task.true_reward(r, mask, CFG.weights))
  assert abs(np.mean(data.flipped) - 0.25) < 5 * np.sqrt(0.25 * 0.75 / 512)
  clean = task.preference_pairs(jax.random.key(3), ref, CFG, 512, eps=0.0)
  diff = np.asarray(clean.chosen_reward - clean.rejected_reward)
  assert not np.any(clean.flipped)
  assert np.sum(diff > 0) > np.sum(diff < 0)


def test_sft_learns_the_chain():
  """After SFT the model's next-token cross-entropy on fresh text is near
  the chain's entropy, (log A + (L - 2) H) / (L - 1) with H the entropy of
  one transition, and far below the untrained log V."""
  model = _gpt(2)
  losses = task.sft(jax.random.key(4), model, CFG, steps=150, batch=32,
                    learning_rate=1e-2)
  assert losses.shape == (150,) and np.all(np.isfinite(losses))
  a, s = len(CFG.alphabet), CFG.stick
  q = (1 - s) / a
  h = -((s + q) * np.log(s + q) + (a - 1) * q * np.log(q))
  target = (np.log(a) + (CFG.length - 2) * h) / (CFG.length - 1)
  seqs = task.generate_text(jax.random.key(5), CFG, 1024)
  mask = jnp.broadcast_to(jnp.arange(CFG.length) >= 1, seqs.shape)
  ce = -float(jnp.mean(llm.sequence_logps(model(seqs), seqs, mask,
                                          average=True)))
  assert target - 0.02 < ce < target + 0.1, (ce, target)


def test_evaluate_of_the_reference_against_itself():
  """A model against itself: equal expected rewards (win rate near 1/2) and
  KL exactly 0."""
  ref = _gpt(1)
  prompt = task.prompts(jax.random.key(0), CFG, 1024)
  out = task.evaluate(jax.random.key(1), ref, ref, CFG, prompt)
  assert out["kl"] == 0.0
  assert abs(out["win_rate"] - 0.5) < 5 * np.sqrt(0.25 / 1024)


def test_bad_input_errors():
  with pytest.raises(ValueError, match="outside the alphabet"):
    task.encode(CFG, "abz")
  with pytest.raises(ValueError, match="distinct"):
    task.TaskConfig(alphabet="aab")
  with pytest.raises(ValueError, match="target"):
    task.TaskConfig(target="z")
  with pytest.raises(ValueError, match="stick"):
    task.TaskConfig(stick=1.5)
  seqs = np.full((2, CFG.length), 11)
  with pytest.raises(ValueError, match=r"tokens must lie in \[0, 11\)"):
    task.true_reward(seqs, task.completion_mask(CFG, 2), CFG.weights)
  with pytest.raises(ValueError, match="eps"):
    task.label_pairs(jax.random.key(0), jnp.zeros(3), jnp.zeros(3), eps=1.5)
  with pytest.raises(ValueError, match="context"):
    small = llm.GPT(llm.GPTConfig(vocab_size=CFG.vocab_size, context=4,
                                  width=8, depth=1, heads=2),
                    rngs=nnx.Rngs(0))
    task.preference_pairs(jax.random.key(0), small, CFG, 4)
  with pytest.raises(ValueError, match="vocab_size"):
    task.sft(jax.random.key(0), _gpt(0, task.TaskConfig(alphabet="abc")),
             CFG, steps=1)
