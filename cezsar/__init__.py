"""CEZSAR reproducibility package: the public API in one place.

    import cezsar
    cezsar.classify_videos(["clip.mp4"], "horse riding, horse race")   # any video, any label list
    model, meta = cezsar.load_checkpoint("best.pt")                      # a trained joint embedding

Names are imported on first use (PEP 562), so `import cezsar` and the `cezsar` command start without loading
torch or the text models.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (docs/interfaces.md)
_API = {
    "JointEmbedder": "cezsar.training.joint_embedder",  # VEM + SEM, Eqs. 1-6 (cezsar.training.model)
    "TripletSet": "cezsar.formats.triplets",
    "mine": "cezsar.triplet_mining.mine",  # hard negative mining, paper §3.4
    "fit": "cezsar.training.train",  # Eq. 7 training
    "load_checkpoint": "cezsar.training.checkpoints",
    "class_prototypes": "cezsar.evaluation.prototypes",  # SE(z) of Eq. 8
    "embed_dataset": "cezsar.evaluation.dataset_embedding",  # Eqs. 8-9 over a dataset
    "run_evaluation": "cezsar.evaluation.protocols",  # one protocol's seeded runs
    "classify_videos": "cezsar.evaluation.classify",
    "FeatureStore": "cezsar.encoders.features",
    "extract": "cezsar.encoders.extraction",
    "objects_from_features": "cezsar.encoders.feature_objects",
    "settings": "cezsar.harness.params",
}
__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cezsar' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
