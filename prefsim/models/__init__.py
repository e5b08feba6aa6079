"""Preference models: who prefers what, P(a > b)."""

from prefsim.models import bradley_terry
from prefsim.models import general
from prefsim.models import gpm

__all__ = ["bradley_terry", "general", "gpm"]
