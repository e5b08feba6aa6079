"""Tests of prefsim.run: Algorithm, run and sweep."""

from __future__ import annotations

import pathlib
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import prefsim
from prefsim.run import seed_keys
from prefsim.testing import run_on_cpu_devices

REPO = pathlib.Path(__file__).resolve().parents[1]


def _walk_init(key, problem):
  return {"x": jax.random.normal(key, problem["drift"].shape), "t": 0}


def _walk_step(key, state, problem):
  x = state["x"] + problem["drift"] + jax.random.normal(key, state["x"].shape)
  return {"x": x, "t": state["t"] + 1}, {"x": x, "norm": jnp.sum(x**2)}


WALK = prefsim.Algorithm(_walk_init, _walk_step)
PROBLEM = {"drift": jnp.array([0.1, -0.2, 0.3])}


def _loop_reference(key, problem, n_steps):
  """The documented key schedule, stepped by a Python loop, no scan."""
  init_key, steps_key = jax.random.split(key)
  state = _walk_init(init_key, problem)
  infos = []
  for step_key in jax.random.split(steps_key, n_steps):
    state, info = _walk_step(step_key, state, problem)
    infos.append(info)
  return state, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *infos)


def test_run_equals_python_loop_of_steps():
  key = jax.random.key(3)
  final, infos = prefsim.run(key, WALK, PROBLEM, 7)
  ref_final, ref_infos = _loop_reference(key, PROBLEM, 7)
  np.testing.assert_allclose(final["x"], ref_final["x"], rtol=1e-6)
  assert int(final["t"]) == 7
  assert infos["x"].shape == (7, 3) and infos["norm"].shape == (7,)
  np.testing.assert_allclose(infos["x"], ref_infos["x"], rtol=1e-6)


def test_run_accepts_raw_uint32_keys():
  final, _ = prefsim.run(jax.random.PRNGKey(0), WALK, PROBLEM, 3)
  ref, _ = _loop_reference(jax.random.PRNGKey(0), PROBLEM, 3)
  np.testing.assert_allclose(final["x"], ref["x"], rtol=1e-6)


def test_run_does_not_recompile_on_second_call():
  from prefsim.run import _run_jit
  prefsim.run(jax.random.key(0), WALK, PROBLEM, 5)
  size = _run_jit._cache_size()
  prefsim.run(jax.random.key(1), WALK, {"drift": PROBLEM["drift"] + 1.0}, 5)
  assert _run_jit._cache_size() == size


def test_sweep_equals_per_seed_run_with_fold_in():
  key = jax.random.key(11)
  finals, infos = prefsim.sweep(key, WALK, PROBLEM, 6, n_seeds=5)
  assert finals["x"].shape == (5, 3) and infos["x"].shape == (5, 6, 3)
  for i in range(5):
    final, info = prefsim.run(jax.random.fold_in(key, i), WALK, PROBLEM, 6)
    np.testing.assert_allclose(finals["x"][i], final["x"], rtol=1e-6)
    np.testing.assert_allclose(infos["norm"][i], info["norm"], rtol=1e-6)


def test_sweep_seed_results_do_not_depend_on_sweep_size():
  key = jax.random.key(5)
  small, _ = prefsim.sweep(key, WALK, PROBLEM, 4, n_seeds=3)
  large, _ = prefsim.sweep(key, WALK, PROBLEM, 4, n_seeds=9)
  np.testing.assert_array_equal(small["x"], large["x"][:3])


def test_seed_keys_are_fold_in():
  key = jax.random.key(2)
  keys = seed_keys(key, 4)
  for i in range(4):
    np.testing.assert_array_equal(jax.random.key_data(keys[i]),
                                  jax.random.key_data(jax.random.fold_in(key, i)))


def test_sweep_over_a_batch_of_problems():
  key = jax.random.key(0)
  drifts = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
  finals, infos = prefsim.sweep(key, WALK, {"drift": drifts}, 4, n_seeds=3,
                                problem_axis=0)
  assert finals["x"].shape == (3, 2, 3) and infos["x"].shape == (3, 2, 4, 3)
  for c in range(2):
    per_problem, _ = prefsim.sweep(key, WALK, {"drift": drifts[c]}, 4, 3)
    np.testing.assert_allclose(finals["x"][:, c], per_problem["x"], rtol=1e-6)
  # Same keys across problems: the noise is common, only the drift differs.
  np.testing.assert_allclose(finals["x"][:, 1] - finals["x"][:, 0],
                             jnp.broadcast_to(4 * drifts[1], (3, 3)),
                             rtol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: prefsim.run(0, WALK, PROBLEM, 3), "key must be a jax.random key"),
    (lambda: prefsim.run(jax.random.key(0), (_walk_init, _walk_step),
                         PROBLEM, 3), "algorithm must be a prefsim.Algorithm"),
    (lambda: prefsim.run(jax.random.key(0), WALK, PROBLEM, 0), "n_steps"),
    (lambda: prefsim.run(jax.random.split(jax.random.key(0)), WALK, PROBLEM,
                         3), "single key"),
    (lambda: prefsim.sweep(jax.random.key(0), WALK, PROBLEM, 3, 0), "n_seeds"),
    (lambda: prefsim.sweep(jax.random.key(0), WALK, PROBLEM, 3, 2.0),
     "n_seeds"),
    (lambda: prefsim.sweep(jax.random.key(0), WALK,
                           {"drift": jnp.zeros((2, 3)), "b": jnp.zeros(3)},
                           3, 2, problem_axis=0), "problem_axis"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises((TypeError, ValueError), match=match):
    call()


_EIGHT_DEVICES = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    import prefsim
    sys.path.insert(0, {tests!r})
    from test_run import WALK, PROBLEM
    assert jax.device_count() == 8, jax.devices()
    finals, infos = prefsim.sweep(jax.random.key(7), WALK, PROBLEM, 5, 16)
    shards = infos["x"].addressable_shards
    devices = {{s.device for s in shards}}
    print("devices", len(devices), "shard_rows",
          sorted(s.data.shape[0] for s in shards))
    padded, _ = prefsim.sweep(jax.random.key(7), WALK, PROBLEM, 5, 13)
    np.save({out!r}, np.concatenate([np.asarray(finals["x"]).ravel(),
                                    np.asarray(padded["x"]).ravel()]))
""")


def test_sweep_shards_over_eight_devices_and_matches_one_device(tmp_path):
  out = tmp_path / "eight.npy"
  script = _EIGHT_DEVICES.format(tests=str(REPO / "tests"), out=str(out))
  proc = run_on_cpu_devices(script, 8, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "devices 8 shard_rows [2, 2, 2, 2, 2, 2, 2, 2]" in proc.stdout
  assert jax.device_count() == 1  # this process: the single-device reference
  finals, _ = prefsim.sweep(jax.random.key(7), WALK, PROBLEM, 5, 16)
  padded, _ = prefsim.sweep(jax.random.key(7), WALK, PROBLEM, 5, 13)
  expected = np.concatenate([np.asarray(finals["x"]).ravel(),
                             np.asarray(padded["x"]).ravel()])
  np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)
