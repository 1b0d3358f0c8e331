"""The parts of the train-step benchmark; the command line is `python -m livt_jax.benchmark`."""
