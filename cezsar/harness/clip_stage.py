"""Notebook 05's CLIP rows (docs/decisions.md §14): the paper's stages run again with CLIP as the frame encoder,
under `<work_dir>/clip/`, beside the set's own outputs: CLIP features of every part, the CLIP frame-average
baseline with both prompt sets, and CEZSAR trained on the CLIP features.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from cezsar.harness import pipeline, pipeline_evaluation, pipeline_mining, pipeline_training
from cezsar.harness.layout import TEST_SETS, Layout
from cezsar.harness.params import Settings


def clip_layout(lay: Layout) -> Layout:
    """The layout of the CLIP rows: the same data, CLIP features, triplets and models under `<work>/clip/`."""
    work = lay.work / "clip"
    feats = {k: work / "features" / k for k in TEST_SETS}
    return dataclasses.replace(lay, train_features=work / "features" / "activitynet",
                               train_objects=work / "features" / "activitynet" / "objects", test_features=feats,
                               test_objects={k: f / "objects" for k, f in feats.items()}, work=work,
                               processed=work / "processed", models=work / "models", weights=None)


def clip_settings(s: Settings) -> Settings:
    """The parameter set with CLIP (`clip_model`) as the frame encoder: objects off (CLIP has no ImageNet head),
    so captions-only mining and VE; every other setting of the method unchanged."""
    values = {**s.values, "backbone": f"clip:{s.clip_model}", "backbone_weights": "", "use_objects": "off",
              "object_positives": 0, "mine_released_objects": False}
    return Settings(values, s.source, dict(s.overrides))


def clip_rows(lay: Layout, s: Settings) -> dict:
    """Notebook 05, when `clip_model` is set: CLIP frame features of every part (extracted once), the CLIP
    frame-average baseline with both prompt sets, and CEZSAR trained on the CLIP features (VE; needs the
    training videos, not only released features). Returns {kind: {variant: {column: result}}} with the variants
    "CLIP-names", "CLIP-descriptions" and "CLIP+VE", and "training": the CLIP model's training record."""
    cs, clay = clip_settings(s), clip_layout(lay)
    print(f"CLIP rows with {s.clip_model}: features under {clay.work}", flush=True)
    pipeline.extract_features(clay, cs)
    checkpoints: dict[int, Path] = {}
    if pipeline.npy_ids(clay.train_features):
        pipeline_mining.mine_triplets(clay, cs)
        trained = pipeline_training.train_model(clay, cs)  # every training seed, as the set's own rows
        checkpoints = {k: Path(c) for k, c in zip(trained["seeds"], trained["checkpoints"])}
    first = next(iter(checkpoints.values()), None)
    out: dict = {"training": {"checkpoint": str(first) if first else None,
                              "checkpoints": {str(k): str(c) for k, c in checkpoints.items()},
                              "note": None if checkpoints else "no training videos to extract CLIP features from: "
                              "CEZSAR on CLIP features needs anet_videos"}}
    for kind in TEST_SETS:
        if checkpoints:  # the baselines once, CEZSAR on CLIP features once per training seed
            res = pipeline_evaluation.evaluate_seeds(clay, kind, checkpoints, cs,
                                                     methods=(*pipeline_evaluation.CLIP_VARIANTS, "CLIP+VE"))
        else:
            res = pipeline_evaluation.evaluate_methods(clay, kind, None, cs,
                                                       methods=tuple(pipeline_evaluation.CLIP_VARIANTS))
        res.pop("_emb")
        res.pop("_seed_emb", None)
        out[kind] = res
    return out
