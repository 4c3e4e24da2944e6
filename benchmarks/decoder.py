"""Chapter 8's full-size result: numbers read aloud in Korean, and tokens/s with the KV cache.

    python -m benchmarks.decoder          # both (about 3 minutes on 2 cores)
    python -m benchmarks.decoder --speed  # only the tokens/s table

1. Trains the Seq2SeqTransformer of Chapter 8 (d_model 64, 4 heads, 2 + 2 pre-LN layers) on
   numbers of 1 to 8 digits and reports greedy exact-match on held-out numbers (never seen
   in training) by digit length, with the wall and CPU time the training took.
2. Greedy decoding with and without the KV cache, tokens per second at several output
   lengths (a larger untrained model, generation forced to the full length).

The chapter quotes this script's output with the machine and the date it ran on.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from functools import partial

import torch

from benchmarks.timing import interleaved_medians
from transformer_lib.korean_numbers import (
    BOS,
    EOS,
    SOURCE_VOCAB,
    TARGET_VOCAB,
    encode_number_pairs,
    split_numbers,
)
from transformer_lib.seq2seq import Seq2SeqConfig, Seq2SeqTransformer, exact_match, train_seq2seq

MAX_DIGITS = 8
N_TRAIN, N_VAL, N_TEST = 3000, 100, 500  # numbers per digit length
TRAINING = dict(steps=1200, batch_size=128, lr=2e-3, warmup_steps=100)
SPEED_LENGTHS = (16, 32, 64)
SPEED_BATCH = 16


def machine() -> str:
    """One line naming the machine, the threads and the date."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, {date}"
    )


def number_reading_config() -> Seq2SeqConfig:
    return Seq2SeqConfig(
        SOURCE_VOCAB.size,
        TARGET_VOCAB.size,
        d_model=64,
        n_heads=4,
        d_ff=256,
        n_encoder_layers=2,
        n_decoder_layers=2,
        max_len=32,
        dropout=0.0,
        norm_first=True,
    )


def train_number_reading(seed: int = 0) -> dict[int, float]:
    """Train the full model; print and return the held-out exact-match per digit length."""
    train_numbers, _, test_numbers = split_numbers(
        N_TRAIN, N_VAL, N_TEST, max_digits=MAX_DIGITS, seed=seed
    )
    src, tgt = encode_number_pairs(train_numbers)
    test_src, test_tgt = encode_number_pairs(test_numbers)
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(number_reading_config())
    print(f"\n== Numbers read aloud in Korean: {len(train_numbers)} training numbers ==")
    print(f"{machine()}")
    wall, cpu = time.perf_counter(), time.process_time()
    train_seq2seq(model, src, tgt, seed=seed, **TRAINING)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    correct = exact_match(model, test_src, test_tgt, bos_id=BOS, eos_id=EOS)
    lengths = torch.tensor([len(str(n)) for n in test_numbers])
    by_length = {d: correct[lengths == d].float().mean().item() for d in range(1, MAX_DIGITS + 1)}
    print(f"training: {TRAINING}, {wall:.0f} s wall, {cpu:.0f} s CPU (user+sys, all threads)")
    print(f"held-out exact match, all {len(test_numbers)} numbers: {correct.float().mean():.2%}")
    for d, accuracy in by_length.items():
        print(f"  {d} digits: {accuracy:7.2%}  ({(lengths == d).sum().item()} numbers)")
    return by_length


def generation_speed(repeats: int = 3) -> dict[int, tuple[float, float]]:
    """Tokens per second of greedy decoding with and without the cache, per output length."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(
        SOURCE_VOCAB.size, TARGET_VOCAB.size, d_model=128, n_heads=4, d_ff=512,
        n_encoder_layers=2, n_decoder_layers=2, max_len=max(SPEED_LENGTHS), dropout=0.0,
    )  # fmt: skip
    model = Seq2SeqTransformer(config).eval()
    src, _ = encode_number_pairs(list(range(10**7, 10**7 + SPEED_BATCH)))  # 8-digit sources
    print(f"\n== Greedy decoding, tokens/s (B={SPEED_BATCH}, d_model=128, 2 + 2 layers) ==")
    print(f"{machine()}")
    print(f"  {'length':>6} {'no cache':>12} {'KV cache':>12} {'speed-up':>9}")
    results = {}
    for length in SPEED_LENGTHS:
        medians = interleaved_medians(
            {
                use_cache: partial(
                    model.generate,
                    src,
                    max_new_tokens=length,
                    bos_id=BOS,
                    eos_id=-1,
                    use_cache=use_cache,
                )  # fmt: skip
                for use_cache in (False, True)
            },
            repeats=repeats,
            warmup=1,
        )
        plain, cached = (SPEED_BATCH * length / medians[use_cache] for use_cache in (False, True))
        results[length] = (plain, cached)
        print(f"  {length:>6} {plain:>12,.0f} {cached:>12,.0f} {cached / plain:>8.1f}x")
    return results


def run() -> None:
    train_number_reading()
    generation_speed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true", help="only the tokens/s table")
    args = parser.parse_args()
    if args.speed:
        generation_speed()
    else:
        run()
