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
# # 06 · Figures 1 and 3, and classifying any video
# **Purpose.** Fig. 1: t-SNE of four confusable classes (dots are videos, stars are class prototypes) in the
# objects-only SBERT space and in CEZSAR's joint space. Fig. 3: confusion matrices of the hard classes, baseline vs
# CEZSAR VE + O (CEZSAR VE alone when the run has no objects); the figures show the first training seed's model, the
# hard-class accuracy is given over every training seed and compared with the baseline by a paired test
# (`cezsar.reporting.compare`). Last, `cezsar classify` on a real video shipped by an installed package, against a label list.
#
# **Inputs.** the τ checkpoint (03), test features (01). **Outputs.** `<figures_dir>/fig1_tsne.png`,
# `<figures_dir>/fig3_confusion.png`.

# %% tags=["parameters"]
# None: the parameter set's value (params_file); any value written here overrides it for this notebook
params_file: str = "params/embedded.yaml"  # the parameter set of this run (run_all passes its own)
tau: float | None = None  # which trained model
alpha: float | None = None  # Eq. 9 weight of VE
beta: float | None = None  # Eq. 9 weight of SE(O(v))
seed: int | None = None  # t-SNE seed; the first training seed
train_seeds: int | None = None  # trained models (the hard-class accuracy over them)
demo_labels: str | None = None  # labels for the classify demo

# %%
from cezsar.harness import paper_figures, pipeline, previews, widgets

# %%
widgets.tuner(globals(), ["alpha", "beta", "seed", "demo_labels"], params_file)

# %%
P = pipeline.settings(params_file, globals())
P

# %%
layout = pipeline.layout_from(P)

# %% [markdown]
# ## Fig. 1 and Fig. 3 (UCF-form test set)

# %%
figs = paper_figures.figures_1_and_3(layout, P)
figs["hard_class_accuracy"]

# %%
figs["comparison"]

# %%
figs["fig1"]

# %%
figs["fig3"]

# %% [markdown]
# ## Classify a real video against any label list (objects-only: no training needed)

# %%
previews.classify_demo(P.demo_labels)
