"""One figure style for every study.

Figures are drawn on matplotlib's Agg canvas, never on a display, and without
pyplot's global figure registry: :func:`figure` returns a figure that nothing
else holds, so a long sweep of studies leaks no figures. Each method name has
one colour in every study (:func:`color`), and :func:`save` writes atomically
through :mod:`prefsim.provenance`.

Example::

  from prefsim import plotting
  fig, ax = plotting.figure()
  plotting.band(ax, steps, losses, label="dpo")   # losses: [S, T]
  ax.set(xlabel="step", ylabel="loss")
  ax.legend()
  plotting.save(fig, "out/dpo.png")
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import os
import pathlib
from typing import Any

import cycler
import matplotlib
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from prefsim import provenance

# Okabe-Ito (colour-blind safe) first, then tableau's grey, brown, purple, cyan.
_BLUE, _ORANGE, _VERMILLION, _GREEN = "#0072B2", "#E69F00", "#D55E00", "#009E73"
_PINK, _SKY, _BLACK = "#CC79A7", "#56B4E9", "#000000"
_GREY, _BROWN, _PURPLE, _CYAN = "#7F7F7F", "#8C564B", "#9467BD", "#17BECF"

CYCLE = (_BLUE, _ORANGE, _GREEN, _VERMILLION, _PINK, _SKY, _BROWN, _PURPLE)

# Names that appear together get different colours; groups may reuse colours.
PALETTE = {
    # Losses of the DPO family and the RLHF pipeline.
    "dpo": _BLUE, "ipo": _ORANGE, "rdpo": _VERMILLION, "cdpo": _PINK,
    "simpo": _GREEN, "orpo": _BROWN, "kto": _CYAN, "hypo": _PURPLE,
    "rlhf": _SKY,
    # Preference-game solvers.
    "mwu": _GREEN, "extragradient": _VERMILLION, "nash_md": _BLUE,
    "self_play": _ORANGE, "mirror_descent": _PINK,
    # Data regimes.
    "offline": _BLUE, "online": _VERMILLION, "hybrid": _GREEN,
    # Bandits and zeroth-order methods.
    "apohf": _VERMILLION, "zo_ranksgd": _VERMILLION, "random": _GREY,
    "uniform": _GREY,
    # Tools in benchmarks.
    "prefsim": _BLUE, "choix": _ORANGE, "scipy": _GREEN, "numpy": _GREY,
    "trl": _VERMILLION,
    # Reference curves.
    "theory": _BLACK, "bound": _BLACK, "optimal": _BLACK, "oracle": _BLACK,
}

DPI = 200  # For PNG output.

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler.cycler(color=CYCLE),
    "lines.linewidth": 1.8,
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
    "savefig.dpi": DPI,
    "image.cmap": "viridis",
}


def style() -> None:
  """Set matplotlib's rcParams to the prefsim style (idempotent).

  Readable fonts, a light grid, no top or right spines, constrained layout and
  a colour-blind-safe colour cycle. :func:`figure` calls it; call it yourself
  before drawing on figures made elsewhere.
  """
  matplotlib.rcParams.update(STYLE)


def figure(nrows: int = 1, ncols: int = 1, *, width: float | None = None,
           height: float | None = None, **subplots_kw: Any
           ) -> tuple[Figure, Any]:
  """A styled figure with a grid of axes, on the Agg canvas.

  Args:
    nrows: rows of axes.
    ncols: columns of axes.
    width: figure width in inches; default 4 per column.
    height: figure height in inches; default 3 per row.
    **subplots_kw: passed to ``Figure.subplots`` (``sharex``, ``sharey``, ...).
  Returns:
    ``(fig, axes)``: ``axes`` is one ``Axes`` for a 1x1 grid, otherwise an
    array of them, as with ``plt.subplots``.
  """
  style()
  fig = Figure(figsize=(width or 4.0 * ncols, height or 3.0 * nrows))
  FigureCanvasAgg(fig)
  return fig, fig.subplots(nrows, ncols, **subplots_kw)


def color(name: str) -> str:
  """The colour of a method, algorithm or tool, the same in every study.

  Names are matched case-insensitively, with ``-`` and spaces read as ``_``.
  Known names (``dpo``, ``ipo``, ``rdpo``, ``cdpo``, ``rlhf``, ``hypo``,
  ``mwu``, ``extragradient``, ``prefsim``, ``choix``, ... see ``PALETTE``) have
  fixed colours; any other name gets a hue from the MD5 hash of its normalised
  spelling, so it too is stable across runs and machines.

  Returns:
    A ``"#rrggbb"`` string.
  """
  key = name.strip().lower().replace("-", "_").replace(" ", "_")
  if key in PALETTE:
    return PALETTE[key]
  hue = int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) / 16.0**32
  r, g, b = colorsys.hsv_to_rgb(hue, 0.65, 0.8)
  return "#{:02X}{:02X}{:02X}".format(*(round(255 * v) for v in (r, g, b)))


def band(ax: Axes, x: Any, ys: Any, *, label: str | None = None,
         alpha: float = 0.2, **line_kw: Any) -> Line2D:
  """Plot the mean over seeds with a shaded band of one standard error.

  Args:
    ax: the axes to draw on.
    x: positions, shape [T].
    ys: values per seed, shape [S, T]; the band is ``mean +- std/sqrt(S)``
      (sample standard deviation; no band when ``S == 1``). NaNs propagate.
    label: legend label; also picks the colour via :func:`color` unless
      ``color=`` is given.
    alpha: opacity of the band.
    **line_kw: passed to ``ax.plot`` (``color``, ``linestyle``, ...).
  Returns:
    The mean line.
  Raises:
    ValueError: if ``ys`` is not [S, T] with ``T == len(x)``.
  """
  x, ys = np.asarray(x), np.asarray(ys)
  if ys.ndim != 2 or ys.shape[1] != x.shape[0]:
    raise ValueError(f"ys must have shape [S, T] with T = len(x) = "
                     f"{x.shape[0]}, got {ys.shape}")
  seeds = ys.shape[0]
  mean = ys.mean(axis=0)
  se = (ys.std(axis=0, ddof=1) / np.sqrt(seeds) if seeds > 1
        else np.zeros_like(mean))
  if label is not None:
    line_kw.setdefault("color", color(label))
  (line,) = ax.plot(x, mean, label=label, **line_kw)
  ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=alpha,
                  linewidth=0)
  return line


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
  """Write ``fig`` atomically, in the format of the suffix, and close it.

  Args:
    fig: the figure.
    path: ``.png`` (at ``DPI`` dots per inch), ``.pdf`` or ``.svg``.
  Raises:
    ValueError: for another suffix.
  """
  path = pathlib.Path(path)
  fmt = path.suffix.lstrip(".").lower()
  if fmt not in ("png", "pdf", "svg"):
    raise ValueError(f"path must end in .png, .pdf or .svg, got {path}")
  buffer = io.BytesIO()
  fig.savefig(buffer, format=fmt, dpi=DPI)
  provenance.write_bytes_atomic(path, buffer.getvalue())
  plt.close(fig)  # Releases figures made with pyplot; a no-op for ours.
