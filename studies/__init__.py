"""Studies: one module per paper claim, each regenerating a figure and
checking the claim. Run ``python -m studies list`` to see them; the interface a
study follows is in ``studies/_harness.py``."""
