"""``python -m prefsim.llm``: preference fine-tuning on the synthetic task.

See :func:`prefsim.llm.train.main` (``--help`` lists the options).
"""

from prefsim.llm.train import main

if __name__ == "__main__":
  main()
