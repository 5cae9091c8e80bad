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
# and evaluate VE + O (Eq. 9) on the UCF-form test set with every class (the paper: UCF-101 0/101; 47.8 %, 50.9 %,
# 48.3 %). Each τ reuses its triplet file and checkpoint when they exist.
#
# **Inputs.** features (01). **Outputs.** `figures/tau_ablation.png`, `figures/tau_ablation.md`.

# %% tags=["parameters"]
params_file: str = "params/embedded.yaml"  # parameter set: its mode and data paths are used (run_all passes its own)
text_model: str = "minilm"  # SBERT model
tau_values: str = "0.7,0.8,0.9"  # paper §5: the thresholds compared
n_negatives: int = 10  # paper §3.4
object_positives: int = 2  # paper §3.4: object sentences per window added as positives (0 = captions only)
object_negatives: bool = True  # object sentences also serve as negatives (see MiningConfig)
epochs: int = 25  # paper §4
patience: int = 10  # paper §4
batch: int = 128  # paper §4
seed: int = 0  # mining and training seed
device: str = "auto"  # auto = CUDA when present
alpha: float = 0.8  # Eq. 9 weight of VE
beta: float = 0.2  # Eq. 9 weight of SE(O(v))

# %%
from cezsar import pipeline, report, widgets
from cezsar.config import EvalConfig, MiningConfig, TrainConfig

# %%
widgets.tuner(globals(), ["tau_values", "epochs", "alpha", "beta"])

# %%
layout = pipeline.layout_from(params_file, globals())

# %% [markdown]
# ## Mine, train and evaluate for each τ

# %%
ablation = pipeline.tau_ablation(layout, [float(t) for t in tau_values.split(",")],
                                 MiningConfig(n_negatives=n_negatives, object_positives=object_positives,
                                              object_negatives=object_negatives, seed=seed),
                                 TrainConfig(epochs=epochs, patience=patience, batch=batch, seed=seed, device=device),
                                 EvalConfig(alpha=alpha, beta=beta), text_model)
ablation

# %% [markdown]
# ## Plot and table

# %%
print(report.tau_outputs(ablation, layout.figures))
