"""What the apps share: one-line errors, checks before any work, configs rebuilt from checkpoints."""
