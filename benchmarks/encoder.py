"""One training step of TransformerEncoder against torch.nn.TransformerEncoder.

Same configuration for both (d_model 256, 8 heads, d_ff 1024, 4 post-LN layers, ReLU,
dropout 0.1, training mode): forward, backward and one AdamW step, interleaved.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmarks.timing import interleaved_medians, report
from transformer_lib import TransformerEncoder

SIZES = [(32, 128), (8, 512)]  # (B, L): the same 4,096 tokens per step, short and long sequences
D_MODEL, N_HEADS, D_FF, N_LAYERS = 256, 8, 1024, 4
TORCH = "torch.nn.TransformerEncoder"


def training_step(module: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    module(x).sum().backward()
    optimizer.step()


def bench_size(B: int, L: int, repeats: int) -> float:
    """Ratio of our training step's median time to torch's."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(D_MODEL, N_HEADS, D_FF, batch_first=True)
    theirs = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False).train()
    ours = TransformerEncoder.from_torch(theirs).train()
    x = torch.randn(B, L, D_MODEL)
    medians = interleaved_medians(
        {
            "ours": partial(training_step, ours, torch.optim.AdamW(ours.parameters()), x),
            TORCH: partial(training_step, theirs, torch.optim.AdamW(theirs.parameters()), x),
        },
        repeats=repeats,
    )
    label = f"training step (fwd+bwd+AdamW), B={B} L={L} d_model={D_MODEL} h={N_HEADS} d_ff={D_FF} N={N_LAYERS}"
    return report(label, medians, TORCH)["ours"]


def run(repeats: int = 10) -> dict[tuple[int, int], float]:
    """Time every size; return {(B, L): ours / torch}."""
    print("\n== TransformerEncoder vs torch.nn.TransformerEncoder ==")
    return {size: bench_size(*size, repeats=repeats) for size in SIZES}
