"""Write the book's code-made figures into imgs/ (run: make figures).

Each figure is drawn by a function of imgs/figures.py; the chapters show the files
written here, and tests/test_figures.py checks that they are what the code draws today.
"""

from __future__ import annotations

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # imgs/figures.py
from figures import draw_encoder_architecture, draw_worksheet  # noqa: E402

from transformer_lib.worked_example import (  # noqa: E402
    encoder_layer_steps,
    humane_encoder_layer,
    humane_input,
)


def draw_encoder_by_hand():
    """Chapter 5's worksheet: every step of the humane encoder layer, with its numbers."""
    with torch.no_grad():
        steps = encoder_layer_steps(humane_encoder_layer(), humane_input())
    return draw_worksheet(steps, title="One encoder layer by hand (Chapter 5)")


FIGURES = {
    "encoder_architecture.png": draw_encoder_architecture,
    "encoder_by_hand.png": draw_encoder_by_hand,
}
DPI = 100


def main(out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES.items():
        figure = draw()
        figure.savefig(out_dir / name, dpi=DPI, metadata={"Software": None})


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).parent)
