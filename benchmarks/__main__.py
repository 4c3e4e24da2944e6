"""Run every benchmark: python -m benchmarks (or make bench). Medians of interleaved runs."""

import torch

from benchmarks import encoder, minilm, multi_head

print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
multi_head.run()
encoder.run()
minilm.run()
