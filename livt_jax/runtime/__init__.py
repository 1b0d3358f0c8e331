"""Where a run executes: processes (distributed, supervise), signals (preemption), the host's
malloc, GPU flags, local / gs:// paths and their probe, and the chips' peak FLOP/s and HBM."""
