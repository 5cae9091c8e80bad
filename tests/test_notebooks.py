"""The notebooks: their conventions (docs/decisions.md §9), their .py pairs, and a headless end-to-end run."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPECTED = ["00_data", "01_features", "02_mining", "03_training", "04_tau_ablation", "05_tables", "06_figures",
            "07_fidelity"]


def test_the_notebooks_exist_in_order():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and "Purpose" in cells[0].source and "Outputs" in cells[0].source
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert cells.index(tagged[0]) == 1, "the parameters cell comes right after the purpose cell"
    for line in tagged[0].source.splitlines():
        if line.strip():  # flat typed values with a comment each: `name: type = value  # help`
            assert ":" in line.split("=")[0] and "#" in line, f"untyped or uncommented parameter: {line}"
    code = [c for c in cells if c.cell_type == "code"]
    for c in code:
        for line in c.source.splitlines():
            assert not line.lstrip().startswith(("def ", "class ", "async def ")), f"{path.name}: {line}"
        assert c.get("outputs", []) == [] and c.get("execution_count") is None, f"{path.name}: outputs not stripped"
    assert any("widgets.tuner(" in c.source for c in code), "a widget cell to retune the parameters"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_py_pair_is_in_sync(path: Path):
    import jupytext

    pair = path.with_suffix(".py")
    assert pair.exists(), f"{pair.name} missing (jupytext percent pair)"
    a = [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]
    b = [(c.cell_type, c.source) for c in jupytext.read(pair).cells]
    assert a == b, f"{path.name} and {pair.name} differ: run `jupytext --sync notebooks/*.ipynb`"


def _parameter_values(path: Path) -> dict:
    import ast

    cell = next(c for c in nbformat.read(path, as_version=4).cells
                if "parameters" in c.get("metadata", {}).get("tags", []))
    return {node.target.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.AnnAssign)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_parameters_take_their_values_from_the_set(path: Path):
    """One source of defaults (issue 29): every parameter of a notebook's parameters cell is None ("the parameter
    set's value"), so the set alone holds defaults, and every name is a key of the parameter sets."""
    import yaml

    embedded = yaml.safe_load((ROOT / "params" / "embedded.yaml").read_text())
    values = _parameter_values(path)
    assert values.pop("params_file") == "params/embedded.yaml"
    for name, value in values.items():
        assert name in embedded, f"{path.name}: parameter {name!r} is not a key of params/embedded.yaml"
        assert value is None, f"{path.name}: {name} = {value!r}; write None (the set's value) in the parameters cell"


def _execute_plain(path: Path, params_file: Path, runs: Path) -> None:
    """Run a notebook top to bottom in a fresh kernel, as "Run All" in JupyterLab does, with its params_file set."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    cell.source = cell.source.replace('"params/embedded.yaml"', repr(str(params_file)), 1)
    old = dict(os.environ)
    os.environ.update(CEZSAR_RUNS_DIR=str(runs), MPLBACKEND="module://matplotlib_inline.backend_inline")
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)


def _images(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


TINY = {
    "mode": "embedded", "synth_seed": 0, "synth_size": "small", "backbone": "efficientnet_lite0",
    "backbone_weights": "", "image_size": 160, "text_model": "minilm", "tau": 0.8, "tau_values": "0.8,0.9",
    "n_negatives": 10, "object_positives": 0, "epochs": 4, "patience": 10, "batch": 128, "seed": 0, "train_seeds": 2, "device": "cpu", "alpha": 0.8,
    "beta": 0.2, "runs": 3, "fidelity_seeds": 2, "fidelity_epochs": 2,  # notebook 07 measures: not the set's 5 x 25
}


def _run_all(params: dict, tmp: Path, notebooks: Path | None = None) -> subprocess.CompletedProcess:
    import yaml

    pfile = tmp / "tiny.yaml"
    pfile.write_text(yaml.safe_dump(params))
    env = {**os.environ, "CEZSAR_RUNS_DIR": str(tmp / "runs")}
    if notebooks:
        env["CEZSAR_NOTEBOOKS"] = str(notebooks)
    return subprocess.run(["bash", str(ROOT / "run_all.sh"), str(pfile)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1500)


FIDELITY_RECORD = ("fidelity.json", "fidelity.md", "fidelity.png")  # figures/: the committed measurement


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> dict:
    """One ./run_all.sh on the tiny parameter set, shared by the tests below (each checks one behaviour). Its
    figures folder starts with the committed fidelity record, so notebook 07 shows it as it does for a user, instead
    of training its 57 models (the measurement itself: test_the_fidelity_measurement_trains_evaluates_and_records)."""
    import shutil

    tmp = tmp_path_factory.mktemp("tiny_run")
    (tmp / "figures").mkdir()
    for name in FIDELITY_RECORD:
        shutil.copy(ROOT / "figures" / name, tmp / "figures" / name)
    params = {**TINY, "data_root": str(tmp / "raw"), "work_dir": str(tmp / "work"), "figures_dir": str(tmp / "figures")}
    out = _run_all(params, tmp)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp / "runs" / "tiny"
    return {"tmp": tmp, "figs": tmp / "figures", "run": run,
            "results": json.loads((run / "results.json").read_text())}


@pytest.mark.slow
def test_run_all_writes_every_table_and_figure(tiny_run):
    for name in ("table1.md", "table1.csv", "table2.md", "table2.csv", "fig1_tsne.png", "fig3_confusion.png",
                 "tau_ablation.png", "tau_ablation.md", "comparisons.md", "fig3_hard_classes.md"):
        assert (tiny_run["figs"] / name).stat().st_size > 0, name
    for stem in EXPECTED:
        assert (tiny_run["run"] / f"{stem}.ipynb").stat().st_size > 0
    results = tiny_run["results"]
    assert set(results["datasets"]) == {"ucf101", "kinetics400"}
    assert {"O", "VE", "VE+O"} <= set(results["datasets"]["ucf101"]["methods"])
    assert "Estevam et al. (O)" in (tiny_run["figs"] / "table1.md").read_text()  # the cited literature rows


@pytest.mark.slow
def test_every_trained_number_is_over_the_training_seeds(tiny_run):
    """Issue 26: each seed's record kept, the table cell says how many seeds, comparisons are paired over them."""
    ve = next(iter(tiny_run["results"]["datasets"]["ucf101"]["methods"]["VE"].values()))
    assert ve["seeds"]["seeds"] == [0, 1] and len(ve["seeds"]["records"]) == 2
    assert "(2 seeds)" in (tiny_run["figs"] / "table1.md").read_text()
    assert "paired over 2 seeds" in (tiny_run["figs"] / "comparisons.md").read_text()
    # the τ trained side by side at the set's thread count, and the tables say so (docs/decisions.md)
    assert "2 training seeds (0–1); trained with 1 thread" in (tiny_run["figs"] / "table1.md").read_text()
    log = (tiny_run["run"] / "03_training.log").read_text()
    assert "side by side" in log and "[τ 0.9] seed 1, epoch 4/4" in log


@pytest.mark.slow
def test_every_protocol_record_is_the_one_cezsar_evaluate_writes(tiny_run):
    """One results schema (issue 20)."""
    from cezsar.reporting.results import RESULTS_VERSION, protocol_record

    results = tiny_run["results"]
    record = next(iter(results["datasets"]["ucf101"]["methods"]["VE"].values()))
    shared = protocol_record({}, checkpoint=None, trained_on=None, descriptions="d.json", dataset_root=".",
                             features=None, text_model="", text_model_id="", backbone=None)
    assert results["results_version"] == record["results_version"] == RESULTS_VERSION
    assert set(shared) <= set(record) and record["descriptions"]["layout"] == "json"
    assert record["trained_on"]["dataset"].startswith("SynthActions")


@pytest.mark.slow
def test_every_figure_is_shown_inline_and_in_the_report(tiny_run):
    """Issue 15: figures are inline images, not printed as "<Figure size ...>", and the report embeds them all."""
    run = tiny_run["run"]
    images = {stem: _images(run / f"{stem}.ipynb") for stem in EXPECTED}
    assert images["00_data"] >= 1 and images["01_features"] >= 1 and images["02_mining"] >= 1, images
    assert images["03_training"] >= 1 and images["04_tau_ablation"] >= 1 and images["06_figures"] >= 3, images
    for stem in EXPECTED:
        text = json.dumps(nbformat.read(run / f"{stem}.ipynb", as_version=4).cells)
        assert "<Figure size" not in text or images[stem], stem
    report = (run / "report.html").read_text()
    assert "CEZSAR (VE + O)" in report and report.count("data:image/png;base64") >= sum(images.values())


@pytest.mark.slow
def test_notebook_05_in_a_plain_kernel_reproduces_run_alls_tables(tiny_run):
    """One source of truth (issue 15): notebook 05 run again in a plain kernel (no papermill, no injected values),
    with only its params_file pointed at the set as a person would in JupyterLab, gives the same tables."""
    figs, tmp = tiny_run["figs"], tiny_run["tmp"]
    tables = {n: (figs / n).read_bytes() for n in ("table1.md", "table2.md", "table1.csv", "table2.csv")}
    _execute_plain(ROOT / "notebooks" / "05_tables.ipynb", tmp / "tiny.yaml", tmp / "runs")
    assert {n: (figs / n).read_bytes() for n in tables} == tables
    again = json.loads((tiny_run["run"] / "results.json").read_text())
    assert again["datasets"] == tiny_run["results"]["datasets"] and again["overrides"] == {}


@pytest.mark.slow
def test_notebook_07_shows_the_recorded_fidelity_measurement(tiny_run):
    nb = nbformat.read(tiny_run["run"] / "07_fidelity.ipynb", as_version=4)
    shown = "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
    table = [line for line in (ROOT / "figures" / "fidelity.md").read_text().splitlines() if line.startswith("| ")]
    assert table and all(line in shown for line in table)  # the recorded table, row by row
    assert _images(tiny_run["run"] / "07_fidelity.ipynb") >= 1
    for name in FIDELITY_RECORD:  # shown, not measured again
        assert (tiny_run["figs"] / name).read_bytes() == (ROOT / "figures" / name).read_bytes(), name


@pytest.mark.slow
def test_the_fidelity_measurement_trains_evaluates_and_records(tiny_run, one_torch_thread):
    """`python -m cezsar.harness.fidelity` (notebook 07 when no record exists) on the tiny run's data and features,
    for a variant and its reference at one seed and one epoch: one model trained per variant, evaluated on both test sets,
    tabulated with the change against the reference, recorded where notebook 07 reads it."""
    from cezsar.harness import fidelity

    out = tiny_run["tmp"] / "fidelity_figures"
    measured = fidelity.main(["--params", str(tiny_run["tmp"] / "tiny.yaml"), "--seeds", "1", "--epochs", "1",
                              "--variants", "paper,raw_sum", "--figures", str(out)])
    rows = {r["variant"]: r for r in measured["rows"]}
    assert list(rows) == ["paper", "raw_sum"] and rows["raw_sum"]["reference"] == "paper"
    for row in rows.values():
        assert row["seeds"] == 1 and all(0.0 <= row[k][0] <= 1.0 for k in ("ucf101_VE+O", "kinetics400_VE+O"))
    assert rows["raw_sum"]["delta_ucf101_VE+O"]["diff"] == pytest.approx(  # paired over the one seed both have
        rows["raw_sum"]["ucf101_VE+O"][0] - rows["paper"]["ucf101_VE+O"][0])
    assert fidelity.recorded(out)["markdown"] == measured["markdown"] and "| raw_sum |" in measured["markdown"]
    assert fidelity.show_or_measure(str(tiny_run["tmp"] / "tiny.yaml"), out)["markdown"] == measured["markdown"]


@pytest.mark.slow
def test_training_on_synthactions_lowers_the_validation_loss(tiny_run):
    log = json.loads((tiny_run["tmp"] / "work" / "models" / "tau0.80" / "seed0" / "log.json").read_text())
    val = [e["val_loss"] for e in (log["history"] if isinstance(log, dict) else log)]
    assert min(val[1:]) < val[0], val


@pytest.mark.slow
def test_run_all_stops_at_a_failing_notebook_and_names_it(tmp_path: Path):
    books = tmp_path / "books"
    books.mkdir()
    good = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})
    good.cells = [nbformat.v4.new_code_cell("seed: int = 0  # a value", metadata={"tags": ["parameters"]})]
    bad = nbformat.v4.new_notebook(metadata=good.metadata)
    bad.cells = [good.cells[0], nbformat.v4.new_code_cell("raise RuntimeError('boom in the middle')")]
    nbformat.write(good, books / "00_ok.ipynb")
    nbformat.write(bad, books / "01_broken.ipynb")
    nbformat.write(good, books / "02_never.ipynb")
    out = _run_all({"seed": 2}, tmp_path, notebooks=books)
    assert out.returncode != 0
    assert "FAILED: 01_broken.ipynb" in out.stderr
    assert not (tmp_path / "runs" / "tiny" / "02_never.ipynb").exists()


@pytest.mark.slow
def test_run_all_refuses_a_misspelt_key_before_running_anything(tmp_path: Path):
    out = _run_all({**TINY, "epcohs": 3}, tmp_path)
    assert out.returncode == 2
    assert "unknown key(s) 'epcohs' (did you mean 'epochs'?)" in out.stderr
    assert not (tmp_path / "runs" / "tiny" / "00_data.ipynb").exists()
