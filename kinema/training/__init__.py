"""kinema.training: the training loop, its losses, EMA and checkpoints."""
