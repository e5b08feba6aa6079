r"""Preference games: minimax winners, KL-regularised Nash, and the solvers.

The game of THEORY.md §6: two players choose policies over ``K`` responses and
player 1 wins with probability :math:`\pi_1^\top P\pi_2`; with ``tau > 0``
each pays ``tau`` times its KL divergence to a reference :math:`\mu`.

- :mod:`~prefsim.games.core`: the :class:`Game` pytree, payoff,
  exploitability, best response, duality gap.
- :mod:`~prefsim.games.minimax`: exact minimax winners, batched over games.
- :mod:`~prefsim.games.nash`: the KL-regularised Nash equilibrium.
- :mod:`~prefsim.games.solvers`: the iterative solvers as
  :class:`prefsim.Algorithm`\ s over a :class:`Game`.
- :mod:`~prefsim.games.losses`: the sample-based losses (online IPO / EGPO,
  INPO) whose SGD steps are the solvers' mirror steps.
"""

from prefsim.games.core import Game
from prefsim.games.core import best_response
from prefsim.games.core import duality_gap
from prefsim.games.core import exploitability
from prefsim.games.core import gap
from prefsim.games.core import make_game
from prefsim.games.core import payoff
from prefsim.games.losses import inpo
from prefsim.games.losses import online_ipo
from prefsim.games.minimax import minimax_winner
from prefsim.games.nash import kl_nash
from prefsim.games.solvers import extragradient
from prefsim.games.solvers import fictitious_play
from prefsim.games.solvers import mwu
from prefsim.games.solvers import nash_md
from prefsim.games.solvers import omd
from prefsim.games.solvers import optimistic_mwu
from prefsim.games.solvers import spo

__all__ = [
    "Game", "best_response", "duality_gap", "exploitability", "extragradient",
    "fictitious_play", "gap", "inpo", "kl_nash", "make_game", "minimax_winner",
    "mwu", "nash_md", "omd", "online_ipo", "optimistic_mwu", "payoff", "spo",
]
