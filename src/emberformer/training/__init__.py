"""Training: the loop, its step, run state and checkpoints, early stopping, optimizer, losses, hardware."""
