r"""The DPO family of preference losses: pure functions, per example.

Pairwise losses take ``(chosen_logratios, rejected_logratios, *, beta,
**hyper)`` of equal shape ``[...]`` and return the per-example loss, never
reduced; reference-free ones (``simpo``, ``orpo``) take log-probs in the
same slots; listwise ones take ``logratios[..., m]``. ``get(name)`` looks a
loss up by its prefsim or TRL name. See docs/losses.md for the table of
every loss, its TRL name, its formula and the test that checks it.

  from prefsim import losses
  per_example = losses.rdpo(hw, hl, beta=0.1, eps=0.2)
  loss = per_example.mean()
"""

from prefsim.losses.composite import with_sft
from prefsim.losses.listwise import infonca
from prefsim.losses.listwise import lipo_lambda
from prefsim.losses.listwise import nca
from prefsim.losses.listwise import pl_dpo
from prefsim.losses.pairwise import aot
from prefsim.losses.pairwise import aot_unpaired
from prefsim.losses.pairwise import apo_down
from prefsim.losses.pairwise import apo_zero
from prefsim.losses.pairwise import bco_pair
from prefsim.losses.pairwise import cdpo
from prefsim.losses.pairwise import discopop
from prefsim.losses.pairwise import dpo
from prefsim.losses.pairwise import exo_pair
from prefsim.losses.pairwise import hinge
from prefsim.losses.pairwise import ipo
from prefsim.losses.pairwise import nca_pair
from prefsim.losses.pairwise import rdpo
from prefsim.losses.pairwise import sppo_hard
from prefsim.losses.reference_free import orpo
from prefsim.losses.reference_free import simpo
from prefsim.losses.registry import from_trl
from prefsim.losses.registry import get
from prefsim.losses.registry import mix
from prefsim.losses.registry import names

__all__ = [
    "aot",
    "aot_unpaired",
    "apo_down",
    "apo_zero",
    "bco_pair",
    "cdpo",
    "discopop",
    "dpo",
    "exo_pair",
    "from_trl",
    "get",
    "hinge",
    "infonca",
    "ipo",
    "lipo_lambda",
    "mix",
    "names",
    "nca",
    "nca_pair",
    "orpo",
    "pl_dpo",
    "rdpo",
    "simpo",
    "sppo_hard",
    "with_sft",
]
