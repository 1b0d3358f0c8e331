"""Benchmarks. The train-step benchmark's parts; its command line is `python -m livt_jax.benchmark`.

Input pipeline: `python -m livt_jax.bench.decoders` (JPEG decoders for the random-resized
crop); `python -m livt_jax.data.benchmark` (pipeline throughput); `python -m
livt_jax.bench.loaders` (ours vs a torch DataLoader, same work). `pairing` says which PyTorch
mode does the same work as each JAX precision; `python -m livt_jax.bench.render` makes
docs/benchmarks.md's tables from the JSON under benchmarks/results/.
"""
