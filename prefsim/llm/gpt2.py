r"""Load a GPT-2 checkpoint (Hugging Face layout, safetensors) into a GPT.

A checkpoint directory holds ``config.json`` (``n_embd``, ``n_layer``,
``n_head``, ``n_positions``, ``vocab_size``, ``layer_norm_epsilon``,
optionally ``n_inner``, ``activation_function``, ``tie_word_embeddings``)
and ``model.safetensors`` with the tensors of ``GPT2LMHeadModel``, names
optionally prefixed by ``transformer.``:

=====================================  =================  ==================
safetensors name                       shape              GPT parameter
=====================================  =================  ==================
``wte.weight``                         ``[V, D]``         ``wte``
``wpe.weight``                         ``[context, D]``   ``wpe``
``h.{i}.ln_1.{weight,bias}``           ``[D]``            ``blocks[i].ln_1``
``h.{i}.attn.c_attn.weight``           ``[D, 3D]``        ``attn.qkv_kernel``
                                                          ``[D, 3, N, H]``
``h.{i}.attn.c_attn.bias``             ``[3D]``           ``attn.qkv_bias``
``h.{i}.attn.c_proj.weight``           ``[D, D]``         ``attn.out_kernel``
                                                          ``[N, H, D]``
``h.{i}.attn.c_proj.bias``             ``[D]``            ``attn.out_bias``
``h.{i}.ln_2.{weight,bias}``           ``[D]``            ``blocks[i].ln_2``
``h.{i}.mlp.c_fc.{weight,bias}``       ``[D, 4D]``, [4D]  ``mlp.fc_*``
``h.{i}.mlp.c_proj.{weight,bias}``     ``[4D, D]``, [D]   ``mlp.proj_*``
``ln_f.{weight,bias}``                 ``[D]``            ``ln_f``
``lm_head.weight`` (untied only)       ``[V, D]``         ``head`` (its T)
=====================================  =================  ==================

GPT-2's ``Conv1D`` computes ``x @ W + b`` with ``W [in, out]``, so its
weights are used untransposed; the ``3D`` outputs of ``c_attn`` are queries,
keys and values in that order, each split into heads as ``[N, H]``. The
causal-mask buffers ``h.{i}.attn.bias`` and ``h.{i}.attn.masked_bias`` of
older checkpoints are skipped. Nothing is ever downloaded.

:func:`read_safetensors` is a small reader of the format (an 8-byte
little-endian header length, a JSON header of ``dtype``, ``shape`` and
``data_offsets``, then the raw little-endian bytes), so prefsim needs no
extra package to load a checkpoint.

References:
  Hugging Face transformers, ``models/gpt2/modeling_gpt2.py``
  (``GPT2Attention``, ``GPT2MLP``, ``GPT2Model``, ``GPT2LMHeadModel``).
  The safetensors format, github.com/huggingface/safetensors (README).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any

from flax import nnx
import jax.numpy as jnp
import numpy as np

from prefsim.llm.model import GPT
from prefsim.llm.model import GPTConfig

__all__ = ["gpt2_config", "load_gpt2", "read_safetensors"]

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(jnp.bfloat16), "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_BUFFERS = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)$")


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Every tensor of a ``.safetensors`` file, as NumPy arrays by name.

  Args:
    path: the file.
  Returns:
    ``{name: array}`` with each tensor's dtype (F64, F32, F16, BF16 via
    ml_dtypes, I64, I32, I16, I8, U8, BOOL) and shape; ``__metadata__`` is
    skipped.
  Raises:
    ValueError: a file that is not valid safetensors: a header length past
      the end of the file, a header that is not a JSON object, an unknown
      dtype, or byte offsets that do not match the shape or leave the file.
  Tests:
    tests/llm/test_model.py::test_read_safetensors_matches_the_package,
    tests/llm/test_model.py::test_read_safetensors_rejects_broken_files.
  """
  data = pathlib.Path(path).read_bytes()
  if len(data) < 8:
    raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
  n = int.from_bytes(data[:8], "little")
  if n > len(data) - 8:
    raise ValueError(f"{path}: header length {n} runs past the end of the "
                     f"file ({len(data)} bytes)")
  try:
    header = json.loads(data[8:8 + n])
  except (UnicodeDecodeError, json.JSONDecodeError) as err:
    raise ValueError(f"{path}: the header is not JSON ({err})") from err
  if not isinstance(header, dict):
    raise ValueError(f"{path}: the header is not a JSON object")
  buffer = memoryview(data)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype = _DTYPES[info["dtype"]]
      shape = tuple(int(s) for s in info["shape"])
      begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as err:
      raise ValueError(f"{path}: bad header entry for {name!r}: {info!r} "
                       f"(known dtypes: {sorted(_DTYPES)})") from err
    size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    if not 0 <= begin <= end <= len(buffer) or end - begin != size:
      raise ValueError(f"{path}: tensor {name!r} of shape {shape} and dtype "
                       f"{info['dtype']} needs {size} bytes, but its offsets "
                       f"[{begin}, {end}] do not fit the {len(buffer)}-byte "
                       "data buffer")
    out[name] = np.frombuffer(buffer[begin:end], dtype=dtype).reshape(
        shape).copy()
  return out


def gpt2_config(hf_config: dict[str, Any], *, dtype: Any = None,
                param_dtype: Any = None) -> GPTConfig:
  """The :class:`GPTConfig` of a Hugging Face GPT-2 ``config.json``.

  Args:
    hf_config: the parsed ``config.json``.
    dtype, param_dtype: as :class:`GPTConfig`.
  Returns:
    The config, tied unless ``tie_word_embeddings`` is false.
  Raises:
    ValueError: a missing key, or a variant this model does not implement
      (an activation other than ``gelu_new``, ``scale_attn_weights`` false,
      ``scale_attn_by_inverse_layer_idx`` or ``reorder_and_upcast_attn``
      true, cross-attention).
  Tests:
    tests/llm/test_model.py::test_gpt2_checkpoint_matches_numpy_forward,
    tests/llm/test_model.py::test_load_gpt2_rejects_bad_checkpoints.
  """
  missing = [k for k in ("vocab_size", "n_positions", "n_embd", "n_layer",
                         "n_head") if k not in hf_config]
  if missing:
    raise ValueError(f"config.json lacks {missing}")
  unsupported = {
      "activation_function": ("gelu_new", hf_config.get(
          "activation_function", "gelu_new")),
      "scale_attn_weights": (True, hf_config.get("scale_attn_weights", True)),
      "scale_attn_by_inverse_layer_idx": (False, hf_config.get(
          "scale_attn_by_inverse_layer_idx", False)),
      "reorder_and_upcast_attn": (False, hf_config.get(
          "reorder_and_upcast_attn", False)),
      "add_cross_attention": (False, hf_config.get("add_cross_attention",
                                                   False)),
  }
  for key, (want, got) in unsupported.items():
    if got != want:
      raise ValueError(f"config.json has {key} = {got!r}; only {want!r} is "
                       "implemented")
  return GPTConfig(
      vocab_size=hf_config["vocab_size"], context=hf_config["n_positions"],
      width=hf_config["n_embd"], depth=hf_config["n_layer"],
      heads=hf_config["n_head"], mlp_width=hf_config.get("n_inner"),
      tie_embeddings=bool(hf_config.get("tie_word_embeddings", True)),
      norm_eps=float(hf_config.get("layer_norm_epsilon", 1e-5)), dtype=dtype,
      param_dtype=param_dtype)


def _gpt_params(tensors: dict[str, np.ndarray],
                cfg: GPTConfig) -> dict[str, Any]:
  """The pure-dict state of a GPT from GPT-2 tensor names (shapes checked)."""
  used = set()

  def take(name, shape):
    if name not in tensors:
      raise ValueError(f"the checkpoint lacks {name!r}")
    arr = tensors[name]
    if arr.shape != shape:
      raise ValueError(f"{name!r} has shape {arr.shape}, the config implies "
                       f"{shape}")
    used.add(name)
    return jnp.asarray(arr.astype(cfg.param_dtype))

  d, n, h, m = cfg.width, cfg.heads, cfg.head_dim, cfg.mlp_width

  def norm(prefix):
    return {"scale": take(f"{prefix}.weight", (d,)),
            "bias": take(f"{prefix}.bias", (d,))}

  blocks = {}
  for i in range(cfg.depth):
    p = f"h.{i}"
    blocks[i] = {
        "ln_1": norm(f"{p}.ln_1"),
        "attn": {
            "qkv_kernel": take(f"{p}.attn.c_attn.weight", (d, 3 * d)).reshape(
                d, 3, n, h),
            "qkv_bias": take(f"{p}.attn.c_attn.bias", (3 * d,)).reshape(
                3, n, h),
            "out_kernel": take(f"{p}.attn.c_proj.weight", (d, d)).reshape(
                n, h, d),
            "out_bias": take(f"{p}.attn.c_proj.bias", (d,)),
        },
        "ln_2": norm(f"{p}.ln_2"),
        "mlp": {
            "fc_kernel": take(f"{p}.mlp.c_fc.weight", (d, m)),
            "fc_bias": take(f"{p}.mlp.c_fc.bias", (m,)),
            "proj_kernel": take(f"{p}.mlp.c_proj.weight", (m, d)),
            "proj_bias": take(f"{p}.mlp.c_proj.bias", (d,)),
        },
    }
  params = {
      "wte": take("wte.weight", (cfg.vocab_size, d)),
      "wpe": take("wpe.weight", (cfg.context, d)),
      "blocks": blocks,
      "ln_f": norm("ln_f"),
  }
  if not cfg.tie_embeddings:
    params["head"] = take("lm_head.weight", (cfg.vocab_size, d)).T
  elif "lm_head.weight" in tensors:
    if not np.array_equal(tensors["lm_head.weight"], tensors["wte.weight"]):
      raise ValueError("the config ties the embeddings but lm_head.weight "
                       "differs from wte.weight")
    used.add("lm_head.weight")
  extra = sorted(set(tensors) - used)
  if extra:
    raise ValueError(f"the checkpoint has tensors this model does not use: "
                     f"{extra[:8]}")
  return params


def load_gpt2(directory: str | os.PathLike, *, dtype: Any = None,
              param_dtype: Any = None) -> GPT:
  """A :class:`GPT` with the weights of a local GPT-2 checkpoint.

  Reads ``directory/config.json`` and ``directory/model.safetensors``
  (names as in the table of this module, with or without the
  ``transformer.`` prefix); nothing is downloaded. The model's logits equal
  those of Hugging Face's ``GPT2LMHeadModel`` on the same tokens (eval
  mode; up to float rounding).

  Args:
    directory: the checkpoint folder.
    dtype, param_dtype: as :class:`GPTConfig` (weights are cast to
      ``param_dtype``).
  Returns:
    The loaded :class:`GPT`.
  Raises:
    FileNotFoundError: no ``config.json`` or ``model.safetensors`` (a
      sharded checkpoint, ``model.safetensors.index.json``, is not read).
    ValueError: an unsupported config (:func:`gpt2_config`), a missing
      tensor, a tensor whose shape disagrees with the config, a tensor the
      model does not use, or a broken file (:func:`read_safetensors`).
  Tests:
    tests/llm/test_model.py::test_gpt2_checkpoint_matches_numpy_forward,
    tests/llm/test_model.py::test_load_gpt2_rejects_bad_checkpoints.
  """
  folder = pathlib.Path(directory)
  for name in ("config.json", "model.safetensors"):
    if not (folder / name).is_file():
      raise FileNotFoundError(f"{folder / name} does not exist")
  cfg = gpt2_config(json.loads((folder / "config.json").read_text()),
                    dtype=dtype, param_dtype=param_dtype)
  tensors = {}
  for name, arr in read_safetensors(folder / "model.safetensors").items():
    if _BUFFERS.search(name):
      continue
    tensors[name.removeprefix("transformer.")] = arr
  params = _gpt_params(tensors, cfg)
  graphdef, state = nnx.split(nnx.eval_shape(
      lambda: GPT(cfg, rngs=nnx.Rngs(0))))
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)
