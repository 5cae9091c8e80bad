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
# # 05 · Tables 1 and 2
# **Purpose.** Zero-shot accuracy of the objects-only baseline (Estevam et al., row "O"), CEZSAR VE and CEZSAR
# VE + O (Eq. 9, α = 0.8, β = 0.2) under the paper's protocols: UCF-101 0/101, 0/50 × 50, 0/20 × 50 and
# Kinetics-400 0/400, 0/100 × 50, 0/25 × 50 (on SynthActions: the same fractions of its classes). Without objects
# only CEZSAR VE is computed. The paper's literature rows are printed as published, with their citations; every
# computed row says what it was computed on (dataset and videos used, backbone, text model, epochs). Three more rows,
# the modern peer on the same splits — CLIP frame average (class names), CLIP frame average (descriptions), CEZSAR on
# CLIP features — are computed when the parameter set names a CLIP (`clip_model`), and read "needs weights" otherwise.
# Each trained row is the mean over `train_seeds` training seeds ± their std, with the protocol's spread over the
# subsets of its classes shown apart ("62.5 ± 1.8 (5 seeds), subsets ± 9.3"); every comparison below the tables is a paired
# test over the seeds (`cezsar.reporting.compare`), never written by hand.
#
# **Inputs.** the τ checkpoint (03), test features (01). **Outputs.** `runs/<name>/results.json` (every run's
# seed, classes, accuracy, the split files' hashes, the code version, the parameter set and the training record,
# for every training seed), `<figures_dir>/table1.{md,csv}`, `<figures_dir>/table2.{md,csv}`,
# `<figures_dir>/comparisons.md`.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
tau: float | None = None  # which trained model to evaluate (paper: 0.8)
alpha: float | None = None  # Eq. 9 weight of VE
beta: float | None = None  # Eq. 9 weight of SE(O(v))
runs: int | None = None  # paper §4: random class subsets per protocol
train_seeds: int | None = None  # trained models per row (mean ± std over them)

# %%
from IPython.display import Markdown

from cezsar.harness import pipeline, report, widgets

# %%
widgets.tuner(globals(), ["tau", "alpha", "beta", "runs"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Evaluate every method under every protocol

# %%
results = report.evaluate_all(layout, P)

# %% [markdown]
# ## Tables

# %%
Markdown("\n\n".join(report.write_tables(results, layout.figures).values()))

# %% [markdown]
# ## Comparisons (paired over training seeds)

# %%
report.write_comparisons(results, layout.figures)
