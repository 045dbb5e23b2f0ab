"""Training of augmented and equivariant models, written once against the Task interface."""
