"""all-MiniLM-L6-v2 inference on transformer_lib against Hugging Face's BertModel.

The same padded batch (B=32, L=128) through both, in evaluation mode under
``torch.inference_mode()``, interleaved.
"""

from __future__ import annotations

from functools import partial

import torch

from benchmarks.timing import interleaved_medians, report
from transformer_lib.pretrained import find_minilm, load_bert

B, L = 32, 128
HF = "transformers.BertModel"


def forward(model, batch: dict[str, torch.Tensor]) -> None:
    with torch.inference_mode():
        model(**batch)


def run(repeats: int = 10) -> float:
    """Ratio of our median inference time to Hugging Face's."""
    from transformers import BertModel  # a reference for the benchmark only

    print("\n== all-MiniLM-L6-v2: transformer_lib vs transformers.BertModel ==")
    folder = find_minilm()
    ours = load_bert(folder)
    theirs = BertModel.from_pretrained(str(folder)).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(L // 2, L + 1, (B,), generator=g)
    lengths[0] = L
    attention_mask = (torch.arange(L) < lengths[:, None]).long()
    input_ids = torch.randint(1000, 30000, (B, L), generator=g) * attention_mask
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    medians = interleaved_medians(
        {"ours": partial(forward, ours, batch), HF: partial(forward, theirs, batch)},
        repeats=repeats,
    )
    return report(f"inference, B={B} L={L} (padded batch)", medians, HF)["ours"]
