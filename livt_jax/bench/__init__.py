"""Benchmarks. The train-step benchmark's parts; its command line is `python -m livt_jax.benchmark`.

Input pipeline: `python -m livt_jax.bench.decoders` (JPEG decoders for the random-resized
crop); `python -m livt_jax.data.benchmark` (pipeline throughput).
"""
