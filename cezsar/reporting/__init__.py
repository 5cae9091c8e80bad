"""Results as tables, figures and comparisons: the results schema, Tables 1/2, the figures, paired intervals over
seeds."""
