"""Next-step fire models: EmberFormer and the copy-last baseline."""
