r"""Losses by name (prefsim's or Hugging Face TRL's), TRL's
``label_smoothing`` made explicit, and weighted mixtures of losses.

TRL's ``label_smoothing`` means two different things:

* a **smoothing weight** for ``"sigmoid"`` (cDPO), ``"exo_pair"``, ``"aot"``
  and ``"aot_pair"``/``"aot_unpaired"``: the target for the labelled-chosen
  response is :math:`1-\epsilon`;
* an **assumed flip rate** for ``"robust"`` (rDPO): the loss is debiased for
  labels flipped at rate :math:`\epsilon` (singular at 1/2).

prefsim calls both ``eps``, on the loss that gives it its meaning; use
:func:`from_trl` to translate a TRL configuration.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

import jax

from prefsim.losses import listwise
from prefsim.losses import pairwise
from prefsim.losses import reference_free

__all__ = ["from_trl", "get", "mix", "names"]

Loss = Callable[..., jax.Array]

_PREFSIM: dict[str, Loss] = {
    fn.__name__: fn for fn in (
        pairwise.dpo, pairwise.cdpo, pairwise.rdpo, pairwise.ipo,
        pairwise.hinge, pairwise.exo_pair, pairwise.nca_pair,
        pairwise.bco_pair, pairwise.sppo_hard, pairwise.apo_zero,
        pairwise.apo_down, pairwise.discopop, pairwise.aot,
        pairwise.aot_unpaired, reference_free.simpo, reference_free.orpo,
        listwise.pl_dpo, listwise.lipo_lambda, listwise.infonca,
        listwise.nca)
}

# TRL DPOTrainer ``loss_type`` (and CPOTrainer's "simpo") -> prefsim loss.
# "aot_pair" is TRL's older name for the *unpaired* AOT loss.
_TRL: dict[str, Loss] = {
    "sigmoid": pairwise.dpo,
    "sigmoid_norm": pairwise.dpo,
    "robust": pairwise.rdpo,
    "hinge": pairwise.hinge,
    "ipo": pairwise.ipo,
    "exo_pair": pairwise.exo_pair,
    "nca_pair": pairwise.nca_pair,
    "bco_pair": pairwise.bco_pair,
    "sppo_hard": pairwise.sppo_hard,
    "aot": pairwise.aot,
    "aot_pair": pairwise.aot_unpaired,
    "aot_unpaired": pairwise.aot_unpaired,
    "apo_zero": pairwise.apo_zero,
    "apo_down": pairwise.apo_down,
    "discopop": pairwise.discopop,
    "simpo": reference_free.simpo,
}

# What TRL's ``label_smoothing`` becomes for each loss type that reads it.
_SMOOTHING_WEIGHT = {"sigmoid": pairwise.cdpo, "exo_pair": pairwise.exo_pair,
                     "aot": pairwise.aot, "aot_pair": pairwise.aot_unpaired,
                     "aot_unpaired": pairwise.aot_unpaired,
                     "simpo": reference_free.simpo}
_FLIP_RATE = {"robust": pairwise.rdpo}


def names() -> list[str]:
  """Every name :func:`get` accepts: prefsim's and TRL's, sorted."""
  return sorted(set(_PREFSIM) | set(_TRL))


def get(name: str) -> Loss:
  """The loss called ``name`` by prefsim or by TRL's ``loss_type``.

  ``get("sigmoid") is dpo``, ``get("robust") is rdpo``,
  ``get("aot_pair") is aot_unpaired`` (TRL's older name for the unpaired
  loss) and ``get("sigmoid_norm") is dpo`` (pass length-averaged
  log-ratios). A TRL name returns the bare function: for TRL's
  ``label_smoothing`` and ``discopop_tau`` use :func:`from_trl`.

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  if name in _PREFSIM:
    return _PREFSIM[name]
  if name in _TRL:
    return _TRL[name]
  raise ValueError(f"unknown loss name {name!r}; known names: "
                   f"{', '.join(names())}")


def from_trl(loss_type: str, *, label_smoothing: float = 0.0,
             discopop_tau: float = 0.05, simpo_gamma: float = 0.5) -> Loss:
  """The prefsim loss that gives TRL's numbers for a TRL configuration.

  Returns ``loss(chosen, rejected, *, beta, **rest)`` with TRL's options
  bound under the name and meaning prefsim gives them:

  * ``"sigmoid"`` with ``label_smoothing > 0`` -> :func:`cdpo` with
    ``eps = label_smoothing`` (a smoothing weight); with 0 -> :func:`dpo`.
  * ``"robust"`` -> :func:`rdpo` with ``eps = label_smoothing`` (a flip rate).
  * ``"exo_pair"``, ``"aot"``, ``"aot_pair"``/``"aot_unpaired"``,
    ``"simpo"`` -> ``eps = label_smoothing`` (a smoothing weight); for
    ``"exo_pair"`` a ``label_smoothing`` of 0 becomes ``1e-3``, as in TRL.
  * ``"discopop"`` -> ``tau = discopop_tau``; ``"simpo"`` -> ``gamma =
    simpo_gamma``.

  A nonzero ``label_smoothing`` for a loss type that ignores it raises
  ``ValueError`` rather than being dropped silently.
  """
  fn = get(loss_type)
  if loss_type not in _TRL:
    raise ValueError(f"{loss_type!r} is not a TRL loss_type; TRL names: "
                     f"{', '.join(sorted(_TRL))}")
  bound: dict[str, Any] = {}
  if loss_type in _FLIP_RATE:
    fn, bound["eps"] = _FLIP_RATE[loss_type], label_smoothing
  elif loss_type in _SMOOTHING_WEIGHT:
    fn = _SMOOTHING_WEIGHT[loss_type]
    if loss_type == "sigmoid" and label_smoothing == 0:
      fn = pairwise.dpo
    elif loss_type == "exo_pair" and label_smoothing == 0:
      bound["eps"] = 1e-3
    else:
      bound["eps"] = label_smoothing
  elif label_smoothing != 0:
    raise ValueError(f"TRL's loss_type {loss_type!r} does not read "
                     f"label_smoothing; got label_smoothing={label_smoothing}")
  if loss_type == "discopop":
    bound["tau"] = discopop_tau
  if loss_type == "simpo":
    bound["gamma"] = simpo_gamma
  return functools.partial(fn, **bound) if bound else fn


def _keywords(fn: Loss) -> set[str]:
  params = inspect.signature(fn).parameters.values()
  return {p.name for p in params if p.kind == p.KEYWORD_ONLY} - {"beta"}


def mix(weights: Mapping[str | Loss, float]) -> Loss:
  r"""A weighted sum of pairwise losses, like TRL's list of ``loss_type``
  with ``loss_weights``.

  .. math:: \ell = \sum_k w_k\,\ell_k(h_w, h_l)

  Returns ``mixed(chosen, rejected, *, beta, **hyper)``, per example. Each
  keyword in ``hyper`` goes to every component that takes it, and one that
  no component takes raises ``TypeError`` (it is never dropped). To give two
  components different values of the same keyword (cDPO's smoothing
  weight and rDPO's flip rate are both ``eps``), key them by
  ``functools.partial``: ``mix({partial(rdpo, eps=0.1): 1.0, "ipo": 0.5})``.

  Args:
    weights: maps a loss name (see :func:`names`) or a pairwise loss
      callable to its weight.
  Returns:
    The mixed loss.
  References:
    Test: tests/losses/test_pairwise.py::test_mix_is_the_weighted_sum.
  """
  if not weights:
    raise ValueError("mix needs at least one loss")
  parts = [(get(k) if isinstance(k, str) else k, float(w))
           for k, w in weights.items()]
  for fn, _ in parts:
    if not callable(fn):
      raise TypeError(f"mix keys must be loss names or callables, got {fn!r}")
  accepted = [_keywords(fn) for fn, _ in parts]

  def mixed(chosen_logratios: Any, rejected_logratios: Any, *, beta: float,
            **hyper: Any) -> jax.Array:
    unused = set(hyper) - set().union(*accepted)
    if unused:
      raise TypeError(f"no loss in the mix takes {sorted(unused)}")
    total = None
    for (fn, w), keys in zip(parts, accepted):
      value = w * fn(chosen_logratios, rejected_logratios, beta=beta,
                     **{k: v for k, v in hyper.items() if k in keys})
      total = value if total is None else total + value
    return total

  return mixed
