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
# # 04 · The τ ablation
# **Purpose.** Paper §5: how the mining threshold τ changes zero-shot accuracy. For τ = 0.7, 0.8, 0.9: mine, train
# and evaluate VE + O (Eq. 9; VE alone when the run has no objects) on the UCF-form test set with every class (the
# paper: UCF-101 0/101; 47.8 %, 50.9 %, 48.3 %). Each τ trains `train_seeds` models and gives their mean ± std;
# the τ comparisons are paired tests over the seeds (`cezsar.reporting.compare`). Each τ reuses its triplet file and
# checkpoints when they exist.
#
# **Inputs.** features (01). **Outputs.** `<figures_dir>/tau_ablation.png`, `<figures_dir>/tau_ablation.md`.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
tau_values: str | None = None  # paper §5: the thresholds compared
epochs: int | None = None  # paper §4: 25 (embedded set: 16)
train_seeds: int | None = None  # models per τ (mean ± std over them)
alpha: float | None = None  # Eq. 9 weight of VE
beta: float | None = None  # Eq. 9 weight of SE(O(v))

# %%
from cezsar.harness import paper_figures, pipeline, pipeline_evaluation, widgets

# %%
widgets.tuner(globals(), ["tau_values", "epochs", "train_seeds", "alpha", "beta"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Mine, train and evaluate for each τ

# %%
ablation = pipeline_evaluation.tau_ablation(layout, P)
ablation

# %% [markdown]
# ## Plot, table and the paired comparisons

# %%
paper_figures.tau_outputs(ablation, layout.figures)
