"""Evaluation: a classifier over a split (evaluate), test-time views, in-training evaluators,
the LiVT metrics (top-1, Many/Medium/Few, ECE/MCE), reports and MAE reconstructions."""
