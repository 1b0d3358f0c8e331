"""Command-line tools around training runs: BFT sweeps (sweep) and their aggregates (sweep_report)."""
