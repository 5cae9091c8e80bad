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
# Every trained number is a mean over training seeds: `train_seeds` models (seeds `seed`, `seed` + 1, …) train
# together in one process as stacked weights, each with its own initialisation, batch order, dropout draws,
# optimiser state and early stopping (docs/decisions.md, 'Training seeds'). On a CPU every τ of the ablation
# (`tau_values`, notebook 04) trains here too, side by side, one process each with `train_threads` threads: the
# numbers do not depend on the core count, and the cores stay busy (docs/decisions.md, 'Training threads').
#
# **Inputs.** triplets (02), features (01). **Outputs.** `<models_dir>/tau<τ>/seed<k>/{best,last}.pt`, `log.csv`,
# `provenance.json` per training seed, and the loss curves.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
tau: float | None = None  # which triplet file to train on
epochs: int | None = None  # paper §4: 25 (embedded set: 16, see params/embedded.yaml)
patience: int | None = None  # paper §4: early stopping
batch: int | None = None  # paper §4
seed: int | None = None  # mining and t-SNE; the first training seed
train_seeds: int | None = None  # models per τ, training seeds seed … seed + train_seeds − 1
train_threads: int | None = None  # CPU threads per training process (0: every core, one τ after another)
device: str | None = None  # auto = CUDA when present (bf16 autocast), else CPU

# %%
from cezsar.harness import pipeline, pipeline_training, widgets
from cezsar.reporting import plots

# %%
widgets.tuner(globals(), ["epochs", "patience", "batch", "seed", "train_seeds"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Train every seed of every τ (each resumes from its last checkpoint when there is one); `tau`'s runs below

# %%
history = pipeline_training.train_taus(layout, P)[P.tau]
[{k: v for k, v in run.items() if k not in ("history", "data")} for run in history["runs"]]

# %% [markdown]
# ## Loss curves

# %%
plots.loss_curves({run["seed"]: run["history"] for run in history["runs"]})
