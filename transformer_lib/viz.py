"""Plotting helpers used by the chapters: attention heatmaps."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["draw_encoder_architecture", "draw_worksheet", "plot_attention"]


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


def draw_encoder_architecture(n_layers: str = "N") -> Figure:
    """Draw the encoder layer in its two arrangements, post-LN and pre-LN, side by side.

    Boxes are the sublayers; the arrows on the right are the residual (skip) connections.

    Args:
        n_layers: the label of the repetition count, drawn as "× N".

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 7))
    colours = {
        "attn": "#f6d6a8",
        "ff": "#b9dcf2",
        "norm": "#f2e88f",
        "add": "#ffffff",
        "io": "#e4e4e4",
    }
    layouts = {
        "Post-LN (original Transformer, BERT)": [
            ("io", "token vectors + positions"),
            ("attn", "multi-head self-attention"),
            ("add", "+"),
            ("norm", "LayerNorm (norm1)"),
            ("ff", "feed-forward (linear1, act, linear2)"),
            ("add", "+"),
            ("norm", "LayerNorm (norm2)"),
            ("io", "hidden states"),
        ],
        "Pre-LN (norm_first=True)": [
            ("io", "token vectors + positions"),
            ("norm", "LayerNorm (norm1)"),
            ("attn", "multi-head self-attention"),
            ("add", "+"),
            ("norm", "LayerNorm (norm2)"),
            ("ff", "feed-forward (linear1, act, linear2)"),
            ("add", "+"),
            ("norm", "final LayerNorm (encoder.norm)"),
            ("io", "hidden states"),
        ],
    }
    for ax, (title, boxes) in zip(axes, layouts.items(), strict=True):
        ax.set_xlim(0, 10)
        ax.set_ylim(-0.5, len(boxes) + 0.5)
        ax.axis("off")
        ax.set_title(title, fontsize=11)
        ys = [len(boxes) - 1 - i for i in range(len(boxes))]
        adds = [i for i, (kind, _) in enumerate(boxes) if kind == "add"]
        for i, ((kind, label), y) in enumerate(zip(boxes, ys, strict=True)):
            width = 0.9 if kind == "add" else 6.0
            x0 = 5 - width / 2
            ax.add_patch(
                plt.Rectangle(
                    (x0, y - 0.3), width, 0.6, facecolor=colours[kind], edgecolor="black", lw=1
                )
            )
            ax.text(5, y, label, ha="center", va="center", fontsize=9)
            if i + 1 < len(boxes):
                ax.annotate(
                    "",
                    xy=(5, ys[i + 1] + 0.3),
                    xytext=(5, y - 0.3),
                    arrowprops={"arrowstyle": "->", "lw": 1},
                )
        # residual connections: from the input of each sublayer to its "+"; in post-LN the
        # feed-forward's input is norm1's output, in pre-LN it is the first sum itself
        post_ln = title.startswith("Post")
        starts = [0, adds[0] + 1] if post_ln else [0, adds[0]]
        for start, add in zip(starts, adds, strict=True):
            y_from, y_to = ys[start] - 0.4, ys[add]
            ax.annotate(
                "",
                xy=(5.45, y_to),
                xytext=(8.6, y_to),
                arrowprops={"arrowstyle": "->", "lw": 1.2, "color": "tab:red"},
            )
            ax.plot([5, 8.6, 8.6], [y_from, y_from, y_to], color="tab:red", lw=1.2)
            ax.text(
                8.7,
                (y_from + y_to) / 2,
                "residual",
                color="tab:red",
                fontsize=8,
                rotation=90,
                va="center",
            )
        repeat_top = ys[1] + 0.55
        repeat_bottom = ys[adds[1] + (1 if post_ln else 0)] - 0.45
        ax.add_patch(
            plt.Rectangle(
                (1.2, repeat_bottom),
                8.3,
                repeat_top - repeat_bottom,
                fill=False,
                ls="--",
                edgecolor="gray",
            )
        )
        ax.text(
            0.9,
            (repeat_top + repeat_bottom) / 2,
            f"× {n_layers}",
            fontsize=12,
            va="center",
            ha="right",
        )
    fig.tight_layout()
    return fig


def draw_worksheet(
    steps: dict[str, torch.Tensor], *, ncols: int = 6, decimals: int = 2, title: str | None = None
) -> Figure:
    """Draw a sequence of small matrices as a numbered worksheet, every entry written out.

    Args:
        steps: name -> 2-D tensor, in the order they are computed (for example the output
            of :func:`~transformer_lib.worked_example.encoder_layer_steps`).
        ncols: matrices per row.
        decimals: digits after the point in each cell.
        title: the figure's title.

    Returns:
        The figure.
    """
    names = list(steps)
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for number, (ax, name) in enumerate(zip(axes.flat, names, strict=False), start=1):
        matrix = torch.as_tensor(steps[name]).detach().double().cpu()
        if matrix.dim() != 2:
            raise ValueError(
                f"draw_worksheet: {name!r} must be 2-D, got shape {tuple(matrix.shape)}"
            )
        limit = 1.8 * max(matrix.abs().max().item(), 1e-9)  # pale colours keep numbers legible
        ax.imshow(matrix.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        rows, cols = matrix.shape
        fontsize = 8 if cols <= 4 else 6
        for i in range(rows):
            for j in range(cols):
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j].item():.{decimals}f}",
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{number}. {name}", fontsize=9)
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
