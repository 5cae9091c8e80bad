"""The notebooks' run harness: parameter sets, where a run's data lives, the stages one function per notebook
section, the report, the retuning widgets, stage digests and the fidelity measurement."""
