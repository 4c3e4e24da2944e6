"""Run every benchmark: python -m benchmarks (or make bench). Medians of interleaved runs.

Ends with the speed targets, each a ratio of our median time to the reference's; the
exit status is 1 when one is missed (timings on a loaded machine can miss by noise: rerun).
"""

import sys

import torch

from benchmarks import decoder, efficient, encoder, minilm, multi_head

#: The speed targets: (what, our time / reference time must be at most this).
TARGETS = {
    "MultiHeadAttention training (fwd+bwd) vs nn.MultiheadAttention": 1.0,
    "TransformerEncoder training step vs nn.TransformerEncoder": 1.0,
    "all-MiniLM-L6-v2 inference vs transformers.BertModel": 1.0,
}


def main() -> int:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    mha = multi_head.run()
    step = encoder.run()
    minilm_ratio = minilm.run()
    efficient.run()  # Chapter 9: memory and time; prints its own targets
    decoder.run()  # Chapter 8: numbers read aloud in Korean (about 3 min), tokens/s with the KV cache
    worst = {
        "MultiHeadAttention training (fwd+bwd) vs nn.MultiheadAttention": max(
            ratios["training (fwd+bwd)"] for ratios in mha.values()
        ),
        "TransformerEncoder training step vs nn.TransformerEncoder": max(step.values()),
        "all-MiniLM-L6-v2 inference vs transformers.BertModel": minilm_ratio,
    }
    print("\n== targets (worst size) ==")
    missed = 0
    for what, target in TARGETS.items():
        ok = worst[what] <= target
        missed += not ok
        print(f"  {'ok  ' if ok else 'MISS'} {worst[what]:5.2f}x <= {target:.2f}x  {what}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
