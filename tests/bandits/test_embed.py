"""Tests of prefsim.bandits.embed: argument checks, and real embeddings with
the model bundled inside the wordllama wheel (a dev dependency; offline)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from prefsim import bandits


def test_embed_prompts_bad_arguments(tmp_path):
  """Bad prompts, a missing folder, an unknown backend, a folder given to the
  bundled model and a missing package raise clear errors before any model
  is loaded."""
  with pytest.raises(TypeError, match="sequence of strings"):
    bandits.embed_prompts("one prompt", tmp_path)
  with pytest.raises(ValueError, match="K >= 2"):
    bandits.embed_prompts(["only one"], tmp_path)
  with pytest.raises(ValueError, match="empty ones: 1"):
    bandits.embed_prompts(["a", "  "], tmp_path)
  with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
    bandits.embed_prompts(["a", "b"], tmp_path / "no-such-model")
  with pytest.raises(FileNotFoundError, match="needs model_path"):
    bandits.embed_prompts(["a", "b"], backend="model2vec")
  with pytest.raises(ValueError, match="backend"):
    bandits.embed_prompts(["a", "b"], tmp_path, backend="openai")
  with pytest.raises(ValueError, match="leave model_path as None"):
    bandits.embed_prompts(["a", "b"], tmp_path, backend="wordllama")
  for backend, package in (("model2vec", "model2vec"),
                           ("sentence_transformers", "sentence-transformers")):
    if importlib.util.find_spec(backend) is None:
      with pytest.raises(ImportError, match=f"pip install {package}"):
        bandits.embed_prompts(["a", "b"], tmp_path, backend=backend)


def test_bundled_model_embeds_offline():
  """The default model (shipped inside the wordllama wheel) embeds real
  prompts offline: unit rows, paraphrases closer than unrelated prompts,
  and a problem built from them passes the environment's checks."""
  prompts = ["Sort the words alphabetically.",
             "Put the list of words in alphabetical order.",
             "Write a short poem about the sea at night."]
  emb = bandits.embed_prompts(prompts)
  assert emb.shape[0] == 3 and emb.dtype == np.float64
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-6)
  sim = emb @ emb.T
  assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[1, 2] + 0.2
  problem = bandits.from_embeddings(emb, np.array([1.0, 0.5, -1.0]))
  assert bandits.check_problem(problem) == (3, emb.shape[1])
