r"""One DPO training step of a GPT: prefsim's trainer against PyTorch.

The work of one step, for ``P`` pairs of sequences of ``L`` tokens: the
policy's forward pass on the chosen and rejected sequences (one
concatenated batch of ``2P`` rows, as prefsim's trainer does), the
reference's forward pass on the same batch without gradients, the
per-sequence log-probabilities summed over the completion mask, the DPO
loss

.. math:: \mathcal L = -\frac1P\sum_{i=1}^P \log\sigma\bigl(\beta
          (h_{w,i} - h_{l,i})\bigr),
          \qquad h = \log\pi_\theta(y\mid x) - \log\pi_{\rm ref}(y\mid x),

the policy's backward pass and one Adam update.

- prefsim: the trainer's own compiled step (``prefsim.llm.train``'s
  cached ``_compiled_step``, fetched from the cache after a one-step
  ``train_preference`` call and fed exactly as the trainer feeds it;
  ``ref_logps="online"``, so the reference runs inside the same jit),
  called on one fixed batch with the parameters and optimiser state of the
  previous call. Its ``first_call_s`` is that one-step
  ``train_preference`` call, compilation included; the benchmark fails if
  a timed call recompiles.
- PyTorch (CPU, eager): the same GPT written in ``torch.nn`` (pre-norm
  blocks, fused QKV projection, ``F.scaled_dot_product_attention`` with
  ``is_causal=True``, tanh GELU, LM head tied to the token embedding), the
  parameters stored in prefsim's shapes and loaded from prefsim's initial
  weights, the reference under ``torch.no_grad()``, ``torch.optim.Adam``
  with optax's defaults. Timed with PyTorch's default thread count and with
  one thread; the headline ratio and the claim use the faster setting.
  PyTorch here is what a user gets: dense ``F.scaled_dot_product_attention``
  kernels, ``F.linear`` on the prefsim-shaped kernels (transposed views),
  a default ``Adam`` (for-each off on the CPU).
- PyTorch ``torch.compile`` of the same step function (full CPU run only;
  Inductor, default mode), at both thread counts: a row for information,
  not part of the headline ratio.

Timing: every tool setting is timed in turn, round after round (5 rounds of
2 steps; ``--quick``: 3 rounds of 5), each turn after a 0.5 s pause and one
untimed step. Interleaving gives every tool the same share of the
machine's background load; the pause lets the spinning thread pools of the
previous tool (XLA's or OpenMP's) go idle, so that on a 2-core machine the
tools do not slow each other down. The rows give the best, median and worst
timed step of each setting. The headline ratio and the CPU speed claim
compare **best** steps, each tool's speed when background work leaves it
the machine (on the shared 2-core reference machine the medians of the
2-thread settings swing by 3x from run to run with the load of other
processes, and a 2-thread step slows down more than a 1-thread one when a
core is taken, which the 1-thread PyTorch setting escapes and XLA's pool,
fixed at 2 threads per process, cannot); the ratio of medians is in the
config as ``ratio_median_steps``. On a GPU the MFU uses the median step.

**Tokens per second** = ``2 P L`` / step time: the policy's tokens, counted
once (the reference reads the same tokens again; they are not counted a
second time).

**Model FLOPs** of a step (the convention of PaLM's model FLOPs
utilisation, Chowdhery et al. 2022, arXiv:2204.02311): with :math:`N` the
parameters that multiply activations (every parameter but the token and
position embeddings, plus the ``[D, V]`` LM head, which is the tied token
embedding), ``d`` blocks of width ``D`` and context ``L``, per token

.. math:: F_{\rm policy} = 6N + 12\,d\,D\,L, \qquad
          F_{\rm reference} = 2N + 4\,d\,D\,L,

(forward + backward, and forward only; the attention term counts the full
``L x L`` score matrix, as PaLM does, not the causal half; LayerNorms,
GELU, softmax and the optimiser are left out), so a step costs
:math:`(8N + 16\,d\,D\,L) \cdot 2PL`. For the full CPU size XLA's own
count of the compiled step (``cost_analysis()["flops"]``, elementwise work
included) is 1.6 % above this. MFU is model FLOPs per second over the
device's peak: 989e12 FLOP/s for an H100/H200 SXM in dense bfloat16.

Machines: on the CPU (``jax.default_backend() == "cpu"``) a small model is
timed (vocabulary 256, context 128, width 256, 4 blocks of 4 heads, 8 pairs;
``--quick``: width 64, 2 blocks of 2 heads, context 64, 4 pairs) in float32,
and the aim is parity, prefsim tokens/s >= PyTorch's. On a GPU a GPT-2-small
sized model (124M parameters: vocabulary 50304, context 1024, width 768, 12
blocks of 12 heads, 8 pairs; bfloat16 compute, float32 parameters) is
timed, its MFU reported, and the aim is MFU >= 40 %; PyTorch (eager) is
timed there only when it has CUDA (bfloat16 autocast). The GPU path has not
been measured yet.

Same work: before timing, both tools take one step from the same weights on
the same batch in float32; the claims bound the relative difference of the
initial DPO loss and of the whole gradient (prefsim's gradient is read from
Adam's first moment after the first step, :math:`m_1 = (1-\beta_1) g`, so it
is the trainer's own gradient).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
import types
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
import optax
import torch
import torch.nn.functional as F

from benchmarks._harness import BenchResult
from prefsim.llm import train
from prefsim.llm.model import GPT, GPTConfig
from studies._harness import check

DESCRIPTION = ("One DPO training step of a GPT (policy fwd+bwd, reference "
               "fwd, Adam): prefsim's compiled trainer step vs the same model "
               "and loss in PyTorch")

BETA, LR, B1 = 0.1, 1e-3, 0.9
PEAK_BF16_FLOPS = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12}
"""Dense bfloat16 peak FLOP/s by device-name fragment, first match wins
(``"NVIDIA H100 80GB HBM3"`` is the SXM part)."""


@dataclasses.dataclass(frozen=True)
class _Size:
  vocab: int
  context: int
  width: int
  depth: int
  heads: int
  pairs: int
  prompt: int       # prompt tokens; the completion is the rest of the row


CPU_FULL = _Size(vocab=256, context=128, width=256, depth=4, heads=4, pairs=8,
                 prompt=32)
CPU_QUICK = _Size(vocab=256, context=64, width=64, depth=2, heads=2, pairs=4,
                  prompt=16)
GPU_FULL = _Size(vocab=50304, context=1024, width=768, depth=12, heads=12,
                 pairs=8, prompt=256)


def step_flops(cfg: GPTConfig, length: int, pairs: int) -> float:
  r"""Model FLOPs of one DPO step (PaLM's convention, see the module
  docstring): :math:`(8N + 16\,d\,D\,L)\cdot 2PL`.

  For GPT-2 small (:data:`GPU_FULL`: N = 124,475,904 - 786,432 =
  123,689,472, d = 12, D = 768, L = 1024, P = 8) that is (989,515,776 +
  150,994,944) x 16,384 = 1.8686e13 FLOPs a step.

  Args:
    cfg: the model's config.
    length: L, tokens per sequence.
    pairs: P, pairs per step.
  Returns:
    The FLOPs of the policy's forward and backward pass plus the reference's
    forward pass on the ``2 P L`` tokens.
  """
  n = cfg.n_params - cfg.context * cfg.width          # no position table
  if not cfg.tie_embeddings:
    n -= cfg.vocab_size * cfg.width                   # the lookup table
  # (tied: wte counted once, as the head's [D, V] matmul)
  attn = cfg.depth * cfg.width * length
  per_token = (6 * n + 12 * attn) + (2 * n + 4 * attn)
  return float(per_token * 2 * pairs * length)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def _data(size: _Size, seed: int = 0) -> types.SimpleNamespace:
  """Random token pairs; each completion runs from ``prompt`` to a random
  end in ``[L - L/4, L]`` (the rest is right padding)."""
  rng = np.random.default_rng(seed)
  p, length = size.pairs, size.context
  out = {}
  for side in ("chosen", "rejected"):
    out[side] = rng.integers(0, size.vocab, (p, length)).astype(np.int32)
    end = rng.integers(length - length // 4, length + 1, p)
    pos = np.arange(length)
    out[f"{side}_mask"] = (pos >= size.prompt) & (pos < end[:, None])
  return types.SimpleNamespace(**out)


# --------------------------------------------------------------------------
# prefsim: the trainer's compiled step
# --------------------------------------------------------------------------


def _prefsim_step(policy: GPT, ref: GPT, data: Any, optimizer: Any):
  """The trainer's compiled step and its inputs, placed as the trainer
  places them.

  Runs ``train_preference`` for one step (which compiles the step and puts
  it in the trainer's cache), then fetches that step from the cache and
  builds its arguments the way ``train_preference`` does (parameters and
  batch on the trainer's one-device mesh, the optimiser state following the
  parameters), so that calling it reuses the executable the trainer
  compiled.

  Returns:
    ``(step_fn, params, opt_state, ref_params, batch, seconds)``: the
    parameters are those of ``policy`` before the call; ``seconds`` is the
    wall time of the one-step ``train_preference`` call (compilation
    included).
  """
  cache = train._STEPS                     # pylint: disable=protected-access
  before = set(cache)
  start = time.perf_counter()
  train.train_preference(nnx.clone(policy), ref, data, loss="dpo", beta=BETA,
                         optimizer=optimizer, steps=1,
                         batch_size=data.chosen.shape[0],
                         key=jax.random.key(0))
  seconds = time.perf_counter() - start
  new = [k for k in cache if k not in before]
  if len(new) != 1:
    raise RuntimeError("could not find the trainer's compiled step")
  spec = new[0]
  step_fn = cache[spec]
  mesh = spec.mesh
  params, opt_state = train.place_state(nnx.split(nnx.clone(policy))[1],
                                        optimizer, mesh, spec.rules)
  ref_params, _ = train.place_state(nnx.split(ref)[1], None, mesh,
                                    spec.rules)
  p = data.chosen.shape[0]
  batch = jax.device_put(
      {f: np.asarray(getattr(data, f)).reshape(1, p, -1)
       for f in ("chosen", "rejected", "chosen_mask", "rejected_mask")},
      NamedSharding(mesh, train.BATCH_SPEC))
  return step_fn, params, opt_state, ref_params, batch, seconds


def _flat(state: Any) -> dict[str, np.ndarray]:
  """``{"blocks.0.attn.qkv_kernel": array, ...}`` of an ``nnx.State``."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    keys = [str(k.key) for k in path if hasattr(k, "key")]
    out[".".join(keys)] = np.asarray(leaf)
  return out


# --------------------------------------------------------------------------
# PyTorch: the same GPT and the same step
# --------------------------------------------------------------------------


class _TorchLayerNorm(torch.nn.Module):

  def __init__(self, d: int, eps: float):
    super().__init__()
    self.eps = eps
    self.scale = torch.nn.Parameter(torch.ones(d))
    self.bias = torch.nn.Parameter(torch.zeros(d))

  def forward(self, x):
    return F.layer_norm(x, x.shape[-1:], self.scale, self.bias, self.eps)


class _TorchAttention(torch.nn.Module):

  def __init__(self, cfg: GPTConfig):
    super().__init__()
    d, n, h = cfg.width, cfg.heads, cfg.head_dim
    self.heads = n
    self.qkv_kernel = torch.nn.Parameter(torch.zeros(d, 3, n, h))
    self.qkv_bias = torch.nn.Parameter(torch.zeros(3, n, h))
    self.out_kernel = torch.nn.Parameter(torch.zeros(n, h, d))
    self.out_bias = torch.nn.Parameter(torch.zeros(d))

  def forward(self, x):
    b, length, d = x.shape
    qkv = F.linear(x, self.qkv_kernel.reshape(d, 3 * d).T,
                   self.qkv_bias.reshape(3 * d))
    q, k, v = qkv.reshape(b, length, 3, self.heads, -1).permute(
        2, 0, 3, 1, 4).unbind(0)                 # each [B, N, L, H]
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    o = o.transpose(1, 2).reshape(b, length, d)
    return F.linear(o, self.out_kernel.reshape(d, d).T, self.out_bias)


class _TorchMLP(torch.nn.Module):

  def __init__(self, cfg: GPTConfig):
    super().__init__()
    d, m = cfg.width, cfg.mlp_width
    self.fc_kernel = torch.nn.Parameter(torch.zeros(d, m))
    self.fc_bias = torch.nn.Parameter(torch.zeros(m))
    self.proj_kernel = torch.nn.Parameter(torch.zeros(m, d))
    self.proj_bias = torch.nn.Parameter(torch.zeros(d))

  def forward(self, x):
    h = F.gelu(F.linear(x, self.fc_kernel.T, self.fc_bias), approximate="tanh")
    return F.linear(h, self.proj_kernel.T, self.proj_bias)


class _TorchBlock(torch.nn.Module):

  def __init__(self, cfg: GPTConfig):
    super().__init__()
    self.ln_1 = _TorchLayerNorm(cfg.width, cfg.norm_eps)
    self.attn = _TorchAttention(cfg)
    self.ln_2 = _TorchLayerNorm(cfg.width, cfg.norm_eps)
    self.mlp = _TorchMLP(cfg)

  def forward(self, x):
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))


class TorchGPT(torch.nn.Module):
  """prefsim's GPT in PyTorch: the same parameters under the same names and
  shapes (``wte [V, D]``, ``blocks.i.attn.qkv_kernel [D, 3, N, H]``, ...),
  the LM head tied to ``wte``."""

  def __init__(self, cfg: GPTConfig):
    super().__init__()
    if not cfg.tie_embeddings:
      raise ValueError("TorchGPT ties the head to the token embedding")
    self.wte = torch.nn.Parameter(torch.zeros(cfg.vocab_size, cfg.width))
    self.wpe = torch.nn.Parameter(torch.zeros(cfg.context, cfg.width))
    self.blocks = torch.nn.ModuleList([_TorchBlock(cfg)
                                       for _ in range(cfg.depth)])
    self.ln_f = _TorchLayerNorm(cfg.width, cfg.norm_eps)

  def forward(self, tokens):
    x = self.wte[tokens] + self.wpe[:tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return F.linear(self.ln_f(x), self.wte)

  def load(self, flat: dict[str, np.ndarray]) -> "TorchGPT":
    """Copy prefsim's parameters (:func:`_flat`) in, by name."""
    own = dict(self.named_parameters())
    if set(own) != set(flat):
      raise ValueError(f"parameter names differ: {set(own) ^ set(flat)}")
    with torch.no_grad():
      for name, value in flat.items():
        own[name].copy_(torch.from_numpy(np.array(value, np.float32)))
    return self


def _torch_logps(logits, tokens, mask):
  """Sum over the completion of log softmax(logits[t-1])[tokens[t]]."""
  z = logits[:, :-1].float()
  target = tokens[:, 1:]
  per_token = (torch.gather(z, -1, target[..., None])[..., 0]
               - torch.logsumexp(z, dim=-1))
  return (per_token * mask[:, 1:]).sum(-1)


def _torch_step_fn(policy, ref, opt, tokens, mask, pairs, autocast=None):
  """One DPO step in PyTorch; returns the loss (a detached tensor)."""
  def step():
    opt.zero_grad(set_to_none=True)
    with autocast() if autocast else contextlib.nullcontext():
      pol = _torch_logps(policy(tokens), tokens, mask)
      with torch.no_grad():
        rf = _torch_logps(ref(tokens), tokens, mask)
    h = pol - rf
    loss = -F.logsigmoid(BETA * (h[:pairs] - h[pairs:])).mean()
    loss.backward()
    opt.step()
    return loss.detach()
  return step


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def _models(size: _Size, dtype=None):
  cfg = GPTConfig(vocab_size=size.vocab, context=size.context,
                  width=size.width, depth=size.depth, heads=size.heads,
                  dtype=dtype, param_dtype=jnp.float32)
  return cfg, GPT(cfg, rngs=nnx.Rngs(0)), GPT(cfg, rngs=nnx.Rngs(1))


def _torch_inputs(data, device="cpu"):
  tokens = torch.from_numpy(np.concatenate([data.chosen, data.rejected]))
  mask = torch.from_numpy(np.concatenate([data.chosen_mask,
                                          data.rejected_mask]))
  return tokens.long().to(device), mask.float().to(device)


def _same_work(size: _Size) -> tuple[dict[str, float], dict[str, Any]]:
  """One float32 step of each tool from the same weights and batch."""
  cfg, policy, ref = _models(size)
  data = _data(size)
  optimizer = optax.adam(LR, b1=B1)
  with jax.default_matmul_precision("highest"):
    step_fn, params, opt_state, ref_params, batch, _ = _prefsim_step(
        policy, ref, data, optimizer)
    _, opt_state, metrics = step_fn(params, opt_state, ref_params, batch)
    mu = _flat(opt_state[0].mu)
  grad_ours = {k: v / (1 - B1) for k, v in mu.items()}

  t_policy = TorchGPT(cfg).load(_flat(nnx.state(policy)))
  t_ref = TorchGPT(cfg).load(_flat(nnx.state(ref))).requires_grad_(False)
  opt = torch.optim.Adam(t_policy.parameters(), lr=LR, betas=(B1, 0.999))
  tokens, mask = _torch_inputs(data)
  loss_theirs = float(_torch_step_fn(t_policy, t_ref, opt, tokens, mask,
                                     size.pairs)())
  grad_theirs = {k: p.grad.numpy() for k, p in t_policy.named_parameters()}
  diff = math.sqrt(sum(float(np.sum((grad_ours[k] - grad_theirs[k]) ** 2))
                       for k in grad_theirs))
  norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in grad_theirs.values()))
  loss_ours = float(metrics["loss"])
  return ({"loss_prefsim": loss_ours, "loss_torch": loss_theirs,
           "loss_rel_diff": abs(loss_ours - loss_theirs) / abs(loss_theirs),
           "grad_norm_torch": norm, "grad_rel_diff": diff / norm},
          {"margin_prefsim": float(metrics["margin"])})


def _prefsim_stepper(size: _Size, dtype: Any) -> tuple[Any, float, Any]:
  """``(call, first, check)``: one warm trainer step per ``call()``;
  ``first`` is the one-step ``train_preference`` call that compiled it;
  ``check()`` raises if a timed call recompiled the step."""
  _, policy, ref = _models(size, dtype)
  step_fn, params, opt_state, ref_params, batch, first = _prefsim_step(
      policy, ref, _data(size), optax.adam(LR, b1=B1))
  state = [params, opt_state]
  cache_size = step_fn._cache_size      # pylint: disable=protected-access
  compiled = cache_size()

  def call():
    p, s, metrics = step_fn(state[0], state[1], ref_params, batch)
    state[:] = [p, s]
    return jax.block_until_ready(metrics)

  def check_cache():
    if cache_size() != compiled:
      raise RuntimeError("the timed calls recompiled the trainer's step")

  return call, first, check_cache


def _torch_stepper(size: _Size, cfg: GPTConfig, *, compiled: bool,
                   device: str, autocast: Any) -> tuple[Any, float]:
  """``(call, first)``: one PyTorch step per ``call()`` (``torch.compile``'d
  if ``compiled``); ``first`` is the first call's time (compilation
  included). Inductor's CPU kernels read the OpenMP thread count at run
  time, so one compiled step serves every thread setting."""
  _, policy, ref = _models(size)
  t_policy = TorchGPT(cfg).load(_flat(nnx.state(policy))).to(device)
  t_ref = TorchGPT(cfg).load(_flat(nnx.state(ref))).to(device)
  t_ref.requires_grad_(False)
  opt = torch.optim.Adam(t_policy.parameters(), lr=LR, betas=(B1, 0.999))
  tokens, mask = _torch_inputs(_data(size), device)
  step = _torch_step_fn(t_policy, t_ref, opt, tokens, mask, size.pairs,
                        autocast)
  if compiled:
    step = torch.compile(step)
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

  def call():
    out = step()
    sync()
    return out

  start = time.perf_counter()
  call()
  return call, time.perf_counter() - start


def _interleaved(steppers: list[tuple[str, int, Any]], rounds: int,
                 burst: int, pause: float) -> dict[str, dict[str, Any]]:
  """Time every ``(label, torch_threads, call)`` in turn, ``rounds`` times:
  a pause, one untimed call, then ``burst`` timed calls.

  Interleaving gives every tool the same share of the machine's background
  load; the pause lets the spinning thread pools of the previous tool (XLA's
  or OpenMP's) go idle, so the tools do not slow each other down, and the
  untimed call wakes this tool's threads and caches.
  """
  default = torch.get_num_threads()
  times: dict[str, list[float]] = {label: [] for label, _, _ in steppers}
  try:
    for _ in range(rounds):
      for label, threads, call in steppers:
        torch.set_num_threads(threads)
        time.sleep(pause)
        call()
        for _ in range(burst):
          start = time.perf_counter()
          call()
          times[label].append(time.perf_counter() - start)
  finally:
    torch.set_num_threads(default)
  return {label: {"best": min(t), "median": statistics.median(t), "all": t}
          for label, t in times.items()}


def _row(tool: str, timing: dict[str, Any], first: float, tokens: int,
         flops: float, peak: float | None) -> dict[str, Any]:
  med, best = timing["median"], timing["best"]
  row = {"tool": tool, "median_ms": 1e3 * med, "best_ms": 1e3 * best,
         "worst_ms": 1e3 * max(timing["all"]),
         "tokens_per_s_best": tokens / best,
         "tokens_per_s_median": tokens / med,
         "model_gflop_per_s_best": flops / best / 1e9}
  if peak is not None:
    row["mfu_median"] = flops / med / peak
  row["first_call_s"] = first
  return row


def _peak(device: Any) -> float | None:
  kind = getattr(device, "device_kind", "")
  for name, peak in PEAK_BF16_FLOPS.items():
    if name in kind:
      return peak
  return None


def run(quick: bool) -> BenchResult:
  gpu = jax.default_backend() == "gpu"
  check_size = CPU_QUICK if quick else CPU_FULL
  same, info = _same_work(check_size)
  claims = [
      check("same initial DPO loss: |prefsim - PyTorch| / |PyTorch| "
            f"(float32, {check_size.pairs} pairs, width {check_size.width})",
            same["loss_rel_diff"], hi=1e-4),
      check("same gradient: ||g_prefsim - g_PyTorch|| / ||g_PyTorch|| over "
            "all parameters (float32)", same["grad_rel_diff"], hi=1e-4)]

  size = GPU_FULL if gpu else check_size
  rounds, burst = (3, 5) if quick else (5, 2)
  tokens = 2 * size.pairs * size.context
  peak = _peak(jax.devices()[0]) if gpu else None
  cfg = GPTConfig(vocab_size=size.vocab, context=size.context,
                  width=size.width, depth=size.depth, heads=size.heads)
  flops = step_flops(cfg, size.context, size.pairs)

  ours, first_ours, check_cache = _prefsim_stepper(
      size, jnp.bfloat16 if gpu else None)
  name = "prefsim trainer step (jit)"
  steppers = [(name, torch.get_num_threads(), ours)]
  firsts = {name: first_ours}
  eager = []
  skipped = None
  if not gpu or torch.cuda.is_available():
    device = "cuda" if gpu else "cpu"
    autocast = ((lambda: torch.autocast("cuda", dtype=torch.bfloat16))
                if gpu else None)
    # torch.compile only on the CPU (checked there; on a GPU it needs
    # Triton, which a CUDA build of PyTorch may lack).
    kinds = [(False, "eager")] + ([] if quick or gpu else
                                  [(True, "torch.compile")])
    default = torch.get_num_threads()
    for compiled, kind in kinds:
      try:
        call, first = _torch_stepper(size, cfg, compiled=compiled,
                                     device=device, autocast=autocast)
      except torch.cuda.OutOfMemoryError as err:
        # JAX holds most of the GPU's memory (XLA preallocates 75 %).
        skipped = f"PyTorch {kind} on CUDA: {err}"[:300]
        continue
      for threads in ([default] if gpu else [default, 1]):
        label = (f"PyTorch {kind}, CUDA bf16 autocast" if gpu else
                 f"PyTorch {kind}, {threads} thread{'s' * (threads > 1)}")
        steppers.append((label, threads, call))
        firsts[label] = first
        if not compiled:
          eager.append(label)
  timings = _interleaved(steppers, rounds, burst, pause=0.5)
  check_cache()

  rows = [_row(label, timings[label], firsts[label], tokens, flops, peak)
          for label, _, _ in steppers]
  mine = rows[0]
  for row in rows:
    row["prefsim_speedup_best"] = (mine["tokens_per_s_best"]
                                   / row["tokens_per_s_best"])
    row["prefsim_speedup_median"] = (mine["tokens_per_s_median"]
                                     / row["tokens_per_s_median"])

  def fastest(key):
    return max((row[key] for row in rows if row["tool"] in eager),
               default=None)

  if gpu:
    claims.append(check(
        f"prefsim MFU (median step) on {jax.devices()[0].device_kind} (bf16 "
        f"dense peak {peak or float('nan'):.4g} FLOP/s), "
        f"{cfg.n_params / 1e6:.0f}M parameters",
        mine.get("mfu_median", float("nan")), lo=0.40))
  ratio_median = None
  if eager:
    ratio = mine["tokens_per_s_best"] / fastest("tokens_per_s_best")
    ratio_median = (mine["tokens_per_s_median"]
                    / fastest("tokens_per_s_median"))
    label = ("prefsim tokens/s / fastest eager PyTorch setting's tokens/s "
             "(best steps)")
    claims.append(check(label, ratio, lo=1.0))
  else:
    ratio = mine.get("mfu_median", float("nan"))
    label = "prefsim MFU (median step, bf16 dense peak); no CUDA PyTorch"
  return BenchResult(
      rows=rows, ratio=ratio, ratio_label=label,
      config={"vocab": size.vocab, "context": size.context,
              "width": size.width, "depth": size.depth, "heads": size.heads,
              "pairs": size.pairs, "prompt": size.prompt,
              "tokens_per_step": tokens, "n_params": cfg.n_params,
              "step_model_flops": flops,
              "compute_dtype": "bfloat16" if gpu else "float32",
              "beta": BETA, "lr": LR, "rounds": rounds, "burst": burst,
              "pause_s": 0.5,
              "torch": torch.__version__,
              "torch_threads_default": torch.get_num_threads(),
              "same_work_size": dataclasses.asdict(check_size),
              "ratio_median_steps": ratio_median,
              "torch_skipped": skipped,
              **same, **info},
      claims=claims)
