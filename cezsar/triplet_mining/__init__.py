"""Hard negative mining of (window, positive sentence, negative sentence) triplets (paper §3.4)."""
