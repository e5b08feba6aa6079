"""The loss zoo, values and gradients: prefsim (jitted JAX) against the same
formulas written in PyTorch, on the CPU.

The same inputs for both: ``N = 1,000,000`` pairs (``--quick``: 100,000) of
float32 log-ratios h_w, h_l ~ N(0, 3²) (log-probs -|x| - 0.01 for SimPO and
ORPO, reference margins for AOT), and for the listwise losses ``N / 4`` lists
of ``K = 4`` responses. Each tool computes every loss's per-example values and
the gradient of their sum with respect to its inputs: prefsim with
``jax.jit(jax.value_and_grad(...))`` (compiled once, timed warm), PyTorch with
autograd (``.sum().backward()``), written the way a user porting TRL's
formulas would write them (``stable=True`` sorts for AOT, so that tied
values get the same gradients in both). Each time is the median of repeated
calls. The two tools are timed in separate phases after a pause (on a
2-core machine XLA's and OpenMP's spinning thread pools slow each other
when calls interleave),
PyTorch with its default thread count and with one thread; the ratio is the
faster PyTorch setting's total time over prefsim's. The claims check that
both computed the same values and gradients (normwise relative difference).

The AOT losses sort the batch; XLA's CPU sort is far slower than NumPy's or
PyTorch's (about 45x for 1e5 float32 on the 2-core reference machine), and
they dominate prefsim's total: the table also gives the total without them.
``exo_pair`` computes its KL in a form that keeps full relative precision
near the loss's minimum (where the textbook form that TRL and the PyTorch
column use is a difference of first-order terms); that costs about five
times the textbook form's time.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._harness import BenchResult, time_call
from prefsim import losses
from studies._harness import check

DESCRIPTION = ("The DPO-family loss zoo, values + gradients: prefsim (jit) vs "
               "the same formulas in PyTorch (CPU)")

BETA, EPS, TAU, GAMMA, DELTA, ALPHA, K = 0.5, 0.1, 0.05, 0.5, 0.25, 0.7, 4


def _labels(n):
  return np.tile(np.asarray([3.0, 2.0, 1.0, 0.0], np.float32), (n, 1))


# --- prefsim: name -> (loss of the input arrays, input names) ----------------

_PREFSIM = {
    "dpo": (lambda w, l: losses.dpo(w, l, beta=BETA), "pair"),
    "cdpo": (lambda w, l: losses.cdpo(w, l, beta=BETA, eps=EPS), "pair"),
    "rdpo": (lambda w, l: losses.rdpo(w, l, beta=BETA, eps=EPS), "pair"),
    "ipo": (lambda w, l: losses.ipo(w, l, beta=BETA), "pair"),
    "hinge": (lambda w, l: losses.hinge(w, l, beta=BETA), "pair"),
    "exo_pair": (lambda w, l: losses.exo_pair(w, l, beta=BETA, eps=EPS),
                 "pair"),
    "nca_pair": (lambda w, l: losses.nca_pair(w, l, beta=BETA), "pair"),
    "bco_pair": (lambda w, l: losses.bco_pair(w, l, beta=BETA, delta=DELTA),
                 "pair"),
    "sppo_hard": (lambda w, l: losses.sppo_hard(w, l, beta=BETA), "pair"),
    "apo_zero": (lambda w, l: losses.apo_zero(w, l, beta=BETA), "pair"),
    "apo_down": (lambda w, l: losses.apo_down(w, l, beta=BETA), "pair"),
    "discopop": (lambda w, l: losses.discopop(w, l, beta=BETA, tau=TAU),
                 "pair"),
    "aot": (lambda w, l, v: losses.aot(w, l, beta=BETA, ref_margins=v,
                                       eps=EPS), "aot"),
    "aot_unpaired": (lambda w, l: losses.aot_unpaired(w, l, beta=BETA,
                                                      eps=EPS), "pair"),
    "simpo": (lambda w, l: losses.simpo(w, l, beta=BETA, gamma=GAMMA),
              "logps"),
    "orpo": (lambda w, l: losses.orpo(w, l, beta=BETA), "logps"),
    "rpo": (lambda w, l, lp: losses.with_sft(losses.dpo(w, l, beta=BETA), lp,
                                             1.0), "rpo"),
    "pl_dpo": (lambda h: losses.pl_dpo(h, beta=BETA), "list"),
    "lipo_lambda": (lambda h, y: losses.lipo_lambda(h, y, beta=BETA),
                    "labels"),
    "infonca": (lambda h, r: losses.infonca(h, r, beta=BETA, alpha=ALPHA),
                "rewards"),
    "nca": (lambda h, r: losses.nca(h, r, beta=BETA, alpha=ALPHA), "rewards"),
}

# Which leading arguments are differentiated (the rest are data).
_N_DIFF = {"pair": 2, "aot": 2, "logps": 2, "rpo": 3, "list": 1,
           "labels": 1, "rewards": 1}


# --- PyTorch: the same formulas, TRL-style -----------------------------------


def _t_pair_smooth(z, eps):
  return -F.logsigmoid(z) * (1 - eps) - F.logsigmoid(-z) * eps


def _t_lipo(h, y):
  s = BETA * h
  rank = torch.argsort(torch.argsort(-s, dim=-1), dim=-1) + 1
  inv_d = 1.0 / torch.log2(1.0 + rank.to(s.dtype))
  g = torch.exp2(y) - 1
  w = ((g[..., :, None] - g[..., None, :]).abs()
       * (inv_d[..., :, None] - inv_d[..., None, :]).abs())
  w = torch.where(y[..., :, None] > y[..., None, :], w, torch.zeros_like(w))
  pair = -F.logsigmoid(s[..., :, None] - s[..., None, :])
  return (w.detach() * pair).sum(dim=(-2, -1))


def _t_pl(h):
  s = BETA * h
  tail = torch.flip(torch.logcumsumexp(torch.flip(s, [-1]), dim=-1), [-1])
  return (tail - s).sum(-1)


_TORCH = {
    "dpo": lambda w, l: -F.logsigmoid(BETA * (w - l)),
    "cdpo": lambda w, l: _t_pair_smooth(BETA * (w - l), EPS),
    "rdpo": lambda w, l: ((-F.logsigmoid(BETA * (w - l)) * (1 - EPS)
                           + F.logsigmoid(-BETA * (w - l)) * EPS)
                          / (1 - 2 * EPS)),
    "ipo": lambda w, l: (w - l - 1 / (2 * BETA)) ** 2,
    "hinge": lambda w, l: torch.relu(1 - BETA * (w - l)),
    "exo_pair": lambda w, l: (
        torch.sigmoid(BETA * (w - l)) * (F.logsigmoid(BETA * (w - l))
                                         - math.log(1 - EPS))
        + torch.sigmoid(-BETA * (w - l)) * (F.logsigmoid(-BETA * (w - l))
                                            - math.log(EPS))),
    "nca_pair": lambda w, l: (-F.logsigmoid(BETA * w)
                              - 0.5 * F.logsigmoid(-BETA * w)
                              - 0.5 * F.logsigmoid(-BETA * l)),
    "bco_pair": lambda w, l: (-F.logsigmoid(BETA * w - DELTA)
                              - F.logsigmoid(-(BETA * l - DELTA))),
    "sppo_hard": lambda w, l: (w - 0.5 / BETA) ** 2 + (l + 0.5 / BETA) ** 2,
    "apo_zero": lambda w, l: (1 - torch.sigmoid(BETA * w)
                              + torch.sigmoid(BETA * l)),
    "apo_down": lambda w, l: (torch.sigmoid(BETA * w)
                              + 1 - torch.sigmoid(BETA * (w - l))),
    "discopop": lambda w, l: (
        -F.logsigmoid(BETA * (w - l))
        * (1 - torch.sigmoid(BETA * (w - l) / TAU))
        + torch.exp(-BETA * (w - l)) * torch.sigmoid(BETA * (w - l) / TAU)),
    "aot": lambda w, l, v: _t_pair_smooth(
        BETA * (torch.sort(w - l + v, dim=-1, stable=True)[0]
              - torch.sort(v, dim=-1, stable=True)[0]),
        EPS),
    "aot_unpaired": lambda w, l: _t_pair_smooth(
        BETA * (torch.sort(w, dim=-1, stable=True)[0]
                - torch.sort(l, dim=-1, stable=True)[0]), EPS),
    "simpo": lambda w, l: -F.logsigmoid(BETA * (w - l) - GAMMA),
    "orpo": lambda w, l: (-w - BETA * F.logsigmoid(
        (w - l) - (torch.log1p(-torch.exp(w)) - torch.log1p(-torch.exp(l))))),
    "rpo": lambda w, l, lp: -F.logsigmoid(BETA * (w - l)) - lp,
    "pl_dpo": _t_pl,
    "lipo_lambda": _t_lipo,
    "infonca": lambda h, r: -(torch.softmax(r / ALPHA, -1)
                              * torch.log_softmax(BETA * h, -1)).sum(-1),
    "nca": lambda h, r: -(torch.softmax(r / ALPHA, -1) * F.logsigmoid(BETA * h)
                          + F.logsigmoid(-BETA * h) / h.shape[-1]).sum(-1),
}


def _inputs(kind, n, rng):
  normal = lambda *shape: (3.0 * rng.standard_normal(shape)).astype(np.float32)
  logps = lambda: (-np.abs(normal(n)) - 0.01).astype(np.float32)
  m = n // K
  return {
      "pair": lambda: (normal(n), normal(n)),
      "aot": lambda: (normal(n), normal(n), normal(n)),
      "logps": lambda: (logps(), logps()),
      "rpo": lambda: (normal(n), normal(n), logps()),
      "list": lambda: (normal(m, K),),
      "labels": lambda: (normal(m, K), _labels(m)),
      "rewards": lambda: (normal(m, K), normal(m, K)),
  }[kind]()


def _prefsim_fn(loss, n_diff):
  def total(*args):
    values = loss(*args)
    return jnp.sum(values), values
  value_and_grad = jax.value_and_grad(total, argnums=tuple(range(n_diff)),
                                     has_aux=True)

  def call(*args):
    (_, values), grads = value_and_grad(*args)
    return values, grads
  return jax.jit(call)


def _torch_fn(loss, n_diff):
  def call(*args):
    leaves = [a.detach().requires_grad_(i < n_diff) for i, a in
              enumerate(args)]
    values = loss(*leaves)
    values.sum().backward()
    return values.detach(), tuple(a.grad for a in leaves[:n_diff])
  return call


def _rel(a, b):
  """Normwise relative difference max|a - b| / max|b| (0 when both are 0)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = np.max(np.abs(b))
  return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(
      np.max(np.abs(a)))


def run(quick: bool) -> BenchResult:
  n = 100_000 if quick else 1_000_000
  repeat = 3 if quick else 5
  rng = np.random.default_rng(0)
  cases = []
  for name, (loss, kind) in _PREFSIM.items():
    args = _inputs(kind, n, rng)
    n_diff = _N_DIFF[kind]
    cases.append((name, _prefsim_fn(loss, n_diff),
                  _torch_fn(_TORCH[name], n_diff),
                  tuple(jnp.asarray(a) for a in args),
                  tuple(torch.from_numpy(a) for a in args)))

  rows = {}
  for name, ours_fn, theirs_fn, j_args, t_args in cases:
    ours_value, ours_grad = ours_fn(*j_args)
    theirs_value, theirs_grad = theirs_fn(*t_args)
    rows[name] = {
        "loss": name,
        "value_rel_diff": _rel(ours_value, theirs_value.numpy()),
        "grad_rel_diff": max(_rel(g, t.numpy())
                             for g, t in zip(ours_grad, theirs_grad))}
  # Timed in separate phases, each after a pause: on 2 cores, XLA's and
  # OpenMP's spinning thread pools slow each other down when calls
  # interleave.
  default_threads = torch.get_num_threads()
  for threads, column in [(default_threads, f"torch_{default_threads}thr_ms"),
                          (1, "torch_1thr_ms")]:
    torch.set_num_threads(threads)
    time.sleep(1.0)
    for name, _, theirs_fn, _, t_args in cases:
      rows[name][column] = 1e3 * time_call(
          lambda: theirs_fn(*t_args), repeat=repeat)["median"]
  torch.set_num_threads(default_threads)
  time.sleep(1.0)
  for name, ours_fn, _, j_args, _ in cases:
    rows[name]["prefsim_ms"] = 1e3 * time_call(
        lambda: ours_fn(*j_args), repeat=repeat)["median"]

  columns = ["prefsim_ms", f"torch_{default_threads}thr_ms", "torch_1thr_ms"]
  table = [rows[name] for name, *_ in cases]
  total = {"loss": "total"}
  for c in columns:
    total[c] = sum(r[c] for r in table)
  total["value_rel_diff"] = max(r["value_rel_diff"] for r in table)
  total["grad_rel_diff"] = max(r["grad_rel_diff"] for r in table)
  table.append(total)
  no_sort = {"loss": "total without aot, aot_unpaired"}
  for c in columns:
    no_sort[c] = sum(r[c] for r in table[:-1]
                     if not r["loss"].startswith("aot"))
  no_sort["value_rel_diff"] = max(r["value_rel_diff"] for r in table[:-1]
                                  if not r["loss"].startswith("aot"))
  no_sort["grad_rel_diff"] = max(r["grad_rel_diff"] for r in table[:-1]
                                 if not r["loss"].startswith("aot"))
  table.append(no_sort)
  for r in table:
    r["best_torch/prefsim"] = min(r[columns[1]], r[columns[2]]) / r[
        "prefsim_ms"]
  table = [{k: r[k] for k in ["loss", *columns, "best_torch/prefsim",
                              "value_rel_diff", "grad_rel_diff"]}
           for r in table]
  best = min(total[columns[1]], total[columns[2]])
  ratio = best / total["prefsim_ms"]
  return BenchResult(
      rows=table,
      ratio=ratio,
      ratio_label=("faster PyTorch setting's total time / prefsim total "
                   "time (values + grads)"),
      config={"pairs": n, "lists": n // K, "K": K, "beta": BETA, "eps": EPS,
              "tau": TAU, "gamma": GAMMA, "delta": DELTA, "alpha": ALPHA,
              "dtype": "float32", "seed": 0, "repeat": repeat,
              "torch": torch.__version__,
              "torch_threads": [default_threads, 1]},
      claims=[
          check("values: max normwise relative difference, prefsim vs "
                "PyTorch, over the zoo", total["value_rel_diff"], hi=1e-5),
          check("gradients: max normwise relative difference, prefsim vs "
                "PyTorch, over the zoo", total["grad_rel_diff"], hi=1e-5),
      ])
