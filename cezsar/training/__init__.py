"""The joint embedder (paper §3.2, Eqs. 1-6) and its contrastive training (§3.3, Eq. 7): the model, the loss, the
training loop and its fast paths, checkpoints."""
