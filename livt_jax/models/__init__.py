"""LiVT models: the ViT encoder/classifier (vit.py), the MAE (mae.py), position embeddings."""
