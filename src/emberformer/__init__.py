"""EmberFormer: train and evaluate next-step wildfire spread models."""

__version__ = "0.1.0"
