"""The fidelity measurement's bookkeeping: parameter mapping, table (mean ± std, paired Δ with its 95 % interval
against the reference), the record a measurement continues from (issue 27 part 5)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cezsar.harness import fidelity, fidelity_report
from cezsar.harness.fidelity_checks import changed
from cezsar.harness.params import load, stage_configs

T_975_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom (a printed table's value)


def _result(variant, seed, ucf, kin):
    return {"variant": variant, "seed": seed, "ucf101_VE+O": ucf, "kinetics400_VE+O": kin, "ucf101_VE": ucf - 0.1,
            "kinetics400_VE": kin - 0.1, "seconds": {"mine": 0.0, "train": 1.0, "evaluate": 0.5},
            "overrides": fidelity.VARIANTS[variant][1]}


def test_configs_route_flat_keys_to_their_stage():
    cfg = stage_configs({"mine_released_objects": True, "eval_released_objects": False, "window": "released",
                            "d_model": 64, "std_ddof": 0, "mode": "embedded"})
    assert cfg["mine"].released_objects and not cfg["eval"].released_objects
    assert cfg["train"].window == "released" and cfg["model"].d_model == 64 and cfg["eval"].std_ddof == 0
    assert all(ref in fidelity.VARIANTS for _, _, ref in fidelity.VARIANTS.values())


def test_table_gives_each_delta_as_a_paired_mean_with_its_95_percent_interval(tmp_path):
    res = [_result("paper", 0, 0.5, 0.4), _result("paper", 1, 0.6, 0.4), _result("paper", 2, 0.4, 0.4),
           _result("raw_sum", 0, 0.7, 0.3), _result("raw_sum", 1, 0.75, 0.5), _result("raw_sum", 2, 0.65, 0.4),
           _result("obj2", 0, 0.5, 0.5), _result("far_from_all", 0, 0.6, 0.5)]
    rows = {r["variant"]: r for r in fidelity.table(res)}
    assert list(rows) == ["paper", "raw_sum", "obj2", "far_from_all"]  # VARIANTS order
    m, s = rows["raw_sum"]["ucf101_VE+O"]
    assert m == pytest.approx(0.7) and s == pytest.approx(np.std([0.7, 0.75, 0.65], ddof=1))
    d = rows["raw_sum"]["delta_ucf101_VE+O"]  # differences 0.2, 0.15, 0.25: mean 0.2, sd 0.05
    half = T_975_2 * 0.05 / np.sqrt(3)
    assert (d["n"], d["diff"]) == (3, pytest.approx(0.2))
    assert (d["low"], d["high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert rows["far_from_all"]["delta_ucf101_VE+O"]["diff"] == pytest.approx(0.1)  # against obj2, not paper
    assert rows["far_from_all"]["delta_ucf101_VE+O"]["low"] is None  # one common seed: no interval
    assert rows["paper"]["delta_ucf101_VE+O"] is None
    out = fidelity.report(res, tmp_path, {"seeds": 3, "note": "toy"})
    line = next(x for x in out["markdown"].splitlines() if x.startswith("| raw_sum |"))
    assert f"+20.0 ({100 * (0.2 - half):+.1f} … {100 * (0.2 + half):+.1f})" in line and line.endswith("| paper | 3 |")
    assert "raw_sum vs paper (UCF-form, every class, VE + O top-1): +20.0 points" in out["markdown"]
    assert "far_from_all vs obj2 (UCF-form, every class, VE + O top-1): +10.0 points with 1 seed" in out["markdown"]
    back = fidelity.recorded(tmp_path)
    assert back["markdown"] == out["markdown"] and back["rows"][1]["ucf101_VE+O"] == rows["raw_sum"]["ucf101_VE+O"]
    assert (tmp_path / "fidelity.png").stat().st_size > 0 and fidelity.recorded(tmp_path / "none") is None


def test_a_variant_that_cannot_change_anything_gets_its_reason_not_a_zero(tmp_path):
    res = [_result("paper", 0, 0.5, 0.4), _result("paper", 1, 0.6, 0.4)]
    reason = "not measurable on SynthActions: every test clip is at most 16 s long"
    out = fidelity.report(res, tmp_path, {"seeds": 2, "note": ""}, {"first_16s": reason})
    line = next(x for x in out["markdown"].splitlines() if x.startswith("| first_16s |"))
    assert reason in line and "+0.0" not in line and "±" not in line
    assert "first_16s" not in [r["variant"] for r in out["rows"] if "seeds" in r]


def test_a_score_the_switch_does_not_read_is_identical_not_plus_zero(tmp_path):
    """The released O(v) changes VE + O only: VE alone is the same on every seed, and its cell says so."""
    res = [_result("paper", 0, 0.5, 0.4), _result("paper", 1, 0.6, 0.4)]
    res += [{**r, "variant": "objects_eval", "overrides": fidelity.VARIANTS["objects_eval"][1],
             "ucf101_VE+O": r["ucf101_VE+O"] + d} for r, d in zip(res, (0.05, 0.1))]
    line = next(x for x in fidelity.report(res, tmp_path, {"seeds": 2, "note": ""})["markdown"].splitlines()
                if x.startswith("| objects_eval |"))
    cells = line.split(" | ")  # variant, what, UCF VE+O, Δ, Kinetics VE+O, Δ, UCF VE, Δ, Kinetics VE, Δ, ...
    assert cells[3].startswith("+7.5 (") and cells[7] == cells[9] == "identical on every seed"
    assert cells[5] == "identical on every seed"  # Kinetics VE+O unchanged here too


def test_the_record_is_continued_only_under_the_same_settings_and_overrides(tmp_path):
    """A measurement continues from figures/fidelity.json (on any machine) only when the record's settings key and
    each variant's overrides are those of now."""
    key = {"params_sha256": "abc", "epochs": 25, "data_sha256": "d1", "device": "cpu", "kernels": "cpu AVX512"}
    stale = {**_result("raw_sum", 1, 0.7, 0.3), "overrides": {"normalize_terms": True}}  # the variant changed since
    res = [_result("paper", 0, 0.5, 0.4), _result("raw_sum", 0, 0.7, 0.3), stale]
    fidelity.report(res, tmp_path, {"seeds": 2, "note": "", "key": key}, {"first_16s": "why"})
    back, verdicts = fidelity.read_record(tmp_path, key, fidelity.VARIANTS)
    assert sorted((r["variant"], r["seed"]) for r in back) == [("paper", 0), ("raw_sum", 0)]
    assert verdicts == {"first_16s": "why"}
    assert fidelity.read_record(tmp_path, {**key, "epochs": 4}, fidelity.VARIANTS) == ([], {})
    assert fidelity.read_record(tmp_path, {**key, "data_sha256": "d2"}, fidelity.VARIANTS) == ([], {})
    # another CPU family trains another model for the same seed: its paper row cannot pair with ours
    assert fidelity.read_record(tmp_path, {**key, "kernels": "cpu AVX2"}, fidelity.VARIANTS) == ([], {})
    assert fidelity.read_record(tmp_path / "none", key, fidelity.VARIANTS) == ([], {})
    assert json.loads((tmp_path / "fidelity.json").read_text())["settings"]["key"] == key
    # a run of other settings is told what differs (and `measure` stops rather than overwrite the record)
    assert fidelity_report.other_settings(tmp_path, key) is None
    assert fidelity_report.other_settings(tmp_path, {**key, "epochs": 4}) == "epochs 25, not 4"
    assert fidelity_report.other_settings(tmp_path, {**key, "kernels": "cpu AVX2"}) == "kernels cpu AVX512, not cpu AVX2"
    assert fidelity_report.other_settings(tmp_path / "none", key) is None
    fidelity.report(res, tmp_path, {"seeds": 2, "note": ""})  # a record made before settings keys
    assert "without settings key" in fidelity_report.other_settings(tmp_path, key)


def test_the_all_released_rows_do_not_mix_object_positives_into_the_comparison():
    """Issue 27 part 5: the "all released" comparison is split: without the object positives against the paper
    reading (captions only, as the embedded set), and with them against the paper's same 2 object positives."""
    base = load("params/embedded.yaml")
    for name in ("released", "released_captions", "object_positives"):
        what, over, ref = fidelity.VARIANTS[name]
        diff = changed({**base, **fidelity.VARIANTS[ref][1]}, {**base, **over})
        assert "object_positives" not in diff, name
    assert fidelity.VARIANTS["released"][1] == fidelity.RELEASED  # params/released.yaml as a whole
    rest = set(fidelity.RELEASED) - set(fidelity.OBJECT_POSITIVE_KEYS)
    assert set(fidelity.VARIANTS["released_captions"][1]) == rest


def test_the_embedded_set_measures_to_convergence_with_five_seeds():
    base = load("params/embedded.yaml")
    assert (base["fidelity_epochs"], base["fidelity_seeds"]) == (25, 5)  # the paper's 25 epochs (§4)


def test_an_interrupted_measurement_names_the_variants_it_has_not_reached(tmp_path):
    """A record made of the first variants only (a measurement stopped, to be continued elsewhere) says which
    variants are still missing, instead of reading like the whole table."""
    res = [_result("paper", s, 0.5, 0.4) for s in range(2)] + [_result("window", s, 0.6, 0.4) for s in range(2)]
    settings = {"seeds": 2, "note": "toy", "command": "python -m cezsar.harness.fidelity"}
    md = fidelity.report(res, tmp_path, settings)["markdown"]
    line = next(x for x in md.splitlines() if x.startswith("Not yet measured"))
    missing = [v for v in fidelity.VARIANTS if v not in ("paper", "window")]
    assert f"({len(missing)} of {len(fidelity.VARIANTS)} variants" in line
    assert line.endswith(", ".join(missing) + ".") and "`python -m cezsar.harness.fidelity`" in line
    full = [_result(v, 0, 0.5, 0.4) for v in fidelity.VARIANTS]
    assert "Not yet measured" not in fidelity.report(full, tmp_path / "all", {"seeds": 1, "note": "toy"})["markdown"]


def test_the_record_key_names_this_machines_kernel_family(tmp_path):
    """The fidelity record is bound to the float kernels training runs (issue 26's second machine: AVX2 and
    AVX-512 CPUs train different models for one seed), so a record is continued only on a machine of that family:
    on a CPU, the vector capability the environment record names."""
    from pathlib import Path

    from cezsar.base import environment
    from cezsar.harness import pipeline

    pfile = tmp_path / "cpu.yaml"
    pfile.write_text(f"data_root: {tmp_path / 'raw'}\nwork_dir: {tmp_path / 'work'}\ndevice: cpu\n")
    key = fidelity_report.record_key(load(str(pfile)), 25, pipeline.layout_from(str(pfile)))
    assert key["device"] == "cpu"
    assert key["kernels"] == f"cpu {environment.record('cpu')['cpu_capability']}"
    assert Path(tmp_path / "raw").exists() is False  # computing the key reads the data, never makes it


# --- docs/fidelity.md's measured-cost column ------------------------------------------------------------------
def test_the_docs_cost_column_is_the_committed_record():
    """Every Δ in docs/fidelity.md's table is generated from figures/fidelity.json (`cezsar.harness.fidelity_doc`):
    the committed pair agrees, so no cost is typed by hand or left behind by a newer measurement."""
    from cezsar.config import PROJ_ROOT
    from cezsar.harness import fidelity_doc

    doc = (PROJ_ROOT / "docs" / "fidelity.md").read_text(encoding="utf-8")
    record = json.loads((PROJ_ROOT / "figures" / "fidelity.json").read_text())
    assert fidelity_doc.update(doc, fidelity_doc.cost_cells(record)) == doc, (
        "docs/fidelity.md is out of date: python -m cezsar.harness.fidelity --report-only --doc docs/fidelity.md")
    assert set(fidelity_doc.TOPICS) and all(v in fidelity.VARIANTS for vs in fidelity_doc.TOPICS.values()
                                            for v, _ in vs)


def test_a_cost_cell_names_both_intervals_the_seeds_and_the_reference(tmp_path):
    from cezsar.harness import fidelity_doc

    row = {"variant": "window", "reference": "paper", "seeds": 3,
           "delta_ucf101_VE+O": {"n": 3, "diff": -0.05, "low": -0.125, "high": 0.025},
           "delta_kinetics400_VE+O": {"n": 3, "diff": 0.1, "low": 0.02, "high": 0.18}}
    assert fidelity_doc.variant_cell(row, 25) == ("-5.0 (-12.5 … +2.5) / +10.0 (+2.0 … +18.0) (paired over 3 seeds, "
                                                  "25 epochs; vs `paper`)")
    pending = {**row, "delta_ucf101_VE+O": None, "delta_kinetics400_VE+O": None}
    assert fidelity_doc.variant_cell(pending, 25) == "Δ pending its reference, `paper` (3 seeds recorded)"
    assert fidelity_doc.variant_cell({"not_measurable": "no clip is longer"}, 25) == "no clip is longer"
    assert fidelity_doc.variant_cell(None, 25) == "not yet measured"
    doc = "| topic | x |\n|---|---|\n| SEM | FC | old cost |\n| VEM head | y | z |\n"
    assert fidelity_doc.update(doc, {"SEM": "new"}) == "| topic | x |\n|---|---|\n| SEM | FC | new |\n| VEM head | y | z |\n"
    with pytest.raises(ValueError, match="'eval'"):
        fidelity_doc.update(doc, {"eval": "new"})
    path = tmp_path / "f.md"
    path.write_text(doc)
    record = {"settings": {"epochs": 25}, "rows": [{**row, "variant": "sem"}]}
    with pytest.raises(ValueError, match="topic"):  # the file has no row for most topics
        fidelity_doc.write(path, record)
