"""Tests of prefsim.llm.model (GPT, KV cache, sampling) and prefsim.llm.gpt2.

References are independent of the code under test: a float64 NumPy GPT-2
forward pass written from Hugging Face's modeling_gpt2.py on a checkpoint
the test writes itself (with its own safetensors writer), a full-forward
argmax loop for greedy decoding, and the softmax over the top-k logits for
sampling frequencies. Models are tiny (V 48, D 32, 2 layers, 4 heads,
context 24) and built once per module, with weights perturbed away from
GPT-2's near-zero initialisation so that logits differ clearly.
"""

from __future__ import annotations

import json
import pathlib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefsim import llm
from prefsim import testing as pt

CFG = llm.GPTConfig(vocab_size=48, context=24, width=32, depth=2, heads=4)
# float32 round-off on O(1) logits; also under x64, where the model computes
# in float64 but jax.nn.dot_product_attention takes its softmax in float32.
TOL = 2e-5


def _random_model(cfg, seed, scale=0.3):
  """A GPT whose parameters are N(0, scale^2) draws (LayerNorm scales 1 +
  N(0, scale^2)), far from GPT-2's near-zero init so logits differ clearly.
  Built from the abstract model, so no initialiser is compiled."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: llm.GPT(
      cfg, rngs=nnx.Rngs(0))))
  rng = np.random.default_rng(seed)

  def draw(path, x):
    noise = scale * rng.standard_normal(x.shape)
    if path[-2].key == "scale":
      noise += 1.0
    return jnp.asarray(noise.astype(x.dtype))

  return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, state))


@pytest.fixture(scope="module")
def model():
  return _random_model(CFG, 1)


_forward = nnx.jit(lambda m, tokens, mask: m(tokens, mask))
_decode = nnx.jit(lambda m, tokens, cache, mask: m.decode(tokens, cache, mask))


def _tokens(seed, shape):
  return jax.random.randint(jax.random.key(seed), shape, 0, CFG.vocab_size)


# --------------------------------------------------------------------------
# The forward pass
# --------------------------------------------------------------------------


def test_logits_are_causal(model):
  """Changing token t leaves the logits at positions < t unchanged (and
  changes those at t and after)."""
  tokens = _tokens(0, (2, 14))
  t = 7
  changed = tokens.at[:, t].set((tokens[:, t] + 5) % CFG.vocab_size)
  a = np.asarray(_forward(model, tokens, None))
  b = np.asarray(_forward(model, changed, None))
  np.testing.assert_allclose(a[:, :t], b[:, :t], rtol=0, atol=TOL)
  assert np.min(np.max(np.abs(a[:, t:] - b[:, t:]), axis=-1)) > 1e-3


def test_padding_does_not_change_real_logits(model):
  """Left- or right-padded rows (with their mask) have the logits of the
  unpadded row at their real tokens, and so the same completion log-probs;
  right padding needs no mask."""
  real = _tokens(1, (2, 10))
  pads = _tokens(2, (2, 4))
  ones = jnp.ones((2, 10), bool)
  no = jnp.zeros((2, 4), bool)
  base = np.asarray(_forward(model, real, None))
  left = np.asarray(_forward(model, jnp.concatenate([pads, real], 1),
                             jnp.concatenate([no, ones], 1)))
  right = np.asarray(_forward(model, jnp.concatenate([real, pads], 1),
                              jnp.concatenate([ones, no], 1)))
  right_unmasked = np.asarray(_forward(model, jnp.concatenate([real, pads], 1),
                                       None))
  np.testing.assert_allclose(left[:, 4:], base, rtol=0, atol=TOL)
  np.testing.assert_allclose(right[:, :10], base, rtol=0, atol=TOL)
  np.testing.assert_allclose(right_unmasked[:, :10], base, rtol=0, atol=TOL)
  completion = jnp.zeros((2, 10), bool).at[:, 6:].set(True)
  want = llm.sequence_logps(base, real, completion)
  got = llm.sequence_logps(left, jnp.concatenate([pads, real], 1),
                           jnp.concatenate([no, completion], 1))
  np.testing.assert_allclose(got, want, rtol=0, atol=10 * TOL)


def test_cached_decode_equals_full_forward(model):
  """Reading a (left-padded) batch as a 5-token prompt and then one token at
  a time through the KV cache gives the logits of the full forward pass at
  every position."""
  tokens = _tokens(3, (2, 14))
  mask = jnp.ones((2, 14), bool).at[1, :3].set(False)
  full = np.asarray(_forward(model, tokens, mask))
  cache = model.init_cache(2, 16)
  logits, cache = _decode(model, tokens[:, :5], cache, mask[:, :5])
  pieces = [logits]
  for t in range(5, 14):
    logits, cache = _decode(model, tokens[:, t:t + 1], cache, mask[:, t:t + 1])
    pieces.append(logits)
  np.testing.assert_allclose(np.concatenate(pieces, 1), full, rtol=0, atol=TOL)
  assert int(cache.index) == 14
  np.testing.assert_array_equal(cache.position, [14, 11])
  np.testing.assert_array_equal(cache.valid[:, :14], mask)


def test_jit_matches_eager_and_out_of_vocab_inside_jit(model):
  """jit equals eager; inside jit a token outside [0, V) makes every logit
  of its row NaN (attention spreads it: 0 * NaN) and leaves the other rows
  finite."""
  tokens = _tokens(4, (2, 14))
  mask = jnp.ones((2, 14), bool).at[0, :2].set(False)
  pt.assert_jit_matches_eager(lambda t, m: model(t, m), tokens, mask,
                              rtol=1e-5, atol=TOL)
  bad = np.asarray(_forward(model, tokens.at[0, 5].set(CFG.vocab_size), mask))
  assert np.all(np.isnan(bad[0])) and np.all(np.isfinite(bad[1]))


def test_bfloat16_compute_keeps_float32_parameters(model):
  """dtype=bfloat16: parameters stay float32, logits come back float32 and
  agree with the float32 model to bfloat16 precision."""
  cfg16 = llm.GPTConfig(vocab_size=48, context=24, width=32, depth=2,
                        heads=4, dtype=jnp.bfloat16, param_dtype=jnp.float32)
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: llm.GPT(cfg16,
                                                         rngs=nnx.Rngs(0))))
  fast = nnx.merge(graphdef, jax.tree.map(lambda x: x.astype(jnp.float32),
                                          nnx.state(model)))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(fast)))
  tokens = _tokens(5, (2, 14))
  low = _forward(fast, tokens, None)
  high = np.asarray(_forward(model, tokens, None), np.float64)
  assert low.dtype == jnp.float32
  assert fast.init_cache(2, 4).k.dtype == jnp.bfloat16
  # bfloat16 keeps 8 significant bits (relative error 2^-8 per rounding);
  # two blocks of O(1) activations give errors of a few percent of the
  # logits' spread.
  err = np.max(np.abs(np.asarray(low) - high)) / np.std(high)
  assert err < 0.1, err


def test_parameters_carry_logical_axes(model):
  """Every parameter is annotated with one logical axis name (or None) per
  dimension from LOGICAL_AXES, rules map them to mesh axes, and
  n_params counts the parameters."""
  params = nnx.state(model, nnx.Param)
  count = 0
  for path, var in jax.tree_util.tree_leaves_with_path(
      params, is_leaf=lambda x: isinstance(x, nnx.Variable)):
    axes = var.get_metadata()["out_sharding"]
    assert len(axes) == var[...].ndim, path
    assert set(axes) <= set(llm.LOGICAL_AXES) | {None}, path
    count += var[...].size
  assert count == CFG.n_params
  with nnx.logical_axis_rules((("embed", "data"), ("mlp", "model"))):
    specs = nnx.get_partition_spec(params)
  assert tuple(specs["blocks"][0]["mlp"]["fc_kernel"].get_value()) == (
      "data", "model")
  untied = llm.GPTConfig(vocab_size=48, context=24, width=32, depth=2,
                         heads=4, tie_embeddings=False)
  assert untied.n_params == CFG.n_params + 32 * 48


_SHARDED = r"""
import jax, numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from prefsim import llm
cfg = llm.GPTConfig(vocab_size=48, context=24, width=32, depth=2, heads=4)
model = llm.GPT(cfg, rngs=nnx.Rngs(0))
tokens = jax.random.randint(jax.random.key(0), (4, 12), 0, 48)
want = np.asarray(model(tokens))
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
rules = (("vocab", "model"), ("context", None), ("embed", "data"),
         ("heads", "model"), ("head_dim", None), ("mlp", "model"))
graphdef, state = nnx.split(model)
with nnx.logical_axis_rules(rules):
  specs = nnx.get_partition_spec(state)
state = jax.device_put(state, jax.tree.map(lambda s: NamedSharding(mesh, s),
                                           specs))
kernel = state["blocks"][0]["mlp"]["fc_kernel"][...]
assert kernel.sharding.spec == P("data", "model"), kernel.sharding
tokens = jax.device_put(tokens, NamedSharding(mesh, P("data")))
got = jax.jit(lambda s, t: nnx.merge(graphdef, s)(t))(state, tokens)
np.testing.assert_allclose(np.asarray(got.block_until_ready()), want,
                           rtol=1e-5, atol=1e-5)
print("OK")
"""


@pytest.mark.slow
def test_sharded_forward_matches_one_device():
  """With parameters sharded by their logical axes (FSDP over `data`,
  tensor parallel over `model`) on a 2 x 2 mesh of CPU devices, the forward
  pass equals the one-device result."""
  repo = pathlib.Path(__file__).resolve().parents[2]
  out = pt.run_on_cpu_devices(_SHARDED, 4, cwd=repo, timeout=300)
  assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------


PROMPT = _tokens(6, (2, 6))
PROMPT_MASK = jnp.ones((2, 6), bool).at[1, :2].set(False)
NEW = 8


def _greedy_reference(model):
  """Argmax decoding by full forward passes over a growing buffer."""
  buf = jnp.concatenate([PROMPT, jnp.zeros((2, NEW), PROMPT.dtype)], 1)
  mask = jnp.concatenate([PROMPT_MASK, jnp.ones((2, NEW), bool)], 1)
  out = []
  for t in range(NEW):
    logits = _forward(model, buf, mask)[:, 6 + t - 1]
    nxt = jnp.argmax(logits, axis=-1)
    out.append(nxt)
    buf = buf.at[:, 6 + t].set(nxt)
  return np.stack(out, 1)


def test_greedy_limits_equal_argmax_decoding(model):
  """Temperature 0, a vanishing temperature (1e-6), and top_k = 1 at
  temperature 1 all give the argmax decoding of full forward passes."""
  want = _greedy_reference(model)
  key = jax.random.key(0)
  for kwargs in ({"temperature": 0.0}, {"temperature": 1e-6},
                 {"temperature": 1.0, "top_k": 1}):
    got = llm.sample(key, model, PROMPT, max_new_tokens=NEW,
                     prompt_mask=PROMPT_MASK, **kwargs)
    np.testing.assert_array_equal(got, want, err_msg=str(kwargs))


def test_top_k_sampling_frequencies_and_support(model):
  """Top-k sampling at temperature T draws from softmax(z/T) over the k
  largest logits: first-token frequencies over 2000 rows lie within 4.5
  standard errors of those probabilities, and no drawn token, at any step,
  lies outside the top k of the full forward pass's logits (nor outside
  [0, V))."""
  rows, k, temp = 2000, 4, 1.5
  prompt = jnp.tile(PROMPT[0:1], (rows, 1))
  got = np.asarray(llm.sample(jax.random.key(1), model, prompt,
                              max_new_tokens=3, temperature=temp, top_k=k))
  assert got.min() >= 0 and got.max() < CFG.vocab_size
  seq = jnp.concatenate([prompt, jnp.asarray(got)], 1)
  logits = np.asarray(_forward(model, seq, None))[:, 5:8]   # predict 6..8
  topk = np.argsort(-logits, axis=-1)[..., :k]
  assert np.all(np.any(topk == got[..., None], axis=-1))
  z = logits[0, 0, topk[0, 0]] / temp
  p = np.exp(z - z.max())
  p /= p.sum()
  freq = np.array([np.mean(got[:, 0] == tok) for tok in topk[0, 0]])
  bound = 4.5 * np.sqrt(p * (1 - p) / rows)
  assert np.all(np.abs(freq - p) <= bound), (freq, p, bound)


# --------------------------------------------------------------------------
# GPT-2 checkpoints
# --------------------------------------------------------------------------


_ST_DTYPES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32",
              np.dtype("<f2"): "F16", np.dtype("<i8"): "I64",
              np.dtype("<i4"): "I32", np.dtype("u1"): "U8",
              np.dtype("?"): "BOOL"}


def _write_safetensors(path, tensors, raw=None):
  """A safetensors file written from the format's definition (8-byte
  little-endian header length, JSON header, raw bytes); ``raw`` adds
  entries given as (dtype name, shape, bytes)."""
  header, blobs, offset = {"__metadata__": {"format": "np"}}, [], 0
  items = [(n, _ST_DTYPES[a.dtype], a.shape, np.ascontiguousarray(a).tobytes())
           for n, a in tensors.items()]
  items += [(n, *entry) for n, entry in (raw or {}).items()]
  for name, dtype, shape, data in items:
    header[name] = {"dtype": dtype, "shape": list(shape),
                    "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
  head = json.dumps(header).encode()
  head += b" " * (-len(head) % 8)
  pathlib.Path(path).write_bytes(len(head).to_bytes(8, "little") + head
                                 + b"".join(blobs))


def _gpt2_tensors(seed, d, layers, vocab, n_pos, inner, tied):
  """Random GPT-2 weights under Hugging Face's names (transformer. prefix)."""
  rng = np.random.default_rng(seed)

  def w(*shape):
    return (0.3 * rng.standard_normal(shape)).astype(np.float32)

  t = {"transformer.wte.weight": w(vocab, d),
       "transformer.wpe.weight": w(n_pos, d),
       "transformer.ln_f.weight": 1 + w(d), "transformer.ln_f.bias": w(d)}
  for i in range(layers):
    p = f"transformer.h.{i}."
    t.update({
        p + "ln_1.weight": 1 + w(d), p + "ln_1.bias": w(d),
        p + "attn.c_attn.weight": w(d, 3 * d), p + "attn.c_attn.bias": w(3 * d),
        p + "attn.c_proj.weight": w(d, d), p + "attn.c_proj.bias": w(d),
        p + "ln_2.weight": 1 + w(d), p + "ln_2.bias": w(d),
        p + "mlp.c_fc.weight": w(d, inner), p + "mlp.c_fc.bias": w(inner),
        p + "mlp.c_proj.weight": w(inner, d), p + "mlp.c_proj.bias": w(d),
        # the causal-mask buffer that older checkpoints carry
        p + "attn.bias": np.tril(np.ones((n_pos, n_pos), np.float32))[
            None, None],
    })
  if not tied:
    t["lm_head.weight"] = w(vocab, d)
  return t


def _numpy_gpt2(tensors, n_head, eps, tokens):
  """GPT-2's forward pass in float64 NumPy, from modeling_gpt2.py."""
  g = {k.removeprefix("transformer."): v.astype(np.float64)
       for k, v in tensors.items()}
  b, length = tokens.shape
  d = g["wte.weight"].shape[1]
  hd = d // n_head

  def ln(x, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g[name + ".weight"] + g[name +
                                                                  ".bias"]

  def heads(x):
    return x.reshape(b, length, n_head, hd).transpose(0, 2, 1, 3)

  def gelu_new(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

  x = g["wte.weight"][tokens] + g["wpe.weight"][np.arange(length)]
  causal = np.tril(np.ones((length, length), bool))
  i = 0
  while f"h.{i}.ln_1.weight" in g:
    p = f"h.{i}."
    h = ln(x, p + "ln_1")
    qkv = h @ g[p + "attn.c_attn.weight"] + g[p + "attn.c_attn.bias"]
    q, k, v = (heads(a) for a in np.split(qkv, 3, axis=-1))
    att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    att = np.where(causal, att, -np.inf)
    att = np.exp(att - att.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    o = (att @ v).transpose(0, 2, 1, 3).reshape(b, length, d)
    x = x + o @ g[p + "attn.c_proj.weight"] + g[p + "attn.c_proj.bias"]
    h = ln(x, p + "ln_2")
    h = gelu_new(h @ g[p + "mlp.c_fc.weight"] + g[p + "mlp.c_fc.bias"])
    x = x + h @ g[p + "mlp.c_proj.weight"] + g[p + "mlp.c_proj.bias"]
    i += 1
  x = ln(x, "ln_f")
  return x @ g.get("lm_head.weight", g["wte.weight"]).T


@pytest.mark.parametrize("tied, inner, eps", [(True, 128, 1e-5),
                                              (False, 48, 1e-4)])
def test_gpt2_checkpoint_matches_numpy_forward(tmp_path, tied, inner, eps):
  """A GPT-2 checkpoint (config.json + model.safetensors, Hugging Face
  names, written here from random weights) loads into a GPT whose logits
  equal an independent float64 NumPy GPT-2 forward pass; tied and untied
  heads, default and other n_inner and epsilon."""
  d, layers, heads, vocab, n_pos = 32, 2, 4, 48, 24
  tensors = _gpt2_tensors(0, d, layers, vocab, n_pos, inner, tied)
  _write_safetensors(tmp_path / "model.safetensors", tensors)
  (tmp_path / "config.json").write_text(json.dumps({
      "model_type": "gpt2", "activation_function": "gelu_new",
      "n_embd": d, "n_layer": layers, "n_head": heads, "n_positions": n_pos,
      "vocab_size": vocab, "n_inner": inner, "layer_norm_epsilon": eps,
      "tie_word_embeddings": tied}))
  loaded = llm.load_gpt2(tmp_path)
  assert loaded.config.mlp_width == inner and loaded.config.norm_eps == eps
  assert loaded.config.tie_embeddings == tied
  tokens = np.asarray(_tokens(7, (2, 14)))
  want = _numpy_gpt2(tensors, heads, eps, tokens)
  got = np.asarray(_forward(loaded, jnp.asarray(tokens), None))
  np.testing.assert_allclose(got, want, rtol=0, atol=10 * TOL)


def test_read_safetensors_matches_the_package(tmp_path):
  """read_safetensors returns exactly what safetensors.numpy wrote (every
  dtype it writes), and decodes bfloat16 bytes (1.0, -2.0, 0.5 by hand)."""
  rng = np.random.default_rng(0)
  arrays = {"f64": rng.standard_normal((2, 3)),
            "f32": rng.standard_normal(5).astype(np.float32),
            "f16": rng.standard_normal((1, 4)).astype(np.float16),
            "i64": rng.integers(-9, 9, (3,)), "i32": np.arange(4,
                                                               dtype=np.int32),
            "u8": np.arange(6, dtype=np.uint8).reshape(2, 3),
            "b": np.array([True, False]), "empty": np.zeros((0, 3),
                                                            np.float32)}
  bf16 = {"bf16": ("BF16", (3,), b"\x80\x3f\x00\xc0\x00\x3f")}
  _write_safetensors(tmp_path / "own.safetensors", arrays, raw=bf16)
  own = llm.read_safetensors(tmp_path / "own.safetensors")
  assert own["bf16"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(own.pop("bf16").astype(np.float32),
                                [1.0, -2.0, 0.5])
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  safetensors_numpy.save_file(arrays, str(tmp_path / "pkg.safetensors"),
                              metadata={"source": "test"})
  for read in (own, llm.read_safetensors(tmp_path / "pkg.safetensors")):
    assert set(read) == set(arrays)
    for name, arr in arrays.items():
      assert read[name].dtype == arr.dtype and read[name].shape == arr.shape
      np.testing.assert_array_equal(read[name], arr)


@pytest.mark.parametrize("content, match", [
    (b"\x07\x00", "shorter than 8 bytes"),
    ((1000).to_bytes(8, "little") + b"{}", "runs past the end"),
    ((3).to_bytes(8, "little") + b"{x}", "not JSON"),
    ((2).to_bytes(8, "little") + b"[]", "not a JSON object"),
])
def test_read_safetensors_rejects_broken_files(tmp_path, content, match):
  """Broken files raise ValueError saying what is wrong."""
  path = tmp_path / "broken.safetensors"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=match):
    llm.read_safetensors(path)


def test_read_safetensors_rejects_bad_entries(tmp_path):
  """An unknown dtype or offsets that do not match the shape raise."""
  path = tmp_path / "bad.safetensors"
  _write_safetensors(path, {}, raw={"x": ("F7", (2,), b"\x00" * 8)})
  with pytest.raises(ValueError, match="known dtypes"):
    llm.read_safetensors(path)
  _write_safetensors(path, {}, raw={"x": ("F32", (3,), b"\x00" * 8)})
  with pytest.raises(ValueError, match="needs 12 bytes"):
    llm.read_safetensors(path)


def _checkpoint(folder, tensors, **config):
  folder.mkdir(exist_ok=True)
  _write_safetensors(folder / "model.safetensors", tensors)
  base = {"n_embd": 32, "n_layer": 1, "n_head": 4, "n_positions": 24,
          "vocab_size": 48}
  (folder / "config.json").write_text(json.dumps({**base, **config}))
  return folder


def test_load_gpt2_rejects_bad_checkpoints(tmp_path):
  """Missing files, missing, misshapen or unused tensors, and unsupported
  config variants raise, naming the problem."""
  good = _gpt2_tensors(0, 32, 1, 48, 24, 128, True)
  with pytest.raises(FileNotFoundError, match="config.json"):
    llm.load_gpt2(tmp_path)
  missing = dict(good)
  del missing["transformer.h.0.mlp.c_fc.bias"]
  with pytest.raises(ValueError, match=r"lacks 'h.0.mlp.c_fc.bias'"):
    llm.load_gpt2(_checkpoint(tmp_path / "a", missing))
  misshapen = dict(good, **{"transformer.wpe.weight": np.zeros((20, 32),
                                                               np.float32)})
  with pytest.raises(ValueError, match=r"'wpe.weight' has shape \(20, 32\)"):
    llm.load_gpt2(_checkpoint(tmp_path / "b", misshapen))
  extra = dict(good, **{"transformer.h.1.ln_1.weight": np.ones(32,
                                                               np.float32)})
  with pytest.raises(ValueError, match="does not use"):
    llm.load_gpt2(_checkpoint(tmp_path / "c", extra))
  untied = dict(good, **{"lm_head.weight": np.ones((48, 32), np.float32)})
  with pytest.raises(ValueError, match="lm_head.weight differs"):
    llm.load_gpt2(_checkpoint(tmp_path / "d", untied))
  with pytest.raises(ValueError, match="activation_function = 'relu'"):
    llm.load_gpt2(_checkpoint(tmp_path / "e", good,
                              activation_function="relu"))
  with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
    llm.gpt2_config({"n_embd": 32, "n_layer": 1, "n_head": 4,
                     "n_positions": 24, "vocab_size": 48,
                     "scale_attn_by_inverse_layer_idx": True})
  with pytest.raises(ValueError, match=r"lacks \['n_head'\]"):
    llm.gpt2_config({"n_embd": 32, "n_layer": 1, "n_positions": 24,
                     "vocab_size": 48})


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    ({"heads": 5}, ValueError, "heads must divide width"),
    ({"vocab_size": 1}, ValueError, "vocab_size must be >= 2"),
    ({"width": 32.0}, TypeError, "width must be a Python int"),
    ({"norm_eps": 0.0}, ValueError, "norm_eps must be a float > 0"),
    ({"dtype": jnp.int32}, TypeError, "dtype must be a floating dtype"),
    ({"mlp_width": 0}, ValueError, "mlp_width must be >= 1"),
])
def test_bad_config_raises(kwargs, error, match):
  """A config that cannot describe a model raises, naming the field."""
  base = {"vocab_size": 48, "context": 24, "width": 32, "depth": 2,
          "heads": 4}
  with pytest.raises(error, match=match):
    llm.GPTConfig(**{**base, **kwargs})


def test_bad_model_and_sampling_input_raises(model):
  """Tokens outside the vocabulary, wrong shapes, masks, contexts, cache
  overflows, temperatures, top-k and prompt masks raise eagerly."""
  tokens = _tokens(8, (2, 6))
  ones = jnp.ones((2, 6), bool)
  key = jax.random.key(0)
  cases = [
      (lambda: model(tokens.at[1, 2].set(48)), ValueError,
       r"tokens must lie in \[0, 48\)"),
      (lambda: model(tokens.at[0, 0].set(-1)), ValueError,
       r"tokens must lie in \[0, 48\)"),
      (lambda: model(tokens[0]), ValueError, "tokens must have 2 axes"),
      (lambda: model(tokens.astype(jnp.float32)), TypeError,
       "integer indices"),
      (lambda: model(_tokens(9, (1, 25))), ValueError, "more than the context"),
      (lambda: model(tokens, ones[:, :5]), ValueError,
       "mask must have the shape"),
      (lambda: model(tokens, ones.astype(jnp.int32)), TypeError,
       "mask must be boolean"),
      (lambda: model.init_cache(2, 25), ValueError,
       r"length must lie in \[1, context\]"),
      (lambda: model.decode(tokens, model.init_cache(2, 5)), ValueError,
       "free slots"),
      (lambda: model.decode(tokens, model.init_cache(3, 8)), ValueError,
       "batch"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=2,
                          temperature=-0.1), ValueError, "temperature"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=2, top_k=0),
       ValueError, "top_k must be >= 1"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=2, top_k=49),
       ValueError, r"top_k must lie in \[1, V\]"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=19), ValueError,
       "exceeds the context"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=0), ValueError,
       "max_new_tokens must be >= 1"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=2,
                          prompt_mask=ones.at[0, 5].set(False)), ValueError,
       "left padding"),
      (lambda: llm.sample(key, model, tokens, max_new_tokens=2,
                          prompt_mask=ones.at[1].set(False)), ValueError,
       r"rows \[1\] are all padding"),
      (lambda: llm.sample(key, model, tokens.at[0, 0].set(99),
                          max_new_tokens=2), ValueError,
       r"tokens must lie in \[0, 48\)"),
  ]
  for call, error, match in cases:
    with pytest.raises(error, match=match):
      call()
