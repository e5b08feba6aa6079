r"""A GPT-style decoder in Flax NNX, with a KV cache and sampling.

The architecture is GPT-2's (Radford et al. 2019): learned token and position
embeddings, ``depth`` pre-norm blocks

.. math:: h \leftarrow h + \operatorname{Attn}(\operatorname{LN}_1(h)),
          \qquad
          h \leftarrow h + W_2\,\operatorname{gelu}(W_1\operatorname{LN}_2(h)
          + b_1) + b_2,

a final LayerNorm, and a language-model head tied to the token embedding
(``tie_embeddings=False`` gives a separate ``[width, V]`` head). Attention is
causal multi-head attention through :func:`jax.nn.dot_product_attention`
(one fused einsum for queries, keys and values); GELU is the tanh
approximation (GPT-2's ``gelu_new``). So a GPT-2 checkpoint loads into it
exactly (:func:`prefsim.llm.load_gpt2`).

* :class:`GPTConfig` — a small frozen dataclass: vocabulary, context,
  width, depth, heads, MLP width, tying, LayerNorm epsilon, compute and
  parameter dtypes.
* :class:`GPT` — the model: ``model(tokens, mask)`` gives logits ``[B, L,
  V]``; ``model.init_cache`` and ``model.decode`` run it incrementally over a
  :class:`KVCache`.
* :func:`sample` — jitted autoregressive sampling (temperature, top-k) from
  left-padded prompts, one compiled ``lax.scan`` over the new tokens.

Padding: ``mask[b, t] = False`` marks padding. Queries never attend to
padded keys, and position ids count real tokens only (``cumsum(mask) - 1``,
as Hugging Face's GPT-2 generation does), so a left- or right-padded row has
the same logits at its real tokens as the unpadded row. A padded query
attends to itself only: its output is finite and meaningless. Without a mask
attention is plain causal (the form a flash-attention kernel fuses); a
right-padded batch needs no mask for the logits of its real tokens.

Sharding: every parameter carries logical axis names (``out_sharding``
metadata, names in :data:`LOGICAL_AXES`, ``eager_sharding=False`` so the
model builds without a mesh). A trainer maps every name to a mesh axis or
None (a name left out of the rules is taken as a mesh axis), e.g. FSDP over
``data`` and tensor parallelism over ``model``::

  rules = (("vocab", "model"), ("context", None), ("embed", "data"),
           ("heads", "model"), ("head_dim", None), ("mlp", "model"))
  with nnx.logical_axis_rules(rules):
    specs = nnx.get_partition_spec(nnx.state(model))
  # then jax.device_put(state, NamedSharding(mesh, spec) per leaf)

Dtypes: parameters are stored in ``param_dtype`` and cast to ``dtype`` for
the computation (bfloat16 compute with float32 parameters is the usual
mixed precision); LayerNorm statistics and the returned logits are at
least float32. The attention softmax is float32 whatever the dtype
(:func:`jax.nn.dot_product_attention` computes it so), so a float64 model
(``jax_enable_x64``) agrees with float64 references to float32 precision.

Shapes: ``B`` batch, ``L`` sequence length, ``V`` vocabulary size, ``S``
cache slots; ``N`` heads of width ``H``, ``D`` model width.

References:
  Radford, Wu, Child, Luan, Amodei, Sutskever. Language Models are
  Unsupervised Multitask Learners (GPT-2), 2019, Sec. 2.3 (pre-norm blocks,
  final LayerNorm, residual init scaled by 1/sqrt(N) for N residual layers).
  Vaswani et al. Attention Is All You Need. NeurIPS 2017, arXiv:1706.03762,
  Sec. 3.2 (scaled dot-product and multi-head attention).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks

__all__ = ["GPT", "GPTConfig", "KVCache", "LOGICAL_AXES", "sample"]

LOGICAL_AXES = ("vocab", "context", "embed", "heads", "head_dim", "mlp")
"""The logical axis names that annotate every parameter (None: never split,
the axis of size 3 that stacks queries, keys and values)."""

_INIT_STD = 0.02   # GPT-2's initializer_range


def _dtype(name: str, value: Any) -> np.dtype:
  """``value`` as a floating numpy dtype (None: the default float)."""
  if value is None:
    return np.dtype(_checks.default_float())
  try:
    dtype = jnp.dtype(value)
  except TypeError as err:
    raise TypeError(f"{name} must be a floating dtype, got {value!r}") from err
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating dtype, got {dtype}")
  return dtype


@dataclasses.dataclass(frozen=True)
class GPTConfig:
  """The shape of a :class:`GPT`; hashable, so it can be a static argument.

  Attributes:
    vocab_size: V, the number of token ids, >= 2.
    context: the most positions the model can embed (GPT-2's
      ``n_positions``), >= 1.
    width: D, the residual width (``n_embd``).
    depth: the number of blocks (``n_layer``).
    heads: N, attention heads (``n_head``); must divide ``width``.
    mlp_width: the MLP's hidden width; None means ``4 * width``.
    tie_embeddings: use the token embedding as the output head.
    norm_eps: LayerNorm epsilon, > 0.
    dtype: the compute dtype (None: float32, or float64 under
      ``jax_enable_x64``); e.g. ``jnp.bfloat16``.
    param_dtype: the parameter dtype (None: as ``dtype``'s default).
  Raises:
    ValueError: a size below its minimum, ``heads`` not dividing ``width``,
      ``norm_eps <= 0``.
    TypeError: a size that is not a Python int, a dtype that is not
      floating.
  """

  vocab_size: int
  context: int
  width: int
  depth: int
  heads: int
  mlp_width: int | None = None
  tie_embeddings: bool = True
  norm_eps: float = 1e-5
  dtype: Any = None
  param_dtype: Any = None

  def __post_init__(self):
    _checks.check_static_int("vocab_size", self.vocab_size, 2)
    for name in ("context", "width", "depth", "heads"):
      _checks.check_static_int(name, getattr(self, name), 1)
    if self.width % self.heads:
      raise ValueError(f"heads must divide width: width {self.width} is not "
                       f"a multiple of heads {self.heads}")
    mlp = 4 * self.width if self.mlp_width is None else self.mlp_width
    object.__setattr__(self, "mlp_width",
                       _checks.check_static_int("mlp_width", mlp, 1))
    if not isinstance(self.tie_embeddings, bool):
      raise TypeError("tie_embeddings must be a bool, got "
                      f"{type(self.tie_embeddings).__name__}")
    if not (isinstance(self.norm_eps, (int, float)) and self.norm_eps > 0):
      raise ValueError(f"norm_eps must be a float > 0, got {self.norm_eps!r}")
    object.__setattr__(self, "dtype", _dtype("dtype", self.dtype))
    object.__setattr__(self, "param_dtype",
                       _dtype("param_dtype", self.param_dtype))

  @property
  def head_dim(self) -> int:
    """H = width // heads."""
    return self.width // self.heads

  @property
  def n_params(self) -> int:
    """The number of parameters (the tied head counted once)."""
    d, m = self.width, self.mlp_width
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d) \
        + 4 * d
    head = 0 if self.tie_embeddings else d * self.vocab_size
    return (self.vocab_size + self.context) * d + self.depth * block + 2 * d \
        + head


def _param(key: jax.Array | None, shape: tuple[int, ...], std: float,
           axes: tuple[str | None, ...], dtype: np.dtype,
           fill: float = 0.0) -> nnx.Param:
  """A parameter: N(0, std^2) draws (``key``) or the constant ``fill``."""
  if key is None:
    value = jnp.full(shape, fill, dtype)
  else:
    value = std * jax.random.normal(key, shape, dtype)
  return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class LayerNorm(nnx.Module):
  """LayerNorm over the last axis, statistics in float32 or wider."""

  def __init__(self, config: GPTConfig):
    d, pdt = config.width, config.param_dtype
    self.eps = config.norm_eps
    self.scale = _param(None, (d,), 0.0, ("embed",), pdt, fill=1.0)
    self.bias = _param(None, (d,), 0.0, ("embed",), pdt)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(y, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axis=-1, keepdims=True)
    y = (y - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Attention(nnx.Module):
  """Causal multi-head self-attention with a fused QKV projection."""

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    d, n, h, pdt = config.width, config.heads, config.head_dim, \
        config.param_dtype
    resid_std = _INIT_STD / math.sqrt(2 * config.depth)
    self.qkv_kernel = _param(rngs.params(), (d, 3, n, h), _INIT_STD,
                             ("embed", None, "heads", "head_dim"), pdt)
    self.qkv_bias = _param(None, (3, n, h), 0.0, (None, "heads", "head_dim"),
                           pdt)
    self.out_kernel = _param(rngs.params(), (n, h, d), resid_std,
                             ("heads", "head_dim", "embed"), pdt)
    self.out_bias = _param(None, (d,), 0.0, ("embed",), pdt)

  def qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Queries, keys and values ``[B, L, N, H]`` of ``x [B, L, D]``."""
    dt = x.dtype
    qkv = jnp.einsum("bld,dcnh->cblnh", x, self.qkv_kernel[...].astype(dt))
    qkv = qkv + self.qkv_bias[...].astype(dt)[:, None, None]
    return qkv[0], qkv[1], qkv[2]

  def out(self, o: jax.Array) -> jax.Array:
    """The output projection of the heads ``o [B, L, N, H]``."""
    dt = o.dtype
    return jnp.einsum("blnh,nhd->bld", o, self.out_kernel[...].astype(dt)) \
        + self.out_bias[...].astype(dt)


class MLP(nnx.Module):
  """The position-wise MLP: gelu (tanh approximation) between two layers."""

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    d, m, pdt = config.width, config.mlp_width, config.param_dtype
    resid_std = _INIT_STD / math.sqrt(2 * config.depth)
    self.fc_kernel = _param(rngs.params(), (d, m), _INIT_STD, ("embed", "mlp"),
                            pdt)
    self.fc_bias = _param(None, (m,), 0.0, ("mlp",), pdt)
    self.proj_kernel = _param(rngs.params(), (m, d), resid_std,
                              ("mlp", "embed"), pdt)
    self.proj_bias = _param(None, (d,), 0.0, ("embed",), pdt)

  def __call__(self, x: jax.Array) -> jax.Array:
    dt = x.dtype
    h = x @ self.fc_kernel[...].astype(dt) + self.fc_bias[...].astype(dt)
    h = jax.nn.gelu(h, approximate=True)
    return h @ self.proj_kernel[...].astype(dt) + self.proj_bias[...].astype(dt)


class Block(nnx.Module):
  """One pre-norm block: attention then MLP, each on a residual branch."""

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    self.ln_1 = LayerNorm(config)
    self.attn = Attention(config, rngs=rngs)
    self.ln_2 = LayerNorm(config)
    self.mlp = MLP(config, rngs=rngs)

  def qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The attention inputs of the residual stream ``x``."""
    return self.attn.qkv(self.ln_1(x))

  def finish(self, x: jax.Array, o: jax.Array) -> jax.Array:
    """Add the attention output ``o`` to ``x``, then the MLP branch."""
    x = x + self.attn.out(o)
    return x + self.mlp(self.ln_2(x))


class KVCache(NamedTuple):
  """Keys and values of every layer for the tokens read so far.

  Slots are written left to right, one per token (padding included); the
  batch shares the slot index, each row keeps its own position count.

  Attributes:
    k: ``[depth, B, S, N, H]`` keys, in the compute dtype.
    v: ``[depth, B, S, N, H]`` values.
    valid: ``[B, S]`` bool, True where a slot holds a real (unpadded) token.
    position: ``[B]`` int32, the real tokens read so far in each row (the
      next token's position id).
    index: int32 scalar, the slots used so far (the next slot to write).
  """

  k: jax.Array
  v: jax.Array
  valid: jax.Array
  position: jax.Array
  index: jax.Array


def _check_tokens(tokens: Any, vocab: int) -> None:
  _checks.check_ndim("tokens", tokens, 2, "[B, L]")
  _checks.check_indices("tokens", tokens, vocab)
  if np.shape(tokens)[1] < 1:
    raise ValueError("tokens must hold at least one position, got shape "
                     f"{np.shape(tokens)}")


def _check_mask(mask: Any, tokens: Any) -> None:
  if mask is None:
    return
  if np.shape(mask) != np.shape(tokens):
    raise ValueError(f"mask must have the shape of tokens {np.shape(tokens)} "
                     f"([B, L]), got {np.shape(mask)}")
  if jnp.result_type(mask) != jnp.bool_:
    raise TypeError(f"mask must be boolean, got dtype {jnp.result_type(mask)}")


class GPT(nnx.Module):
  r"""A GPT-2-style decoder: token ids to next-token logits.

  ``logits[b, t]`` is the prediction of ``tokens[b, t + 1]`` after reading
  ``tokens[b, :t + 1]``: causal, so it never depends on later tokens, and
  (with a mask) never on padding. Parameters: ``wte [V, D]``, ``wpe
  [context, D]``, ``blocks[i]`` (``ln_1``, ``attn.qkv_kernel [D, 3, N, H]``,
  ``attn.qkv_bias [3, N, H]``, ``attn.out_kernel [N, H, D]``,
  ``attn.out_bias [D]``, ``ln_2``, ``mlp.fc_kernel [D, 4D]``, ``mlp.fc_bias``,
  ``mlp.proj_kernel [4D, D]``, ``mlp.proj_bias``), ``ln_f`` and, untied, ``head
  [D, V]``. Initialisation is GPT-2's: N(0, 0.02²) weights, the two residual
  projections of each block N(0, 0.02²/(2·depth)), zero biases, unit
  LayerNorm scales.

  Args:
    config: the :class:`GPTConfig`.
    rngs: ``nnx.Rngs`` whose ``params`` stream draws the initial weights.

  Tests:
    tests/llm/test_model.py::test_logits_are_causal,
    tests/llm/test_model.py::test_padding_does_not_change_real_logits,
    tests/llm/test_model.py::test_cached_decode_equals_full_forward,
    tests/llm/test_model.py::test_gpt2_checkpoint_matches_numpy_forward.
  """

  def __init__(self, config: GPTConfig, *, rngs: nnx.Rngs):
    if not isinstance(config, GPTConfig):
      raise TypeError(f"config must be a GPTConfig, got "
                      f"{type(config).__name__}")
    self.config = config
    v, c, d, pdt = config.vocab_size, config.context, config.width, \
        config.param_dtype
    self.wte = _param(rngs.params(), (v, d), _INIT_STD, ("vocab", "embed"),
                      pdt)
    self.wpe = _param(rngs.params(), (c, d), _INIT_STD, ("context", "embed"),
                      pdt)
    self.blocks = nnx.List([Block(config, rngs=rngs)
                            for _ in range(config.depth)])
    self.ln_f = LayerNorm(config)
    if not config.tie_embeddings:
      self.head = _param(rngs.params(), (d, v), _INIT_STD, ("embed", "vocab"),
                         pdt)

  def __call__(self, tokens: jax.Array,
               mask: jax.Array | None = None) -> jax.Array:
    """Next-token logits of every position.

    Args:
      tokens: ``[B, L]`` integer ids in ``[0, V)``, ``L <= context``.
      mask: optional ``[B, L]`` bool, False at padding (left or right).
    Returns:
      ``[B, L, V]`` logits, float32 (or wider).
    Raises:
      ValueError: ``tokens`` not ``[B, L]``, ``L > context``, a mask of
        another shape; eagerly, a token outside ``[0, V)``.
      TypeError: non-integer tokens, a non-boolean mask.

    Inside ``jit`` a token outside ``[0, V)`` embeds as NaN and every
    logit of its row is NaN (attention weighs the NaN value by 0, and
    0 * NaN is NaN), padding included: pad with in-vocabulary ids. Other
    rows are unaffected.
    """
    _check_tokens(tokens, self.config.vocab_size)
    _check_mask(mask, tokens)
    b, length = np.shape(tokens)
    if length > self.config.context:
      raise ValueError(f"tokens has L = {length} positions, more than the "
                       f"context {self.config.context}")
    valid = jnp.ones((b, length), bool) if mask is None else mask
    positions = jnp.cumsum(valid, axis=1) - 1
    slots = jnp.arange(length)
    causal_only = mask is None
    x = self._embed(tokens, positions)
    for block in self.blocks:
      q, k, v = block.qkv(x)
      o = _attend(q, k, v, None if causal_only else
                  _attention_mask(valid, slots))
      x = block.finish(x, o)
    return self._logits(x)

  def init_cache(self, batch: int, length: int) -> KVCache:
    """An empty :class:`KVCache` of ``length`` slots for ``batch`` rows.

    Raises:
      ValueError: ``batch < 1``, or ``length`` outside ``[1, context]``.
    """
    batch = _checks.check_static_int("batch", batch, 1)
    length = _checks.check_static_int("length", length, 1)
    cfg = self.config
    if length > cfg.context:
      raise ValueError(f"length must lie in [1, context] = [1, "
                       f"{cfg.context}], got {length}")
    shape = (cfg.depth, batch, length, cfg.heads, cfg.head_dim)
    return KVCache(k=jnp.zeros(shape, cfg.dtype), v=jnp.zeros(shape, cfg.dtype),
                   valid=jnp.zeros((batch, length), bool),
                   position=jnp.zeros((batch,), jnp.int32),
                   index=jnp.zeros((), jnp.int32))

  def decode(self, tokens: jax.Array, cache: KVCache,
             mask: jax.Array | None = None) -> tuple[jax.Array, KVCache]:
    """Read ``tokens`` after the cached ones: their logits and the new cache.

    Reading a sequence in pieces (a prompt, then one token at a time) gives
    the logits of reading it whole with :meth:`__call__`.

    Args:
      tokens: ``[B, T]`` integer ids in ``[0, V)``.
      cache: the :class:`KVCache` of the tokens read so far.
      mask: optional ``[B, T]`` bool, False at padding.
    Returns:
      A pair: the ``[B, T, V]`` logits, and the cache with ``T`` more slots
      used.
    Raises:
      ValueError, TypeError: as :meth:`__call__`; a cache whose batch
        differs; eagerly, ``cache.index + T`` past the cache's slots.

    Inside ``jit`` a write past the last slot cannot raise: it is clamped
    onto the last ``T`` slots, overwriting them (:func:`sample` sizes its
    cache so this never happens).
    """
    _check_tokens(tokens, self.config.vocab_size)
    _check_mask(mask, tokens)
    if not isinstance(cache, KVCache):
      raise TypeError(f"cache must be a KVCache (from init_cache), got "
                      f"{type(cache).__name__}")
    b, t = np.shape(tokens)
    slots_total = cache.valid.shape[1]
    if cache.valid.shape[0] != b:
      raise ValueError(f"tokens has batch {b} but the cache has batch "
                       f"{cache.valid.shape[0]}")
    if _checks.is_concrete(cache.index) and int(cache.index) + t > slots_total:
      raise ValueError(f"the cache has {slots_total - int(cache.index)} free "
                       f"slots, cannot read {t} more tokens")
    valid = jnp.ones((b, t), bool) if mask is None else mask
    positions = cache.position[:, None] + jnp.cumsum(valid, axis=1) - 1
    start = cache.index.astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)      # indices of one integer type (x64)
    kv_valid = jax.lax.dynamic_update_slice(cache.valid, valid, (zero, start))
    attn_mask = _attention_mask(kv_valid, start + jnp.arange(t))
    k_all, v_all = cache.k, cache.v
    x = self._embed(tokens, positions)
    for i, block in enumerate(self.blocks):
      q, k, v = block.qkv(x)
      at = (zero + i, zero, start, zero, zero)
      k_all = jax.lax.dynamic_update_slice(k_all, k[None], at)
      v_all = jax.lax.dynamic_update_slice(v_all, v[None], at)
      o = _attend(q, k_all[i], v_all[i], attn_mask)
      x = block.finish(x, o)
    new = KVCache(k=k_all, v=v_all, valid=kv_valid,
                  position=cache.position + jnp.sum(valid, axis=1,
                                                    dtype=jnp.int32),
                  index=start + t)
    return self._logits(x), new

  # -- pieces shared by __call__ and decode ---------------------------------

  def _embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    dt = self.config.dtype
    tok = jnp.take(self.wte[...].astype(dt), tokens, axis=0, mode="fill",
                   fill_value=jnp.nan)
    pos = jnp.clip(positions, 0, self.config.context - 1)
    return tok + jnp.take(self.wpe[...].astype(dt), pos, axis=0)

  def _logits(self, x: jax.Array) -> jax.Array:
    x = self.ln_f(x)
    out = jnp.promote_types(x.dtype, jnp.float32)
    head = (self.wte[...].T if self.config.tie_embeddings
            else self.head[...]).astype(x.dtype)
    return jnp.einsum("bld,dv->blv", x, head, preferred_element_type=out)


def _attention_mask(kv_valid: jax.Array, q_slots: jax.Array) -> jax.Array:
  """``[B, 1, T, S]``: key slot s is visible to the query in slot q iff
  ``s <= q`` and the key is real, or ``s == q`` (a padded query sees
  itself, so its output stays finite)."""
  s = jnp.arange(kv_valid.shape[1])
  causal = s[None, :] <= q_slots[:, None]
  own = s[None, :] == q_slots[:, None]
  visible = causal[None] & (kv_valid[:, None, :] | own[None])
  return visible[:, None]


def _attend(q: jax.Array, k: jax.Array, v: jax.Array,
            mask: jax.Array | None) -> jax.Array:
  """Scaled dot-product attention, ``[B, T, N, H]`` queries on ``[B, S, N,
  H]`` keys; plain causal when ``mask`` is None."""
  if mask is None:
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)
  return jax.nn.dot_product_attention(q, k, v, mask=mask)


# --------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------


def _pick(key: jax.Array, logits: jax.Array, temperature: jax.Array,
          top_k: int | None) -> jax.Array:
  """One token per row from ``[B, V]`` logits: greedy at temperature 0."""
  if top_k is None:
    values, ids = logits, None
  else:
    values, ids = jax.lax.top_k(logits, top_k)   # sorted, ties by index
  greedy = jnp.argmax(values, axis=-1)
  # Shifted so the best logit is 0: a small temperature sends the others to
  # -inf (probability 0), never to NaN. Unused at temperature 0.
  shifted = values - jnp.max(values, axis=-1, keepdims=True)
  scaled = shifted / jnp.maximum(temperature, jnp.finfo(values.dtype).tiny)
  drawn = jax.random.categorical(key, scaled, axis=-1)
  choice = jnp.where(temperature > 0, drawn, greedy)
  if ids is None:
    return choice.astype(jnp.int32)
  return jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0].astype(
      jnp.int32)


@nnx.jit(static_argnames=("steps", "top_k"))
def _sample(model: GPT, key: jax.Array, prompt: jax.Array,
            prompt_mask: jax.Array, temperature: jax.Array, *, steps: int,
            top_k: int | None) -> jax.Array:
  b, length = prompt.shape
  cache = model.init_cache(b, length + steps)
  logits, cache = model.decode(prompt, cache, prompt_mask)
  keys = jax.random.split(key, steps)
  first = _pick(keys[0], logits[:, -1], temperature, top_k)

  def step(carry, key_t):
    cache, token = carry
    logits, cache = model.decode(token[:, None], cache)
    nxt = _pick(key_t, logits[:, 0], temperature, top_k)
    return (cache, nxt), nxt

  _, rest = jax.lax.scan(step, (cache, first), keys[1:])
  return jnp.concatenate([first[:, None], rest.T], axis=1)


def sample(key: jax.Array, model: GPT, prompt: jax.Array, *,
           max_new_tokens: int, prompt_mask: jax.Array | None = None,
           temperature: float = 1.0, top_k: int | None = None) -> jax.Array:
  r"""Sample continuations of left-padded prompts, one token at a time.

  Each new token is drawn from :math:`\operatorname{softmax}(z / T)` over
  the next-token logits :math:`z`, restricted to the ``top_k`` largest
  (exactly ``top_k`` tokens; ties at the boundary go to the lower id), then
  appended; ``temperature = 0`` is greedy decoding (argmax, ties to the
  lower id), and so is ``top_k = 1``. The prompt is read once into a
  :class:`KVCache` and every further token costs one cached step; the whole
  loop is one compiled ``lax.scan`` (recompiled for a new
  ``max_new_tokens``, ``top_k`` or prompt shape, not for a new
  temperature). Sampling continues for ``max_new_tokens`` steps: there is
  no end-of-sequence token.

  Args:
    key: a ``jax.random`` key, split once per new token.
    model: the :class:`GPT`.
    prompt: ``[B, L]`` token ids in ``[0, V)``, left-padded.
    max_new_tokens: how many tokens to draw, a Python int >= 1, with
      ``L + max_new_tokens <= context``.
    prompt_mask: optional ``[B, L]`` bool, False at the (leading) padding;
      every row needs at least one real token.
    temperature: >= 0.
    top_k: None (the whole vocabulary) or a Python int in ``[1, V]``.
  Returns:
    ``[B, max_new_tokens]`` int32 token ids in ``[0, V)``.
  Raises:
    ValueError: ``temperature < 0``, ``top_k`` outside ``[1, V]``,
      ``max_new_tokens < 1``, ``L + max_new_tokens > context``, a prompt
      mask that is not left padding or leaves a row empty, and the errors
      of :meth:`GPT.__call__`.
    TypeError: a non-int ``max_new_tokens`` or ``top_k``.

  Tests:
    tests/llm/test_model.py::test_greedy_limits_equal_argmax_decoding,
    tests/llm/test_model.py::test_top_k_sampling_frequencies_and_support.
  """
  if not isinstance(model, GPT):
    raise TypeError(f"model must be a GPT, got {type(model).__name__}")
  cfg = model.config
  _check_tokens(prompt, cfg.vocab_size)
  _check_mask(prompt_mask, prompt)
  steps = _checks.check_static_int("max_new_tokens", max_new_tokens, 1)
  if top_k is not None:
    top_k = _checks.check_static_int("top_k", top_k, 1)
    if top_k > cfg.vocab_size:
      raise ValueError(f"top_k must lie in [1, V] = [1, {cfg.vocab_size}], "
                       f"got {top_k}")
  _checks.check_nonnegative("temperature", temperature)
  length = np.shape(prompt)[1]
  if length + steps > cfg.context:
    raise ValueError(f"prompt length {length} + max_new_tokens {steps} "
                     f"exceeds the context {cfg.context}")
  if prompt_mask is None:
    prompt_mask = jnp.ones(np.shape(prompt), bool)
  elif _checks.is_concrete(prompt_mask):
    m = np.asarray(prompt_mask)
    if np.any(m[:, :-1] & ~m[:, 1:]):
      raise ValueError("prompt_mask must be left padding (False then True "
                       "in each row); sample reads the last slot as the "
                       "last prompt token")
    if not np.all(m[:, -1]):
      raise ValueError("every prompt needs at least one real token; rows "
                       f"{np.flatnonzero(~m[:, -1]).tolist()[:6]} are all "
                       "padding")
  temp = jnp.asarray(temperature, jnp.float32)
  return _sample(model, key, jnp.asarray(prompt), jnp.asarray(prompt_mask),
                 temp, steps=steps, top_k=top_k)
