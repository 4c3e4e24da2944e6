"""MultiHeadAttention (fast and teaching paths) against torch.nn.MultiheadAttention.

Training: forward + backward in training mode. Inference: eval mode under
``torch.inference_mode()``; torch's module is called with ``need_weights=False``
so that it may take its own fused fast path.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmarks.timing import interleaved_medians, report
from transformer_lib import MultiHeadAttention

SIZES = [(32, 128, 256, 8), (8, 512, 512, 8), (1, 2048, 512, 8)]  # (B, L, d_model, h)
TORCH = "torch.nn.MultiheadAttention"


def ours_fast(module: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def ours_teaching(module: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    return module(x, return_weights=True)[0]


def torch_mha(module: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    return module(x, x, x, need_weights=False)[0]


def training_step(call, module: nn.Module, x: torch.Tensor) -> None:
    module.zero_grad(set_to_none=True)
    call(module, x).sum().backward()


def inference(call, module: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        call(module, x)


def bench_size(B: int, L: int, d_model: int, h: int, repeats: int) -> dict[str, float]:
    """Ratios of our fast path to torch's module, in training and in inference."""
    label = f"B={B} L={L} d_model={d_model} h={h}"
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(d_model, h, batch_first=True)
    ours = MultiHeadAttention.from_torch(theirs)
    x = torch.randn(B, L, d_model)
    ratios = {}
    for mode, step in (("training (fwd+bwd)", training_step), ("inference", inference)):
        ours.train(mode != "inference")
        theirs.train(mode != "inference")
        medians = interleaved_medians(
            {
                "ours, fast path": partial(step, ours_fast, ours, x),
                TORCH: partial(step, torch_mha, theirs, x),
                "ours, teaching path": partial(step, ours_teaching, ours, x),
            },
            repeats=repeats,
        )
        ratios[mode] = report(f"{mode}, {label}", medians, TORCH)["ours, fast path"]
    return ratios


def run(repeats: int = 15) -> dict[tuple[int, int, int, int], dict[str, float]]:
    """Time every size; return {(B, L, d_model, h): {mode: fast path / torch}}."""
    print("\n== MultiHeadAttention vs torch.nn.MultiheadAttention ==")
    return {size: bench_size(*size, repeats=repeats) for size in SIZES}
