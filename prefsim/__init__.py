"""prefsim: a theory-first simulation lab for preference learning in JAX."""

from prefsim import models
from prefsim.run import Algorithm
from prefsim.run import run
from prefsim.run import sweep

__version__ = "0.1.0"

__all__ = ["Algorithm", "models", "run", "sweep"]
