"""The base layer: atomic writes, text files, disk space, devices, the torchrun process group, progress bars, the
machine record, and the cheap input checks every command runs first."""
