r"""Language models for preference learning: a Flax NNX GPT and log-probs.

The layer between a transformer and the losses of :mod:`prefsim.losses`:
the model gives logits, :func:`sequence_logps` turns them into the
log-probability of each completion, and a loss takes the log-ratios. See
docs/llm.md.

  from flax import nnx
  from prefsim import llm
  model = llm.GPT(llm.GPTConfig(vocab_size=256, context=128, width=128,
                                depth=4, heads=4), rngs=nnx.Rngs(0))
  logits = model(tokens, mask)                       # [B, L, V]
  logps = llm.sequence_logps(logits, tokens, completion_mask)   # [B]
  new = llm.sample(key, model, prompt, max_new_tokens=16, top_k=20)

:mod:`~prefsim.llm.task` is a synthetic preference task with an exact true
reward; :func:`train_preference` fine-tunes a model with any pairwise loss
of :mod:`prefsim.losses` by name, over a device mesh, with checkpoints.
Command line: ``python -m prefsim.llm --help``.
"""

from prefsim.llm import task
from prefsim.llm import train
from prefsim.llm.gpt2 import gpt2_config
from prefsim.llm.gpt2 import load_gpt2
from prefsim.llm.gpt2 import read_safetensors
from prefsim.llm.logps import sequence_logps
from prefsim.llm.model import GPT
from prefsim.llm.model import GPTConfig
from prefsim.llm.model import KVCache
from prefsim.llm.model import LOGICAL_AXES
from prefsim.llm.model import sample
from prefsim.llm.train import TrainResult
from prefsim.llm.train import train_preference

__all__ = [
    "GPT",
    "GPTConfig",
    "KVCache",
    "LOGICAL_AXES",
    "TrainResult",
    "gpt2_config",
    "load_gpt2",
    "read_safetensors",
    "sample",
    "sequence_logps",
    "task",
    "train",
    "train_preference",
]
