"""The drawers of the book's fixed figures in imgs/ (run: make figures).

Not part of the installed library: ``imgs/make_figures.py`` calls these to write the
PNG files, the chapters show those files, and ``tests/test_figures.py`` checks that the
committed files are what this code draws.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

__all__ = ["draw_encoder_architecture", "draw_worksheet"]


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
            of ``transformer_lib.worked_example.encoder_layer_steps``).
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
