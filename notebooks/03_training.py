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
# # 03 · Training the joint embedding
# **Purpose.** Train the Visual and Sentence Embedding Modules (Eqs. 1–6) with the triplet loss (Eq. 7): AdamW
# lr 1e-4, β (0.9, 0.99), weight decay 1e-5, batch 128, 25 epochs, early stopping 10 on video-level validation
# triplets (paper §4). A checkpoint per epoch; a rerun resumes. One line per epoch is printed as it ends.
#
# **Inputs.** triplets (02), features (01). **Outputs.** `<models_dir>/tau<τ>/{best,last}.pt`, `log.csv`,
# `provenance.json`, and the loss curves.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
tau: float | None = None  # which triplet file to train on
epochs: int | None = None  # paper §4: 25 (embedded set: 16, see params/embedded.yaml)
patience: int | None = None  # paper §4: early stopping
batch: int | None = None  # paper §4
seed: int | None = None  # initialisation and batch order
device: str | None = None  # auto = CUDA when present (bf16 autocast), else CPU

# %%
from cezsar import pipeline, plots, widgets

# %%
widgets.tuner(globals(), ["epochs", "patience", "batch", "seed"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Train (resumes from the last checkpoint when there is one)

# %%
history = pipeline.train_model(layout, P)
{k: v for k, v in history.items() if k != "history"}

# %% [markdown]
# ## Loss curves

# %%
plots.loss_curves(history["history"])
