"""Preference models: who prefers what, P(a > b)."""

from prefsim.models import bradley_terry

__all__ = ["bradley_terry"]
