# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
# %% [markdown]
# # 01 · Features
# **Purpose.** Encode every video at one frame per second (paper §3.2) with an ImageNet CNN: per video a feature
# stack `(T, D)` (the released features' layout, `<video_id>.npy`) and the per-second top-k ImageNet objects used
# for mining (§3.4) and for O(v) in Eq. 9. A folder of released features is used as it is; its objects are
# computed from the features with the backbone's own ImageNet head (as the authors did with BiT's head). Without
# head weights the O terms are off, and this notebook says so. Resumable: finished videos are skipped on a rerun.
#
# **Inputs.** the videos of notebook 00, or released features. **Outputs.** `<work_dir>/features/…/` with
# `report.json` (done, skipped with reasons, frames/s), objects, and a per-second objects strip of one clip.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
backbone: str | None = None  # frame CNN: efficientnet_lite0 (offline) | bit_m_r152x2 (paper) | resnet152
backbone_weights: str | None = None  # weights file for bit_m_r152x2 (.npz) or resnet152 (.pth); empty = offline default
image_size: int | None = None  # CNN input side in pixels (160 is ~3x faster than 224 on CPU)
device: str | None = None  # auto = CUDA when present, else CPU

# %%
from cezsar.harness import pipeline, previews, widgets

# %%
widgets.tuner(globals(), ["backbone", "image_size"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Extract features and objects for the training corpus and both test sets

# %%
reports = pipeline.extract_features(layout, P)
reports

# %% [markdown]
# ## Speed and one clip's objects, second by second

# %%
previews.features_preview(layout, reports)
