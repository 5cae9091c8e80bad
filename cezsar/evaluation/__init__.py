"""Zero-shot evaluation (paper §3.5, §4, Eqs. 8-9): prototypes, protocols, baselines, classify."""
