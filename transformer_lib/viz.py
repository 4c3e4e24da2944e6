"""Plotting helpers used by the chapters: attention heatmaps, and a Hangul font for plots.

The book's fixed figures (the encoder's architecture, Chapter 5's worksheet) are drawn by
``imgs/figures.py`` next to ``imgs/make_figures.py``, not by the installed library.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib import font_manager
from matplotlib.axes import Axes

__all__ = ["HANGUL_FONTS", "plot_attention", "use_hangul_font"]

# Fonts with Hangul, most preferred first: Noto Sans CJK (Debian/Ubuntu fonts-noto-cjk, the
# CI machine), Nanum Gothic (fonts-nanum, what Colab's setup cell installs), then the fonts
# that Windows and macOS ship.
HANGUL_FONTS = (
    "Noto Sans CJK KR",
    "NanumGothic",
    "Noto Sans KR",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
)
_HANGUL_FILES = (
    "notosanscjk",
    "nanumgothic",
    "notosanskr",
    "malgun",
    "applesdgothic",
    "applegothic",
)


def use_hangul_font() -> str:
    """Draw Hangul in every later plot, with the first installed font of ``HANGUL_FONTS``.

    Sets ``plt.rcParams["font.family"]`` to DejaVu Sans (Latin text, digits and the minus
    sign of math ticks) followed by the Hangul font, which draws only what DejaVu Sans
    lacks. A font installed after matplotlib built its font cache (``apt-get install`` in a
    running Colab session) is found by scanning the system's font folders.

    Returns:
        The Hangul font's family name.

    Raises:
        RuntimeError: no Hangul font is installed; the message says how to install one.
    """

    def installed() -> set[str]:
        return {font.name for font in font_manager.fontManager.ttflist}

    if not installed() & set(HANGUL_FONTS):
        for path in font_manager.findSystemFonts():
            if any(key in pathlib.Path(path).name.lower() for key in _HANGUL_FILES):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError):  # an unreadable font file: skip it
                    continue
    names = installed()
    for family in HANGUL_FONTS:
        if family in names:
            plt.rcParams["font.family"] = ["DejaVu Sans", family]
            return family
    raise RuntimeError(
        f"no font with Hangul found for matplotlib (looked for {', '.join(HANGUL_FONTS)}); "
        "install one, e.g. Debian/Ubuntu: apt-get install fonts-noto-cjk (or fonts-nanum)"
    )


def plot_attention(
    weights: torch.Tensor,
    x_labels: Sequence[str],
    y_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    annotate: bool = False,
    colorbar: bool = True,
) -> Axes:
    """Draw one attention map as a labelled heatmap.

    Args:
        weights: (L_q, L_k) attention weights (rows are queries).
        x_labels: L_k labels for the keys (columns).
        y_labels: L_q labels for the queries (rows); defaults to ``x_labels``,
            as in self-attention.
        ax: axes to draw on; a new figure is made when None.
        title: the plot's title.
        annotate: write each weight, rounded to two decimals, in its cell.
        colorbar: add a colour bar.

    Returns:
        The axes drawn on.
    """
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 2:
        raise ValueError(
            f"plot_attention: weights must be (L_q, L_k), got shape {tuple(weights.shape)}"
        )
    y_labels = list(x_labels) if y_labels is None else list(y_labels)
    n_q, n_k = weights.shape
    if len(x_labels) != n_k or len(y_labels) != n_q:
        raise ValueError(
            f"plot_attention: weights are {n_q}×{n_k} (L_q×L_k) but got "
            f"{len(y_labels)} query labels and {len(x_labels)} key labels"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * n_k + 2, 0.5 * n_q + 1.5))
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n_k), list(x_labels), rotation=45, ha="right")
    ax.set_yticks(range(n_q), y_labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title is not None:
        ax.set_title(title)
    if annotate:
        for i in range(n_q):
            for j in range(n_k):
                w = weights[i, j].item()
                ax.text(
                    j,
                    i,
                    f"{w:.2f}",
                    ha="center",
                    va="center",
                    color="black" if w > 0.6 else "white",
                    fontsize=8,
                )
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax
