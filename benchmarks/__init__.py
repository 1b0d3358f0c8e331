"""Benchmarks and their parts, outside the product package (a training run imports none of it):
the train step against PyTorch (step), input pipelines (pipeline, loaders), the accelerator check,
and the scripts that turn committed results (benchmarks/results/) into the docs' tables."""
