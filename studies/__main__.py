"""``python -m studies list | run NAME [NAME...] | run all [--quick]``."""

from __future__ import annotations

import sys

from studies._harness import main

if __name__ == "__main__":
  sys.exit(main())
