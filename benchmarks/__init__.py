"""Benchmarks of transformer_lib against PyTorch's own modules (run with `make bench`)."""
