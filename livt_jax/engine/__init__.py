"""The training engine: the stages in order (run), the loop (train), the jitted step (steps),
the state, optimizer, mesh and shardings, and checkpoints. Import the module you need."""
