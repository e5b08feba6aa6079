"""Preference models: who prefers what, P(a > b)."""
