"""Fire-sequence data: the on-disk layout, the built-in synthetic fires, samples and batches."""
