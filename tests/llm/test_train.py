"""Tests for prefsim.llm.train: the preference trainer."""

from __future__ import annotations

import inspect
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from prefsim import llm
from prefsim import losses
from prefsim.llm import task
from prefsim.llm import train
from prefsim.testing import run_on_cpu_devices

CFG = task.TaskConfig(prompt_len=3, response_len=6)
N_PAIRS = 16
# One optimizer object per setting: equal settings reuse the compiled step.
ADAM = optax.adam(1e-2)
SGD = optax.sgd(1.0)


def _gpt(seed: int) -> llm.GPT:
  return llm.GPT(llm.GPTConfig(vocab_size=CFG.vocab_size, context=CFG.length,
                               width=16, depth=1, heads=2), rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def ref():
  return _gpt(0)


@pytest.fixture(scope="module")
def data():
  """Pairs of chain text labelled by BT on the true reward (the pieces of
  task.preference_pairs without the sampling, which is tested in
  test_task.py)."""
  seqs = task.generate_text(jax.random.key(1), CFG, 2 * N_PAIRS)
  mask = task.completion_mask(CFG, 2 * N_PAIRS)
  reward = task.true_reward(seqs, mask, CFG.weights)
  first, flipped = task.label_pairs(jax.random.key(2), reward[:N_PAIRS],
                                    reward[N_PAIRS:])
  pick = first[:, None]
  a, b = seqs[:N_PAIRS], seqs[N_PAIRS:]
  return task.PreferenceData(
      chosen=jnp.where(pick, a, b), rejected=jnp.where(pick, b, a),
      chosen_mask=mask[:N_PAIRS], rejected_mask=mask[N_PAIRS:],
      chosen_reward=jnp.where(first, reward[:N_PAIRS], reward[N_PAIRS:]),
      rejected_reward=jnp.where(first, reward[N_PAIRS:], reward[:N_PAIRS]),
      flipped=flipped)


def _params(model: llm.GPT) -> list[np.ndarray]:
  return [np.asarray(x).ravel() for x in jax.tree.leaves(nnx.state(model))]


def _logratios(policy, ref, data, average=False):
  """h_w, h_l and the reference margins, computed here from the models."""
  out = []
  for side in ("chosen", "rejected"):
    tokens, mask = getattr(data, side), getattr(data, f"{side}_mask")
    pol = llm.sequence_logps(policy(tokens), tokens, mask, average=average)
    rf = llm.sequence_logps(ref(tokens), tokens, mask, average=average)
    out.append((pol, rf))
  (pw, rw), (pl, rl) = out
  return pw, pl, rw, rl


def test_one_step_lowers_the_loss(ref, data):
  """Starting from the reference, every log-ratio is 0 and the DPO loss is
  exactly log 2; one full-batch step lowers it on the same batch."""
  policy = nnx.clone(ref)
  out = train.train_preference(policy, ref, data, beta=0.5,
                               optimizer=optax.sgd(0.5), steps=2,
                               batch_size=N_PAIRS, key=jax.random.key(0))
  loss = out.history["loss"]
  np.testing.assert_allclose(loss[0], math.log(2), rtol=1e-6)
  assert out.history["accuracy"][0] == 0.0      # h_w = h_l: not a win
  assert loss[1] < loss[0] - 1e-4
  assert out.step == 2


def _unique_pairwise_losses():
  seen, names = set(), []
  for name in losses.names():
    fn = losses.get(name)
    module = fn.__module__.rsplit(".", 1)[-1]
    if module in ("pairwise", "reference_free") and fn not in seen:
      seen.add(fn)
      names.append(name)
  return names


_KWARGS = {"cdpo": {"eps": 0.2}, "rdpo": {"eps": 0.2}, "aot": {"eps": 0.1},
           "bco_pair": {"delta": 0.3}}


_FAST_LOSSES = ("dpo", "rdpo", "simpo")


def _expected_first_loss(name, start, ref, data):
  """The batch-mean loss of the first step, computed here: the loss
  function on log-ratios (log-probs for a reference-free loss) from the two
  models, with the test's keywords and, for aot, the reference margins."""
  pw, pl, rw, rl = _logratios(start, ref, data)
  fn = losses.get(name)
  kw = dict(_KWARGS.get(name, {}))
  if fn.__module__.endswith("reference_free"):
    return float(jnp.mean(fn(pw, pl, beta=0.3, **kw)))
  extra = ({"ref_margins": rw - rl}
           if "ref_margins" in inspect.signature(fn).parameters else {})
  return float(jnp.mean(fn(pw - rw, pl - rl, beta=0.3, **kw, **extra)))


def test_distinct_losses_differ_on_the_batch(ref, data):
  """Distinct loss functions give distinct first-step values on the test
  batch, so the per-loss check below fails if the option does not reach the
  function (e.g. if every name trained DPO)."""
  start = _gpt(5)
  names = _unique_pairwise_losses()
  assert len(names) >= 14
  values = np.array([_expected_first_loss(n, start, ref, data)
                     for n in names])
  gaps = np.abs(values[:, None] - values[None, :]) + np.eye(len(values))
  assert gaps.min() > 1e-4, dict(zip(names, values))


_ADAM_3 = optax.adam(1e-3)


@pytest.mark.parametrize("name", [
    n if n in _FAST_LOSSES else pytest.param(n, marks=pytest.mark.slow)
    for n in _unique_pairwise_losses()])
def test_every_pairwise_loss_trains_and_is_used(ref, data, name):
  """The first step's loss equals the loss function applied here (the
  option and its keywords reach the function; the trainer supplies aot's
  reference margins), and 3 steps stay finite. Losses beyond dpo, rdpo and
  simpo are marked slow (one compilation each)."""
  start = _gpt(5)
  want = _expected_first_loss(name, start, ref, data)
  policy = nnx.clone(start)
  out = train.train_preference(policy, ref, data, loss=name, beta=0.3,
                               optimizer=_ADAM_3, steps=3,
                               batch_size=N_PAIRS, key=jax.random.key(1),
                               loss_kwargs=_KWARGS.get(name))
  for metric, values in out.history.items():
    assert np.all(np.isfinite(values)), metric
  assert np.all(np.isfinite(np.concatenate(_params(policy))))
  np.testing.assert_allclose(out.history["loss"][0], want, rtol=2e-5,
                             atol=1e-6)


def test_average_logps_reaches_the_log_ratios(ref, data):
  """average_logps=True feeds length-normalised log-ratios to the loss:
  the first IPO loss equals ipo of the per-token means computed here."""
  start = _gpt(5)
  pw, pl, rw, rl = _logratios(start, ref, data, average=True)
  out = train.train_preference(start, ref, data, loss="ipo", beta=0.3,
                               optimizer=optax.sgd(0.0), steps=1,
                               batch_size=N_PAIRS, key=jax.random.key(1),
                               average_logps=True)
  want = jnp.mean(losses.ipo(pw - rw, pl - rl, beta=0.3))
  np.testing.assert_allclose(out.history["loss"][0], float(want), rtol=2e-5)


def test_gradient_accumulation_equals_full_batch(ref, data):
  """Four micro-batches of 4 give the same SGD step as one batch of 16 (the
  mean of the micro-batch mean gradients is the batch mean gradient)."""
  results = []
  for micro in (1, 4):
    policy = _gpt(5)
    train.train_preference(policy, ref, data, beta=0.3,
                           optimizer=SGD, steps=2,
                           batch_size=N_PAIRS, micro_batches=micro,
                           key=jax.random.key(2))
    results.append(_params(policy))
  start = _params(_gpt(5))
  moved = max(np.max(np.abs(a - s)) for a, s in zip(results[0], start))
  assert moved > 1e-4
  for a, b in zip(*results):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_cached_reference_equals_online(ref, data, tmp_path):
  """Reference log-probs cached on disk give the online run's metrics and
  parameters; the cache file is keyed by the data (new data, new file)."""
  runs = []
  for mode in ("online", "cached", "cached"):
    policy = _gpt(5)
    out = train.train_preference(policy, ref, data, beta=0.3,
                                 optimizer=ADAM, steps=3,
                                 batch_size=8, key=jax.random.key(3),
                                 ref_logps=mode, cache_dir=str(tmp_path))
    runs.append((out.history, _params(policy)))
  assert len(list(tmp_path.glob("ref_logps-*.npz"))) == 1
  for history, params in runs[1:]:
    for m in history:
      np.testing.assert_allclose(history[m], runs[0][0][m], rtol=1e-5,
                                 atol=1e-6)
    for a, b in zip(params, runs[0][1]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  other = data._replace(chosen=data.rejected, rejected=data.chosen,
                        chosen_mask=data.rejected_mask,
                        rejected_mask=data.chosen_mask)
  train.train_preference(_gpt(5), ref, other, beta=0.3,
                         optimizer=ADAM, steps=1, batch_size=8,
                         key=jax.random.key(3), ref_logps="cached",
                         cache_dir=str(tmp_path))
  assert len(list(tmp_path.glob("ref_logps-*.npz"))) == 2


class _Crash(Exception):
  pass


def _crash_at_5(step, model):
  if step == 5:
    raise _Crash
  return {}


def test_resume_is_bit_for_bit(ref, data, tmp_path):
  """A run checkpointing every 2 steps crashes after step 5 (step 5's work
  is lost); a new call resumes from the latest checkpoint (step 4) and its
  parameters and metric history equal those of an uninterrupted 7-step run
  exactly, with gradient accumulation and Adam. Two checkpoints are kept."""
  kwargs = dict(beta=0.3, batch_size=8, micro_batches=2, optimizer=ADAM,
                key=jax.random.key(4), steps=7)
  whole = _gpt(5)
  want = train.train_preference(whole, ref, data, **kwargs)
  with pytest.raises(_Crash):
    train.train_preference(_gpt(5), ref, data, checkpoint_dir=str(tmp_path),
                           checkpoint_every=2, eval_fn=_crash_at_5,
                           eval_every=1, **kwargs)
  assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) \
      == ["2", "4"]
  resumed = _gpt(5)                          # a fresh process would start so
  got = train.train_preference(resumed, ref, data,
                               checkpoint_dir=str(tmp_path),
                               checkpoint_every=2, **kwargs)
  assert got.step == 7 and len(got.history["loss"]) == 7
  for m in want.history:
    np.testing.assert_array_equal(got.history[m], want.history[m])
  for a, b in zip(_params(resumed), _params(whole)):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(np.concatenate(_params(whole)),
                            np.concatenate(_params(_gpt(5))))


@pytest.mark.slow
def test_training_raises_true_reward():
  """The command line runs the task end to end (SFT, pairs, DPO, sampled
  evaluation): DPO on clean BT labels raises the true reward above the
  reference's and wins against it."""
  out = train.main(["--steps", "40", "--sft-steps", "1", "--pairs", "256",
                    "--batch-size", "32", "--lr", "3e-3", "--width", "16",
                    "--depth", "1", "--log-every", "0",
                    "--eval-prompts", "512"])
  (step, final), = out.evals
  assert step == 40
  assert final["reward"] > final["ref_reward"] + 0.3, final
  assert final["win_rate"] > 0.6, final
  assert final["kl"] > 0, final


def test_bad_input_errors(ref, data):
  common = dict(beta=0.3, optimizer=optax.sgd(0.1), steps=1,
                key=jax.random.key(0))
  policy = nnx.clone(ref)
  bad = data._replace(chosen=data.chosen.at[0, 5].set(CFG.vocab_size))
  with pytest.raises(ValueError, match=r"data.chosen must lie in \[0, 11\)"):
    train.train_preference(policy, ref, bad, batch_size=4, **common)
  empty = data._replace(rejected_mask=data.rejected_mask.at[3].set(False))
  with pytest.raises(ValueError, match="all zeros in rows"):
    train.train_preference(policy, ref, empty, batch_size=4, **common)
  dev = jax.devices()[0]
  mesh = Mesh(np.array([dev] * 3).reshape(3, 1), ("data", "model"))
  with pytest.raises(ValueError, match="data axis .* must divide"):
    train.train_preference(policy, ref, data, batch_size=4, mesh=mesh,
                           **common)
  wrong = Mesh(np.array([dev]).reshape(1, 1), ("batch", "model"))
  with pytest.raises(ValueError, match="axes"):
    train.train_preference(policy, ref, data, batch_size=4, mesh=wrong,
                           **common)
  with pytest.raises(ValueError, match="not a pairwise loss"):
    train.train_preference(policy, ref, data, loss="pl_dpo", batch_size=4,
                           **common)
  with pytest.raises(ValueError, match="unknown loss"):
    train.train_preference(policy, ref, data, loss="dpoo", batch_size=4,
                           **common)
  with pytest.raises(ValueError, match="micro_batches"):
    train.train_preference(policy, ref, data, batch_size=4, micro_batches=3,
                           **common)
  with pytest.raises(ValueError, match="batch_size"):
    train.train_preference(policy, ref, data, batch_size=N_PAIRS + 1,
                           **common)
  with pytest.raises(ValueError, match="needs a reference"):
    train.train_preference(policy, None, data, batch_size=4, **common)


_DEVICES = r"""
import jax, numpy as np, optax
from flax import nnx
from jax.sharding import Mesh, PartitionSpec as P
from prefsim import llm
from prefsim.llm import task, train
assert jax.device_count() == 8
cfg = task.TaskConfig(prompt_len=3, response_len=6)
def gpt(seed):
  return llm.GPT(llm.GPTConfig(vocab_size=cfg.vocab_size, context=cfg.length,
                               width=16, depth=1, heads=2), rngs=nnx.Rngs(seed))
ref = gpt(0)
data = task.preference_pairs(jax.random.key(1), ref, cfg, 16)
mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
runs = []
for m in (None, mesh):
  policy = gpt(5)
  out = train.train_preference(policy, ref, data, beta=0.3,
                               optimizer=optax.sgd(1.0), steps=1,
                               batch_size=8, key=jax.random.key(2), mesh=m)
  runs.append((out.history["loss"], policy))
kernel = nnx.state(runs[1][1])["blocks"][0]["mlp"]["fc_kernel"][...]
assert kernel.sharding.spec == P("data", "model"), kernel.sharding
assert len({s.data.unsafe_buffer_pointer()
            for s in kernel.addressable_shards}) == 8
np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-6)
start = jax.tree.leaves(nnx.state(gpt(5)))
one = jax.tree.leaves(nnx.state(runs[0][1]))
eight = jax.tree.leaves(nnx.state(runs[1][1]))
moved = 0.0
for s, a, b in zip(start, one, eight):
  # SGD with step 1: params - start = -gradient, on 1 and on 8 devices.
  ga, gb = np.asarray(s) - np.asarray(a), np.asarray(s) - np.asarray(b)
  np.testing.assert_allclose(gb, ga, rtol=1e-5, atol=1e-7)
  moved = max(moved, np.abs(ga).max())
assert moved > 1e-4
finals = []
for m in (None, mesh):              # Adam: state sharded like the parameters
  policy = gpt(5)
  train.train_preference(policy, ref, data, beta=0.3, micro_batches=2,
                         optimizer=optax.adam(1e-2), steps=3, batch_size=16,
                         key=jax.random.key(2), mesh=m)
  finals.append(jax.tree.leaves(nnx.state(policy)))
# atol: 1% of one Adam step (lr 1e-2). The key bias has an exactly zero
# gradient (softmax is shift invariant), so Adam moves it by rounding noise
# of order 1e-5, differently on 1 and 8 devices.
for a, b in zip(*finals):
  np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4,
                             atol=1e-4)
print("OK")
"""


@pytest.mark.slow
def test_one_and_eight_devices_agree():
  """On a 4 x 2 (data x model) mesh of 8 CPU devices, with the MLP kernel
  really sharded (8 shards), one SGD step gives the loss and the gradient
  (step 1: the parameter change) of the one-device run, and three Adam
  steps with two micro-batches give its parameters."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  out = run_on_cpu_devices(_DEVICES, 8, cwd=repo, timeout=600)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


_KILL_STEPS = 200


def _cli(checkpoint_dir: pathlib.Path) -> list[str]:
  return [sys.executable, "-m", "prefsim.llm", "--steps", str(_KILL_STEPS),
          "--sft-steps", "1", "--pairs", "128", "--batch-size", "16",
          "--width", "16", "--depth", "1", "--heads", "2", "--log-every",
          "0", "--eval-prompts", "16", "--checkpoint-every", "10",
          "--checkpoint-dir", str(checkpoint_dir)]


def _saved_steps(directory: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
  """The command line is killed with SIGKILL (no clean-up runs, a save may be
  under way) once a checkpoint exists and before the last step; the same
  command then resumes from the latest complete checkpoint, and its final
  parameters, optimiser state and metric history equal those of a run that
  was never interrupted, bit for bit."""
  # One persistent compilation cache for the three runs: only the first
  # compiles.
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  killed, whole = tmp_path / "killed", tmp_path / "whole"
  proc = subprocess.Popen(_cli(killed), env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and proc.poll() is None:
    if killed.exists() and any(s >= 20 for s in _saved_steps(killed)):
      proc.send_signal(signal.SIGKILL)
      break
    time.sleep(0.01)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == -signal.SIGKILL, err[-2000:]
  at_kill = _saved_steps(killed)
  assert at_kill and max(at_kill) < _KILL_STEPS, at_kill
  for directory in (killed, whole):
    done = subprocess.run(_cli(directory), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
  reader = ocp.StandardCheckpointer()
  got = reader.restore((killed / str(_KILL_STEPS) / "state").resolve())
  want = reader.restore((whole / str(_KILL_STEPS) / "state").resolve())
  got_leaves, got_tree = jax.tree.flatten(got)
  want_leaves, want_tree = jax.tree.flatten(want)
  assert got_tree == want_tree
  for a, b in zip(got_leaves, want_leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  history = [json.loads((d / str(_KILL_STEPS) / "history" / "metadata")
                        .read_text()) for d in (killed, whole)]
  assert history[0] == history[1] and len(history[0]["loss"]) == _KILL_STEPS
