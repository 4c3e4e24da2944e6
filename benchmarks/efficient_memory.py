"""Peak extra memory of one attention call, measured in a fresh process (Chapter 9).

Run by ``benchmarks/efficient.py`` as ``python -m benchmarks.efficient_memory METHOD MODE L``;
prints one JSON line.

What is measured, and why it can be trusted:

* the peak resident set size (Linux ``VmHWM``) during the call, minus the resident
  set just before it, after ``/proc/self/clear_refs`` has reset the peak. This is every
  byte the process touched, whoever allocated it (PyTorch's CPU allocator keeps no cache,
  and fused kernels' private buffers count too, which allocator statistics of Python
  tensors would miss);
* glibc's malloc is told (``MALLOC_MMAP_THRESHOLD_``, set by the parent) to serve every
  block above 64 KiB with its own ``mmap``, returned to the system when freed, so the
  resident set follows the live tensors instead of a heap that never shrinks;
* each process first runs the same call at a tiny length (libraries and thread pools are
  loaded before the baseline) and allocates a known 64 MiB tensor; the calibration line
  shows how closely the method reads a known size.
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from transformer_lib import chunked_attention, flash_attention, scaled_dot_product_attention

B, H, HEAD_DIM = 1, 8, 64
CHUNK = 256  # queries per chunk of chunked_attention, and flash_attention's tile sides

METHODS = {
    "naive": lambda q, k, v: scaled_dot_product_attention(q, k, v)[0],
    "chunked": lambda q, k, v: chunked_attention(q, k, v, chunk_size=CHUNK),
    "flash": lambda q, k, v: flash_attention(q, k, v, block_q=CHUNK, block_k=CHUNK),
    "torch_sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
}


def rss_bytes() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident set size of this process."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def peak_extra_bytes(fn) -> int:
    """Peak resident bytes above the level just before ``fn()``."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current VmRSS
    before = rss_bytes()["VmRSS"]
    fn()
    return rss_bytes()["VmHWM"] - before


def inputs(length: int, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, length, HEAD_DIM, generator=g) for _ in range(3))
    return tuple(t.requires_grad_(mode == "forward+backward") for t in (q, k, v))


def call(method: str, mode: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    attention = METHODS[method]
    if mode == "forward":
        with torch.no_grad():
            attention(q, k, v)  # the output is counted, then dropped
    else:
        attention(q, k, v).sum().backward()  # q.grad, k.grad, v.grad stay: counted


def main(method: str, mode: str, length: int, threads: int) -> None:
    torch.set_num_threads(threads)
    call(method, mode, *inputs(64, mode))  # warm-up: load kernels and thread pools first
    known = 64 * 2**20
    calibration = peak_extra_bytes(lambda: torch.ones(known // 4).sum())
    q, k, v = inputs(length, mode)  # the inputs exist before the baseline: not "extra"
    peak = peak_extra_bytes(lambda: call(method, mode, q, k, v))
    print(
        json.dumps(
            {
                "method": method,
                "mode": mode,
                "length": length,
                "threads": threads,
                "peak_extra_bytes": peak,
                "calibration_bytes": calibration,
                "calibration_expected": known,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
