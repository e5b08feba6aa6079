"""Suite-wide set-up: the hypothesis profile of DESIGN.md."""

from prefsim.testing import register_profile

register_profile()
