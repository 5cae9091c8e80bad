"""The fidelity measurement's bookkeeping: parameter mapping, table (mean ± std, Δ against the reference), record."""
from __future__ import annotations

import numpy as np
import pytest

from cezsar import fidelity
from cezsar.params import stage_configs


def _result(variant, seed, ucf, kin):
    return {"variant": variant, "seed": seed, "ucf101_VE+O": ucf, "kinetics400_VE+O": kin, "ucf101_VE": ucf - 0.1,
            "kinetics400_VE": kin - 0.1, "seconds": {"mine": 0.0, "train": 1.0, "evaluate": 0.5}}


def test_configs_route_flat_keys_to_their_stage():
    cfg = stage_configs({"mine_released_objects": True, "eval_released_objects": False, "window": "released",
                            "d_model": 64, "std_ddof": 0, "mode": "embedded"})
    assert cfg["mine"].released_objects and not cfg["eval"].released_objects
    assert cfg["train"].window == "released" and cfg["model"].d_model == 64 and cfg["eval"].std_ddof == 0
    assert all(ref in fidelity.VARIANTS for _, _, ref in fidelity.VARIANTS.values())


def test_table_means_stds_and_deltas_against_the_reference(tmp_path):
    res = [_result("paper", 0, 0.5, 0.4), _result("paper", 1, 0.6, 0.4), _result("raw_sum", 0, 0.7, 0.3),
           _result("raw_sum", 1, 0.8, 0.5), _result("obj2", 0, 0.5, 0.5), _result("far_from_all", 0, 0.6, 0.5)]
    rows = {r["variant"]: r for r in fidelity.table(res)}
    assert list(rows) == ["paper", "raw_sum", "obj2", "far_from_all"]  # VARIANTS order
    m, s = rows["raw_sum"]["ucf101_VE+O"]
    assert m == pytest.approx(0.75) and s == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert rows["raw_sum"]["delta_ucf101_VE+O"] == pytest.approx(0.2)
    assert rows["far_from_all"]["delta_ucf101_VE+O"] == pytest.approx(0.1)  # against obj2, not paper
    settings = {"seeds": 2, "note": "toy"}
    out = fidelity.report(res, tmp_path, settings)
    assert "| raw_sum |" in out["markdown"] and "+20.0" in out["markdown"]
    # the paired comparison over the seeds both variants have (issue 26): raw_sum - paper = +20, +20 points
    assert "raw_sum vs paper (UCF-form, every class, VE + O top-1): +20.0 points" in out["markdown"]
    assert "far_from_all vs obj2 (UCF-form, every class, VE + O top-1): +10.0 points with 1 seed" in out["markdown"]
    back = fidelity.recorded(tmp_path)
    assert back["markdown"] == out["markdown"] and back["rows"][1]["ucf101_VE+O"] == rows["raw_sum"]["ucf101_VE+O"]
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and fidelity.recorded(tmp_path / "none") is None
