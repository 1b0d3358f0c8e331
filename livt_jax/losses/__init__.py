"""BFT losses: LiVT's balanced losses and the dispatch by `bft.loss` (balanced), the Table 7
baselines (table7) and the margin cores they share (margin). docs/losses.md has the equations."""
