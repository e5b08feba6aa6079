"""prefsim: a theory-first simulation lab for preference learning in JAX.

``prefsim.testing`` (hypothesis strategies for your tests) needs the
``testing`` extra and is imported on its own: ``from prefsim import testing``.
``prefsim.llm`` (the Flax NNX language model) is imported on its own too,
``from prefsim import llm``, so that ``import prefsim`` stays light.
"""

from prefsim import bandits
from prefsim import coverage
from prefsim import data
from prefsim import games
from prefsim import loglinear
from prefsim import losses
from prefsim import mdp
from prefsim import models
from prefsim import offline
from prefsim import policies
from prefsim import zeroth_order
from prefsim.run import Algorithm
from prefsim.run import run
from prefsim.run import sweep

__version__ = "0.1.0"

__all__ = ["Algorithm", "bandits", "coverage", "data", "games", "loglinear",
           "losses", "mdp", "models", "offline", "policies", "run", "sweep",
           "zeroth_order"]
