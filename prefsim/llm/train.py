r"""Preference training of a language model: DPO and every pairwise loss.

:func:`train_preference` fine-tunes a :class:`prefsim.llm.GPT` on labelled
response pairs with any pairwise loss of :mod:`prefsim.losses` (the loss is
looked up with :func:`prefsim.losses.get`; no loss formula lives here). One
step, for a batch of ``B`` pairs:

.. math:: h_w = \log\pi_\theta(y_w\mid x) - \log\pi_{\rm ref}(y_w\mid x),
          \quad
          h_l = \log\pi_\theta(y_l\mid x) - \log\pi_{\rm ref}(y_l\mid x),
          \quad
          \mathcal L = \frac1B\sum_{i=1}^B \ell(h_{w,i}, h_{l,i};\beta),

the log-probabilities from :func:`prefsim.llm.sequence_logps` (sums over the
completion, or means with ``average_logps=True``), then an optax update.
Reference-free losses (``simpo``, ``orpo``) get the policy's log-probs in
the same slots; ``aot`` also gets the reference margins it needs.

* **Reference log-probs**: computed in the step from the reference model
  (``ref_logps="online"``), or once for the whole data set and cached on
  disk under a fingerprint of the reference parameters and the data
  (``"cached"``).
* **Gradient accumulation**: ``micro_batches`` slices of the batch, one
  ``lax.scan``; the gradient is the mean of theirs, which for equal slices
  is the gradient of the batch mean (exactly so for per-example losses;
  ``aot`` sorts within a micro-batch).
* **Mesh**: a ``jax.sharding.Mesh`` with axes ``("data", "model")``. The
  batch is sharded over ``data``. Parameters are sharded by their logical
  axes (:data:`prefsim.llm.LOGICAL_AXES`) with :data:`DEFAULT_RULES`: FSDP
  over ``data`` on the ``embed`` axis of every parameter (the residual width
  ``D``, an axis of every matrix), tensor parallelism over ``model`` on
  ``vocab``, ``heads`` and ``mlp``; a mesh axis that does not divide a
  parameter's dimension leaves that dimension whole. The optimiser state
  follows the parameters.
* **Data order and keys are functions of the step**: step ``t`` reads the
  pairs ``permutation(fold_in(key, epoch))[slot]``, so a run resumed from a
  checkpoint continues bit for bit.
* **Checkpoints**: orbax, every ``checkpoint_every`` steps, the last
  ``keep`` kept; a call finds the latest complete checkpoint under
  ``checkpoint_dir`` and resumes from it.
* **Metrics** every step: ``loss``, ``accuracy`` (implicit reward accuracy,
  the fraction of pairs with :math:`h_w > h_l`), ``margin`` (mean
  :math:`h_w - h_l`), ``kl_ref`` (mean :math:`-(h_w + h_l)/2`: when the
  responses were sampled from the reference, as in
  :func:`prefsim.llm.task.preference_pairs`, an unbiased estimate of the
  sequence-level :math:`\mathrm{KL}(\pi_{\rm ref}\,\|\,\pi_\theta)`); an
  ``eval_fn`` adds sampled metrics (true reward, win rate, KL, see
  :func:`prefsim.llm.task.evaluate`).

Command line: ``python -m prefsim.llm --help`` runs the synthetic task
of :mod:`prefsim.llm.task` end to end (SFT, pairs, training, evaluation).

Shapes: ``P`` pairs, ``B`` batch, ``L`` sequence length.

References:
  Rafailov et al. Direct Preference Optimization. NeurIPS 2023,
  arXiv:2305.18290, Eq. 7 (the loss on log-ratios of whole responses) and
  Sec. 5 (implicit reward :math:`\beta h`).
  Rajbhandari et al. ZeRO: Memory Optimizations Toward Training Trillion
  Parameter Models. SC 2020, arXiv:1910.02054 (parameters sharded over the
  data-parallel devices).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import os
import sys
import time
from typing import Any, Callable, NamedTuple

from flax import nnx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import optax
import orbax.checkpoint as ocp

from prefsim import _checks
from prefsim import losses
from prefsim.llm.logps import sequence_logps
from prefsim.llm.model import GPT

__all__ = ["BATCH_SPEC", "DEFAULT_RULES", "TrainResult", "main",
           "param_shardings", "place_state", "train_preference"]

DEFAULT_RULES = (("vocab", "model"), ("context", None), ("embed", "data"),
                 ("heads", "model"), ("head_dim", None), ("mlp", "model"))
"""Logical axis -> mesh axis: FSDP over ``data`` on ``embed``, tensor
parallelism over ``model``."""

BATCH_SPEC = P(None, "data")
"""The batch's sharding: ``[micro_batches, micro, ...]`` arrays split over
``data`` along the micro-batch."""

_METRICS = ("loss", "accuracy", "margin", "kl_ref")
_DATA_FIELDS = ("chosen", "rejected", "chosen_mask", "rejected_mask")


class TrainResult(NamedTuple):
  """What :func:`train_preference` returns.

  Attributes:
    history: metric name -> ``[T]`` float array, one entry per step from
      step 1 (steps before a resume included, read from the checkpoint).
    evals: ``(step, metrics)`` pairs from ``eval_fn``, in this call.
    step: the number of steps done.
  """

  history: dict[str, np.ndarray]
  evals: list[tuple[int, dict[str, float]]]
  step: int


def param_shardings(state: Any, mesh: Mesh,
                    rules: tuple = DEFAULT_RULES) -> Any:
  """``NamedSharding`` of every parameter of ``state`` (an ``nnx.State``)
  from its logical axes and ``rules``; a mesh axis that does not divide
  the dimension it would shard is dropped (that dimension stays whole).

  Tests:
    tests/llm/test_train.py::test_one_and_eight_devices_agree (slow).
  """
  with nnx.logical_axis_rules(rules):
    specs = nnx.get_partition_spec(state)

  def fit(spec, x):
    axes = []
    for dim, name in zip(np.shape(x), tuple(spec) + (None,) * np.ndim(x)):
      size = 1 if name is None else mesh.shape[name]
      axes.append(name if name is not None and dim % size == 0 else None)
    return NamedSharding(mesh, P(*axes))

  return jax.tree.map(fit, specs, state)


def place_state(params: Any, optimizer: optax.GradientTransformation | None,
                mesh: Mesh, rules: tuple = DEFAULT_RULES) -> tuple[Any, Any]:
  """Parameters on ``mesh`` by :func:`param_shardings`, and a fresh
  optimiser state that follows them: the state the trainer starts from.

  Optimiser leaves built from the parameters keep their sharding; the rest
  (step counts) is replicated over the mesh.

  Args:
    params: an ``nnx.State`` of parameters.
    optimizer: an ``optax.GradientTransformation``; None: no state.
    mesh: a ``Mesh`` with axes ``data`` and ``model``.
    rules: logical axis rules (:data:`DEFAULT_RULES`).
  Returns:
    ``(params, opt_state)`` placed on ``mesh`` (``opt_state`` None without an
    optimiser).
  """
  params = jax.device_put(params, param_shardings(params, mesh, rules))
  if optimizer is None:
    return params, None
  replicated = NamedSharding(mesh, P())

  def on_mesh(x):
    if isinstance(x.sharding, NamedSharding) and x.sharding.mesh == mesh:
      return x
    return jax.device_put(x, replicated)

  return params, jax.tree.map(on_mesh, jax.jit(optimizer.init)(params))


def _loss_kind(name: str) -> tuple[Callable[..., jax.Array], str]:
  fn = losses.get(name)
  module = fn.__module__.rsplit(".", 1)[-1]
  if module not in ("pairwise", "reference_free"):
    raise ValueError(f"loss {name!r} is not a pairwise loss (it is "
                     f"{module}); train_preference takes pairwise and "
                     "reference-free losses")
  return fn, module


def _check_data(data: Any, vocab: int, context: int) -> dict[str, np.ndarray]:
  missing = [f for f in _DATA_FIELDS if not hasattr(data, f)]
  if missing:
    raise TypeError(f"data must have fields {_DATA_FIELDS} (e.g. a "
                    f"task.PreferenceData); missing {missing}")
  arrays = {f: np.asarray(getattr(data, f)) for f in _DATA_FIELDS}
  for f in ("chosen", "rejected"):
    _checks.check_ndim(f"data.{f}", arrays[f], 2, "[P, L]")
  _checks.check_same_shape(**{f"data.{f}": a for f, a in arrays.items()})
  if arrays["chosen"].shape[1] > context:
    raise ValueError(f"sequences of length {arrays['chosen'].shape[1]} "
                     f"exceed the model's context {context}")
  for f in ("chosen", "rejected"):
    _checks.check_indices(f"data.{f}", arrays[f], vocab)
  for f in ("chosen_mask", "rejected_mask"):
    m = arrays[f]
    if m.dtype != bool and not np.all((m == 0) | (m == 1)):
      raise ValueError(f"data.{f} must be boolean or 0/1")
    m = m.astype(bool)
    empty = np.flatnonzero(~m.any(axis=1))
    if empty.size:
      raise ValueError(f"data.{f} is all zeros in rows "
                       f"{empty.tolist()[:6]}: an empty completion has no "
                       "log-probability")
    if m[:, 0].any():
      raise ValueError(f"data.{f}[:, 0] must be False (the first token is "
                       "never predicted)")
    arrays[f] = m
  return arrays


def _fingerprint(ref_params: Any, arrays: dict[str, np.ndarray],
                 average: bool) -> str:
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(ref_params):
    x = np.asarray(leaf)
    h.update(jax.tree_util.keystr(path).encode())
    h.update(str((x.shape, x.dtype)).encode())
    h.update(x.tobytes())
  for f in _DATA_FIELDS:
    h.update(f.encode())
    h.update(arrays[f].tobytes())
  h.update(str(average).encode())
  return h.hexdigest()[:24]


@functools.lru_cache(maxsize=8)
def _ref_logps_fn(ref_graphdef: Any, average: bool) -> Callable[..., Any]:
  """The jitted reference log-probs of a chunk (reused across calls)."""

  @jax.jit
  def run(params, tokens, mask):
    return sequence_logps(nnx.merge(ref_graphdef, params)(tokens), tokens,
                          mask, average=average)

  return run


def _ref_logps_all(ref_graphdef: Any, ref_params: Any,
                   arrays: dict[str, np.ndarray], chunk: int,
                   average: bool) -> tuple[np.ndarray, np.ndarray]:
  """Reference log-probs of every chosen and rejected sequence."""
  run = _ref_logps_fn(ref_graphdef, average)
  out = {}
  for side in ("chosen", "rejected"):
    tokens, mask = arrays[side], arrays[f"{side}_mask"]
    n = tokens.shape[0]
    pad = (-n) % chunk
    tokens = np.concatenate([tokens, tokens[:pad]])
    mask = np.concatenate([mask, mask[:pad]])
    parts = [np.asarray(run(ref_params, tokens[i:i + chunk],
                            mask[i:i + chunk]))
             for i in range(0, n + pad, chunk)]
    out[side] = np.concatenate(parts)[:n]
  return out["chosen"], out["rejected"]


def _cached_ref_logps(ref_graphdef: Any, ref_params: Any,
                      arrays: dict[str, np.ndarray], chunk: int,
                      average: bool, cache_dir: str | None
                      ) -> tuple[np.ndarray, np.ndarray]:
  if cache_dir is None:
    return _ref_logps_all(ref_graphdef, ref_params, arrays, chunk, average)
  path = os.path.join(cache_dir, "ref_logps-"
                      f"{_fingerprint(ref_params, arrays, average)}.npz")
  if os.path.exists(path):
    with np.load(path) as f:
      return f["chosen"], f["rejected"]
  chosen, rejected = _ref_logps_all(ref_graphdef, ref_params, arrays, chunk,
                                    average)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = path + f".tmp{os.getpid()}.npz"
  np.savez(tmp, chosen=chosen, rejected=rejected)
  os.replace(tmp, path)
  return chosen, rejected


def _batch_indices(key: jax.Array, step: int, n: int, batch_size: int,
                   perms: dict[int, np.ndarray]) -> np.ndarray:
  """The pairs of step ``step`` (0-based): a slot of the epoch's
  permutation, a function of ``(key, step)`` only (``perms`` caches the
  permutation of each epoch)."""
  per_epoch = n // batch_size
  epoch, slot = divmod(step, per_epoch)
  if epoch not in perms:
    perms.clear()
    perms[epoch] = np.asarray(
        jax.random.permutation(jax.random.fold_in(key, epoch), n))
  return perms[epoch][slot * batch_size:(slot + 1) * batch_size]


class _StepSpec(NamedTuple):
  """Everything that fixes the compiled step (hashable: a cache key)."""

  graphdef: Any
  ref_graphdef: Any
  fn: Callable[..., jax.Array]
  reference_free: bool
  wants_ref_margins: bool
  online: bool
  beta: float
  hyper: tuple
  micro_batches: int
  micro: int
  average: bool
  optimizer: optax.GradientTransformation
  mesh: Mesh
  rules: tuple


_STEPS: dict[_StepSpec, Callable[..., Any]] = {}
_MAX_STEPS_CACHED = 32


def _compiled_step(spec: _StepSpec, shardings: Any,
                   opt_shardings: Any) -> Callable[..., Any]:
  """The jitted training step of ``spec``, reused across calls with an
  equal spec (the shardings are functions of the spec)."""
  try:
    hash(spec)
  except TypeError:           # e.g. an array in loss_kwargs: no reuse
    return _build_step(spec, shardings, opt_shardings)
  if spec not in _STEPS:
    if len(_STEPS) >= _MAX_STEPS_CACHED:
      _STEPS.pop(next(iter(_STEPS)))
    _STEPS[spec] = _build_step(spec, shardings, opt_shardings)
  return _STEPS[spec]


def _build_step(spec: _StepSpec, shardings: Any,
                opt_shardings: Any) -> Callable[..., Any]:
  hyper = dict(spec.hyper)
  micro = spec.micro

  def logps_of(graph, p, mb):
    tokens = jnp.concatenate([mb["chosen"], mb["rejected"]])
    mask = jnp.concatenate([mb["chosen_mask"], mb["rejected_mask"]])
    out = sequence_logps(nnx.merge(graph, p)(tokens), tokens, mask,
                         average=spec.average)
    return out[:micro], out[micro:]

  def micro_loss(p, ref_p, mb):
    pol_w, pol_l = logps_of(spec.graphdef, p, mb)
    if spec.reference_free:
      hw, hl = pol_w, pol_l
      ref_w = ref_l = jnp.zeros_like(pol_w)
    else:
      if spec.online:
        ref_w, ref_l = jax.lax.stop_gradient(
            logps_of(spec.ref_graphdef, ref_p, mb))
      else:
        ref_w, ref_l = mb["ref_chosen"], mb["ref_rejected"]
      hw, hl = pol_w - ref_w, pol_l - ref_l
    extra = {"ref_margins": ref_w - ref_l} if spec.wants_ref_margins else {}
    per = spec.fn(hw, hl, beta=spec.beta, **hyper, **extra)
    kl = -(pol_w - ref_w + pol_l - ref_l) / 2
    metrics = {"loss": jnp.mean(per), "accuracy": jnp.mean(hw > hl),
               "margin": jnp.mean(hw - hl), "kl_ref": jnp.mean(kl)}
    return metrics["loss"], metrics

  grad_fn = jax.value_and_grad(micro_loss, has_aux=True)

  def train_step(p, state, ref_p, batch):
    def body(acc, mb):
      (_, metrics), grads = grad_fn(p, ref_p, mb)
      return jax.tree.map(jnp.add, acc, (grads, metrics)), None

    zero = (jax.tree.map(jnp.zeros_like, p),
            {m: jnp.zeros((), jnp.result_type(float)) for m in _METRICS})
    (grads, metrics), _ = jax.lax.scan(body, zero, batch)
    grads = jax.tree.map(lambda g: g / spec.micro_batches, grads)
    metrics = {k: v / spec.micro_batches for k, v in metrics.items()}
    updates, state = spec.optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state, metrics

  replicated = NamedSharding(spec.mesh, P())
  return jax.jit(train_step, out_shardings=(shardings, opt_shardings,
                                            replicated))


def train_preference(model: GPT, ref_model: GPT | None, data: Any, *,
                     loss: str = "dpo", beta: float, optimizer:
                     optax.GradientTransformation, steps: int,
                     batch_size: int, key: jax.Array, mesh: Mesh | None = None,
                     micro_batches: int = 1, average_logps: bool = False,
                     loss_kwargs: dict[str, Any] | None = None,
                     ref_logps: str = "online", cache_dir: str | None = None,
                     checkpoint_dir: str | None = None,
                     checkpoint_every: int = 0, keep: int = 2,
                     log_every: int = 0,
                     eval_fn: Callable[[int, GPT], dict[str, float]] | None
                     = None, eval_every: int = 0,
                     rules: tuple = DEFAULT_RULES) -> TrainResult:
  r"""Train ``model`` in place on preference pairs with a pairwise loss.

  Each of ``steps`` steps takes ``batch_size`` pairs (a function of the step,
  see the module docstring), computes :math:`h_w, h_l` with the policy and
  the reference, the per-example loss ``losses.get(loss)(h_w, h_l,
  beta=beta, **loss_kwargs)``, its batch mean, and applies one ``optimizer``
  update of the mean gradient over ``micro_batches`` slices. On return
  ``model`` holds the trained parameters (sharded on ``mesh``).

  Args:
    model: the policy :class:`prefsim.llm.GPT`, the starting point.
    ref_model: the reference :class:`prefsim.llm.GPT` (kept fixed); None
      only for a reference-free loss.
    data: pairs with fields ``chosen``, ``rejected`` (``[P, L]`` int token
      ids in ``[0, V)``) and ``chosen_mask``, ``rejected_mask`` (``[P, L]``
      bool, True at the completion, never at position 0, at least one True
      per row), e.g. a :class:`prefsim.llm.task.PreferenceData`.
    loss: a pairwise or reference-free loss name of
      :func:`prefsim.losses.names` (prefsim's or TRL's).
    beta: the loss's :math:`\beta`, > 0.
    optimizer: an ``optax.GradientTransformation``.
    steps: the total number of steps (a resumed run counts the steps before
      its checkpoint), >= 1.
    batch_size: B, pairs per step, in ``[1, P]``.
    key: a ``jax.random`` key; fixes the data order.
    mesh: a ``Mesh`` with axes ``"data"`` and ``"model"``; None: one
      device.
    micro_batches: slices of the batch for gradient accumulation; must
      divide ``batch_size``, and ``mesh.shape["data"]`` must divide each
      slice.
    average_logps: length-normalised log-probs (the mean over the
      completion, as SimPO and TRL's IPO use) instead of sums.
    loss_kwargs: further keywords of the loss (``eps``, ``tau``, ``delta``,
      ``gamma``); ``aot``'s ``ref_margins`` is supplied by the trainer.
    ref_logps: ``"online"`` (the reference runs in every step) or
      ``"cached"`` (run once over the data; on disk under ``cache_dir`` when
      given, keyed by a fingerprint of the reference parameters, the data
      and ``average_logps``).
    cache_dir: the folder of cached reference log-probs.
    checkpoint_dir: the folder of orbax checkpoints; a call resumes from
      the latest complete checkpoint found there.
    checkpoint_every: save every this many steps (and at the last step);
      0: never.
    keep: checkpoints kept, >= 2.
    log_every: print a progress line to stderr every this many steps; 0:
      never.
    eval_fn: ``eval_fn(step, model) -> dict`` of float metrics, called every
      ``eval_every`` steps and after the last step.
    eval_every: see ``eval_fn``; 0: only after the last step.
    rules: logical axis rules for the parameters (:data:`DEFAULT_RULES`).
  Returns:
    A :class:`TrainResult`.
  Raises:
    ValueError: an unknown or listwise loss; ``batch_size`` outside
      ``[1, P]``; ``micro_batches`` not dividing ``batch_size``; a mesh
      without axes ``data`` and ``model``, or whose ``data`` axis does not
      divide the micro-batch; data of mismatched shapes, a token outside
      the vocabulary, a completion mask that is all zeros in a row or marks
      position 0; a reference model missing for a loss that needs one, or
      with another vocabulary.
    TypeError: a model that is not a GPT, data without the four fields.

  References:
    Rafailov et al., arXiv:2305.18290, Eq. 7 and Sec. 5.
  Tests:
    tests/llm/test_train.py::test_one_step_lowers_the_loss,
    tests/llm/test_train.py::test_every_pairwise_loss_trains_and_is_used,
    tests/llm/test_train.py::test_one_and_eight_devices_agree (slow),
    tests/llm/test_train.py::test_resume_is_bit_for_bit,
    tests/llm/test_train.py::test_sigkill_then_resume_equals_an_uninterrupted_run
    (slow),
    tests/llm/test_train.py::test_cached_reference_equals_online,
    tests/llm/test_train.py::test_gradient_accumulation_equals_full_batch,
    tests/llm/test_train.py::test_average_logps_reaches_the_log_ratios,
    tests/llm/test_train.py::test_bad_input_errors.
  """
  if not isinstance(model, GPT):
    raise TypeError(f"model must be a GPT, got {type(model).__name__}")
  fn, kind = _loss_kind(loss)
  reference_free = kind == "reference_free"
  if ref_model is None and not reference_free:
    raise ValueError(f"loss {loss!r} needs a reference model")
  if ref_model is not None and not isinstance(ref_model, GPT):
    raise TypeError(f"ref_model must be a GPT, got {type(ref_model).__name__}")
  if ref_model is not None and (ref_model.config.vocab_size
                                != model.config.vocab_size):
    raise ValueError(f"ref_model's vocab_size {ref_model.config.vocab_size} "
                     f"differs from the model's {model.config.vocab_size}")
  _checks.check_positive("beta", beta)
  steps = _checks.check_static_int("steps", steps, 1)
  batch_size = _checks.check_static_int("batch_size", batch_size, 1)
  micro_batches = _checks.check_static_int("micro_batches", micro_batches, 1)
  keep = _checks.check_static_int("keep", keep, 2)
  checkpoint_every = _checks.check_static_int("checkpoint_every",
                                              checkpoint_every, 0)
  log_every = _checks.check_static_int("log_every", log_every, 0)
  eval_every = _checks.check_static_int("eval_every", eval_every, 0)
  if ref_logps not in ("online", "cached"):
    raise ValueError(f"ref_logps must be 'online' or 'cached', got "
                     f"{ref_logps!r}")
  cfg = model.config
  arrays = _check_data(data, cfg.vocab_size, cfg.context)
  n_pairs = arrays["chosen"].shape[0]
  if batch_size > n_pairs:
    raise ValueError(f"batch_size must lie in [1, P] = [1, {n_pairs}], got "
                     f"{batch_size}")
  if batch_size % micro_batches:
    raise ValueError(f"micro_batches {micro_batches} must divide batch_size "
                     f"{batch_size}")
  if mesh is None:
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
  if not isinstance(mesh, Mesh) or set(mesh.axis_names) != {"data", "model"}:
    raise ValueError("mesh must be a jax.sharding.Mesh with axes ('data', "
                     f"'model'), got {getattr(mesh, 'axis_names', mesh)!r}")
  micro = batch_size // micro_batches
  if micro % mesh.shape["data"]:
    raise ValueError(f"the mesh's data axis ({mesh.shape['data']} devices) "
                     f"must divide the micro-batch of {micro} pairs "
                     f"(batch_size {batch_size} / micro_batches "
                     f"{micro_batches})")
  hyper = dict(loss_kwargs or {})
  wants_ref_margins = "ref_margins" in inspect.signature(fn).parameters
  if "ref_margins" in hyper:
    raise ValueError("ref_margins is computed by the trainer; do not pass it")

  graphdef, params = nnx.split(model)
  params, opt_state = place_state(params, optimizer, mesh, rules)
  shardings = jax.tree.map(lambda x: x.sharding, params)
  opt_shardings = jax.tree.map(lambda x: x.sharding, opt_state)
  batch_sharding = NamedSharding(mesh, BATCH_SPEC)

  cached = None
  ref_graphdef = ref_params = None
  if not reference_free:
    ref_graphdef, ref_params = nnx.split(ref_model)
    ref_params, _ = place_state(ref_params, None, mesh, rules)
    if ref_logps == "cached":
      cached = _cached_ref_logps(ref_graphdef, ref_params, arrays, micro,
                                 average_logps, cache_dir)
  online = not reference_free and cached is None

  spec = _StepSpec(graphdef, ref_graphdef, fn, reference_free,
                   wants_ref_margins, online, float(beta),
                   tuple(sorted(hyper.items())), micro_batches, micro,
                   bool(average_logps), optimizer, mesh, rules)
  step_fn = _compiled_step(spec, shardings, opt_shardings)

  # -- resume ---------------------------------------------------------------
  manager = None
  start = 0
  history: dict[str, list[float]] = {m: [] for m in _METRICS}
  if checkpoint_dir is not None:
    manager = ocp.CheckpointManager(
        os.path.abspath(checkpoint_dir),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))
    latest = manager.latest_step()
    if latest is not None:
      target = {"params": params, "opt_state": opt_state}
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
      restored = manager.restore(latest, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          history=ocp.args.JsonRestore()))
      params = restored["state"]["params"]
      opt_state = restored["state"]["opt_state"]
      history = {m: list(restored["history"][m]) for m in _METRICS}
      start = int(latest)

  # -- loop -----------------------------------------------------------------
  evals: list[tuple[int, dict[str, float]]] = []
  perms: dict[int, np.ndarray] = {}
  t0 = time.perf_counter()
  try:
    for t in range(start, steps):
      idx = _batch_indices(key, t, n_pairs, batch_size, perms)
      batch = {f: arrays[f][idx].reshape(micro_batches, micro, -1)
               for f in _DATA_FIELDS}
      if cached is not None:
        batch["ref_chosen"] = cached[0][idx].reshape(micro_batches, micro)
        batch["ref_rejected"] = cached[1][idx].reshape(micro_batches, micro)
      batch = jax.device_put(batch, batch_sharding)
      params, opt_state, metrics = step_fn(params, opt_state, ref_params, batch)
      # Block every step: collectives on fake CPU devices abort otherwise
      # (PITFALLS.md).
      metrics = {k: float(v) for k, v in metrics.items()}
      for m in _METRICS:
        history[m].append(metrics[m])
      done = t + 1
      if eval_fn is not None and ((eval_every and done % eval_every == 0)
                                  or done == steps):
        nnx.update(model, params)
        evals.append((done, dict(eval_fn(done, model))))
      if log_every and (done % log_every == 0 or done == steps):
        rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
        shown = " ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        if evals and evals[-1][0] == done:
          shown += " | " + " ".join(f"{k} {v:.4f}"
                                    for k, v in evals[-1][1].items())
        print(f"step {done}/{steps} {shown} ({rate:.2f} steps/s)",
              file=sys.stderr, flush=True)
      if manager is not None and checkpoint_every and (
          done % checkpoint_every == 0 or done == steps):
        manager.save(done, args=ocp.args.Composite(
            state=ocp.args.StandardSave({"params": params,
                                         "opt_state": opt_state}),
            history=ocp.args.JsonSave(
                {m: list(v) for m, v in history.items()})))
  finally:
    # A crash still finishes the checkpoints under way.
    if manager is not None:
      manager.wait_until_finished()
      manager.close()
  nnx.update(model, params)
  return TrainResult(history={m: np.asarray(v) for m, v in history.items()},
                     evals=evals, step=max(start, steps))


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> TrainResult:
  """``python -m prefsim.llm``: the synthetic task end to end.

  Builds a :class:`prefsim.llm.task.TaskConfig`, a tiny GPT, the SFT
  reference, preference pairs with flip rate ``--eps``, trains a copy of the
  reference with ``--loss`` and prints the true reward, win rate and KL.
  """
  from prefsim.llm import task
  from prefsim.llm.model import GPTConfig

  ap = argparse.ArgumentParser(
      prog="python -m prefsim.llm",
      description="Preference training on prefsim's synthetic LLM task.")
  ap.add_argument("--loss", default="dpo",
                  help="a pairwise loss name (prefsim or TRL); default dpo")
  ap.add_argument("--beta", type=float, default=0.1)
  ap.add_argument("--eps", type=float, default=0.0,
                  help="label flip rate of the data")
  ap.add_argument("--loss-eps", type=float, default=None,
                  help="the loss's own eps (cdpo, rdpo, ...)")
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--batch-size", type=int, default=32)
  ap.add_argument("--micro-batches", type=int, default=1)
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--pairs", type=int, default=1024)
  ap.add_argument("--sft-steps", type=int, default=300)
  ap.add_argument("--width", type=int, default=32)
  ap.add_argument("--depth", type=int, default=2)
  ap.add_argument("--heads", type=int, default=2)
  ap.add_argument("--average-logps", action="store_true")
  ap.add_argument("--ref-logps", choices=("online", "cached"),
                  default="online")
  ap.add_argument("--cache-dir", default=None)
  ap.add_argument("--checkpoint-dir", default=None)
  ap.add_argument("--checkpoint-every", type=int, default=0)
  ap.add_argument("--log-every", type=int, default=20)
  ap.add_argument("--eval-every", type=int, default=0)
  ap.add_argument("--eval-prompts", type=int, default=256)
  ap.add_argument("--data-devices", type=int, default=1,
                  help="size of the mesh's data axis")
  ap.add_argument("--model-devices", type=int, default=1,
                  help="size of the mesh's model axis")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)

  config = task.TaskConfig()
  keys = jax.random.split(jax.random.key(args.seed), 5)
  gpt = GPTConfig(vocab_size=config.vocab_size, context=config.length,
                  width=args.width, depth=args.depth, heads=args.heads)
  ref = GPT(gpt, rngs=nnx.Rngs(args.seed))
  sft_losses = task.sft(keys[0], ref, config, steps=args.sft_steps)
  print(f"sft: {args.sft_steps} steps, loss {sft_losses[-1]:.4f}",
        file=sys.stderr)
  data = task.preference_pairs(keys[1], ref, config, args.pairs, eps=args.eps)
  policy = nnx.clone(ref)
  n_dev = args.data_devices * args.model_devices
  mesh = Mesh(np.array(jax.devices()[:n_dev]).reshape(
      args.data_devices, args.model_devices), ("data", "model"))
  eval_prompts = task.prompts(keys[2], config, args.eval_prompts)

  def eval_fn(step, m):
    return task.evaluate(jax.random.fold_in(keys[3], step), m, ref, config,
                         eval_prompts)

  kwargs = {} if args.loss_eps is None else {"eps": args.loss_eps}
  result = train_preference(
      policy, ref, data, loss=args.loss, beta=args.beta,
      optimizer=optax.adam(args.lr), steps=args.steps,
      batch_size=args.batch_size, key=keys[4], mesh=mesh,
      micro_batches=args.micro_batches, average_logps=args.average_logps,
      loss_kwargs=kwargs, ref_logps=args.ref_logps, cache_dir=args.cache_dir,
      checkpoint_dir=args.checkpoint_dir,
      checkpoint_every=args.checkpoint_every, log_every=args.log_every,
      eval_fn=eval_fn, eval_every=args.eval_every)
  final = result.evals[-1][1] if result.evals else {}
  print(" ".join(f"{k} {v:.4f}" for k, v in final.items()))
  return result
