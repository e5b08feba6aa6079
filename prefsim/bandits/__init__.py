r"""Dueling bandits over featured arms: prompt selection from preferences.

THEORY.md §9: ``K`` candidate prompts with embeddings, a latent utility
:math:`u`, and duels answered by a Bradley-Terry coin
:math:`\Pr(a \succ b) = \sigma(u(a) - u(b))` (Lin et al. 2024, APOHF).

- :mod:`~prefsim.bandits.env`: the :class:`DuelingProblem` pytree, its
  makers, the feedback oracle and the regret measures.
- :mod:`~prefsim.bandits.neural`: APOHF and the baselines linear dueling,
  Double Thompson sampling (an MLP ensemble) and random pairs, as
  :class:`prefsim.Algorithm`\ s.
- :mod:`~prefsim.bandits.classic`: the classic K-armed baselines RUCB,
  Double Thompson Sampling (Beta posteriors) and Interleaved Filter 2.
- :mod:`~prefsim.bandits.embed`: embeddings of real prompt strings by a
  locally stored model (optional extra ``prefsim[embed]``).
"""

from prefsim.bandits import classic
from prefsim.bandits.classic import double_thompson
from prefsim.bandits.classic import interleaved_filter
from prefsim.bandits.classic import rucb
from prefsim.bandits.embed import embed_prompts
from prefsim.bandits.env import DuelingProblem
from prefsim.bandits.env import check_problem
from prefsim.bandits.env import dueling_regret
from prefsim.bandits.env import feedback
from prefsim.bandits.env import from_embeddings
from prefsim.bandits.env import linear_problem
from prefsim.bandits.env import linearity
from prefsim.bandits.env import mlp
from prefsim.bandits.env import mlp_problem
from prefsim.bandits.env import regret_info
from prefsim.bandits.env import reported_regret
from prefsim.bandits.env import win_prob
from prefsim.bandits.neural import EnsembleState
from prefsim.bandits.neural import History
from prefsim.bandits.neural import LinearState
from prefsim.bandits.neural import NeuralState
from prefsim.bandits.neural import apohf
from prefsim.bandits.neural import diag_bonus
from prefsim.bandits.neural import double_ts
from prefsim.bandits.neural import fit_mlp
from prefsim.bandits.neural import gram_bonus
from prefsim.bandits.neural import gram_update
from prefsim.bandits.neural import linear_dueling
from prefsim.bandits.neural import mlp_init
from prefsim.bandits.neural import random_pair
from prefsim.bandits.neural import second_arm

__all__ = [
    "DuelingProblem", "EnsembleState", "History", "LinearState",
    "NeuralState", "apohf", "check_problem", "classic", "diag_bonus",
    "double_thompson", "double_ts", "interleaved_filter",
    "dueling_regret", "embed_prompts", "feedback", "fit_mlp",
    "from_embeddings", "gram_bonus", "gram_update", "linear_dueling",
    "linear_problem", "linearity", "mlp", "mlp_init", "mlp_problem",
    "random_pair", "regret_info", "reported_regret", "rucb", "second_arm",
    "win_prob",
]
