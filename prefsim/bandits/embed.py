"""Embeddings of real prompts for :func:`prefsim.bandits.from_embeddings`.

:func:`embed_prompts` turns a list of prompt strings into unit-norm
embeddings [K, D]. By default it uses the model that ships *inside* the
``wordllama`` wheel (WordLlama ``l2_supercat``, 256-d token embeddings
pooled and L2-normalised; weights and tokenizer are package files, so it
loads offline). A model2vec static model or a sentence-transformers model
(APOHF's code uses ``all-mpnet-base-v2``, D = 768) stored in a local folder
works too. Nothing is ever downloaded. The packages are optional:
``pip install 'prefsim[embed]'`` installs wordllama (and model2vec);
prefsim's own tests embed with wordllama.

Example::

  emb = embed_prompts(["Sort the words.", "Alphabetise the list."])
  problem = bandits.from_embeddings(emb, utilities)
"""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Sequence

import numpy as np

__all__ = ["embed_prompts"]

_BACKENDS = ("wordllama", "model2vec", "sentence_transformers")


def _has(module: str) -> bool:
  return importlib.util.find_spec(module) is not None


def _wordllama_embed(prompts: list[str]) -> np.ndarray:
  """WordLlama's bundled model, loaded from the package's own files.

  ``WordLlama.load`` looks for the bundled tokenizer under a misnamed folder
  (wordllama 0.4) and would then try to download it; pointing its cache at
  the package folder, with downloads disabled, finds both bundled files.
  """
  import wordllama  # pylint: disable=import-outside-toplevel
  package = pathlib.Path(wordllama.__file__).parent
  model = wordllama.WordLlama.load(cache_dir=package, disable_download=True)
  return model.embed(prompts, norm=True)


def embed_prompts(prompts: Sequence[str],
                  model_path: str | pathlib.Path | None = None, *,
                  backend: str = "auto") -> np.ndarray:
  """Unit-norm embeddings of ``prompts`` by a bundled or locally stored model.

  Args:
    prompts: ``K >= 2`` non-empty strings.
    model_path: None for the model bundled in the ``wordllama`` package, or
      a folder holding a model2vec or sentence-transformers model.
    backend: ``"wordllama"``, ``"model2vec"``, ``"sentence_transformers"``
      or ``"auto"``: wordllama without ``model_path``; with one,
      sentence-transformers if the folder has ``modules.json`` (that
      library's marker) or model2vec is missing, model2vec otherwise.
  Returns:
    float64 array [K, D], each row of norm 1.
  Raises:
    TypeError, ValueError: ``prompts`` not a sequence of ``K >= 2``
      non-empty strings; unknown ``backend``; a folder given to the
      wordllama backend; an embedding of zero norm.
    FileNotFoundError: ``model_path`` is not a folder, or missing for a
      folder-based backend.
    ImportError: the backend's package is not installed.
  Tests: tests/bandits/test_embed.py::test_embed_prompts_bad_arguments,
    ::test_bundled_model_embeds_offline.
  """
  if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
    raise TypeError("prompts must be a sequence of strings")
  prompts = list(prompts)
  if len(prompts) < 2 or not all(p.strip() for p in prompts):
    raise ValueError(f"prompts must hold K >= 2 non-empty strings, got "
                     f"{len(prompts)} (empty ones: "
                     f"{sum(not p.strip() for p in prompts)})")
  if backend == "auto":
    if model_path is None:
      backend = "wordllama"
    else:
      folder = pathlib.Path(model_path)
      backend = ("sentence_transformers" if (folder / "modules.json").exists()
                 or not _has("model2vec") else "model2vec")
  if backend not in _BACKENDS:
    raise ValueError(f"backend must be 'auto' or one of {_BACKENDS}, got "
                     f"{backend!r}")
  if backend == "wordllama":
    if model_path is not None:
      raise ValueError("the wordllama backend uses the model bundled in its "
                       "package: leave model_path as None")
  else:
    path = pathlib.Path("." if model_path is None else model_path)
    if model_path is None or not path.is_dir():
      raise FileNotFoundError(
          f"backend {backend!r} needs model_path, a folder holding the model, "
          f"got {None if model_path is None else str(path)!r}; nothing is "
          "downloaded")
  package = {"sentence_transformers": "sentence-transformers"}.get(backend,
                                                                     backend)
  if not _has(backend):
    raise ImportError(f"embed_prompts with backend {backend!r} needs the "
                      f"package {package}: pip install {package}")
  if backend == "wordllama":
    emb = _wordllama_embed(prompts)
  elif backend == "model2vec":
    from model2vec import StaticModel  # pylint: disable=import-outside-toplevel
    emb = StaticModel.from_pretrained(str(path)).encode(prompts)
  else:
    from sentence_transformers import SentenceTransformer  # pylint: disable=import-outside-toplevel
    emb = SentenceTransformer(str(path), local_files_only=True).encode(
        prompts)
  emb = np.asarray(emb, np.float64)
  norms = np.linalg.norm(emb, axis=1, keepdims=True)
  if np.any(norms == 0) or not np.all(np.isfinite(emb)):
    raise ValueError("the model gave a zero or non-finite embedding for "
                     "some prompt")
  return emb / norms
