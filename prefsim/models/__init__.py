"""Preference models: who prefers what, P(a > b)."""

from prefsim.models import bradley_terry
from prefsim.models import general
from prefsim.models import gpm
from prefsim.models import regret

__all__ = ["bradley_terry", "general", "gpm", "regret"]
