"""The data formats, read and written: ActivityNet captions, the class-labelled datasets, the embedded SynthActions
set, feature manifests and the mined triplet file."""
