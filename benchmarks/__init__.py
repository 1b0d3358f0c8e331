"""Scripts that turn committed result files (benchmarks/results/) into the docs' tables."""
