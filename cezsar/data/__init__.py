"""Package data: ImageNet class id lists (see README.md here)."""
