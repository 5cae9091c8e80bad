"""Stage digests and `cezsar verify` (issue 26, part 4): an unchanged run passes; a change planted at one stage
is named as the first divergence; and the locked environment (part 3) is what the record reports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _fake_run(tmp: Path, synth_small: Path) -> tuple[Path, Path]:
    """A run's files at every stage boundary (data, features, triplets, a training log, results.json) and its
    parameter set; returns (params file, run folder)."""
    import shutil

    raw = tmp / "raw"
    shutil.copytree(synth_small, raw)
    work = tmp / "work"
    rng = np.random.default_rng(0)
    for part in ("activitynet", "ucf101", "kinetics400"):
        folder = work / "features" / part
        folder.mkdir(parents=True)
        for i in range(4):
            np.save(folder / f"{part}_{i}.npy", rng.standard_normal((5 + i, 16)).astype(np.float32))
    (work / "processed").mkdir()
    np.savez(work / "processed" / "triplets_tau0.80.npz", anchor=np.arange(12).reshape(4, 3),
             positive=rng.integers(0, 9, (4, 3)))
    (work / "models" / "tau0.80").mkdir(parents=True)
    (work / "models" / "tau0.80" / "log.json").write_text(json.dumps(
        {"history": [{"epoch": 1, "train_loss": 0.91, "val_loss": 0.87, "seconds": 3.2},
                     {"epoch": 2, "train_loss": 0.71, "val_loss": 0.80, "seconds": 3.1}]}))
    run = tmp / "runs" / "fake"
    run.mkdir(parents=True)
    record = {"top1_mean": 0.531, "top1_std": 0.02, "runs": 3, "seed_top1": [0.52, 0.54, 0.533]}
    (run / "results.json").write_text(json.dumps({"datasets": {"ucf101": {"methods": {"VE": {"16": record}}}},
                                                  "tau_ablation": {"rows": [{"tau": 0.8, "top1": 0.5}]}}))
    params = tmp / "fake.yaml"
    params.write_text(yaml.safe_dump({"data_root": str(raw), "work_dir": str(work), "figures_dir": str(tmp / "f"),
                                      "device": "cpu"}))
    return params, run


def _verify(capsys, *args: str) -> subprocess.CompletedProcess:
    """`cezsar verify ARGS` in this process (cezsar.cli.main, which `python -m cezsar` exits with): its exit code,
    stdout and stderr. In-process, the text model's import is paid once per test session, not once per call."""
    from cezsar.cli import main

    capsys.readouterr()
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["cezsar", "verify", *args], code, out, err)


def test_an_unchanged_run_passes_and_a_perturbed_feature_row_is_named(tmp_path: Path, synth_small: Path, capsys):
    params, run = _fake_run(tmp_path, synth_small)
    ref = tmp_path / "reference.json"
    out = _verify(capsys, str(run), "--params", str(params), "--write", str(ref))
    assert out.returncode == 0, out.stderr
    written = json.loads(ref.read_text())
    assert all(written["stages"][s] is not None for s in ("data", "features", "sbert", "triplets", "first_epoch",
                                                          "accuracies"))
    assert written["stages"]["accuracies"]["ucf101/VE/16/seed_top1[1]"] == pytest.approx(0.54)
    assert written["stages"]["accuracies"]["tau_ablation/0.8"] == pytest.approx(0.5)

    same = _verify(capsys, str(run), "--params", str(params), "--reference", str(ref))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "every stage matches" in same.stdout
    assert json.loads((run / "verify.json").read_text())["same"] is True

    # one feature row of one test clip perturbed: features diverge first, data (earlier) still matches
    path = tmp_path / "work" / "features" / "ucf101" / "ucf101_2.npy"
    feats = np.load(path)
    feats[3] += 0.05
    np.save(path, feats)
    changed = _verify(capsys, str(run), "--params", str(params), "--reference", str(ref))
    assert changed.returncode == 1, changed.stdout + changed.stderr
    verdict = json.loads((run / "verify.json").read_text())
    assert verdict["first_divergence"]["stage"] == "features"
    assert "ucf101/per_file/ucf101_2" in verdict["first_divergence"]["detail"]
    assert [c["stage"] for c in verdict["checks"] if c["same"]] == ["data"] + [
        c["stage"] for c in verdict["checks"][2:] if c["same"]]
    assert "diverges first at stage 'features'" in changed.stdout


def test_a_changed_first_epoch_loss_is_named_with_its_size(tmp_path: Path, synth_small: Path, capsys):
    params, run = _fake_run(tmp_path, synth_small)
    ref = tmp_path / "reference.json"
    assert _verify(capsys, str(run), "--params", str(params), "--write", str(ref), "--stages",
                   "triplets,first_epoch,accuracies").returncode == 0
    log = tmp_path / "work" / "models" / "tau0.80" / "log.json"
    log.write_text(log.read_text().replace("0.87", "0.8702"))  # 2e-4: twice the tolerance
    out = _verify(capsys, str(run), "--params", str(params), "--reference", str(ref), "--stages",
                  "triplets,first_epoch,accuracies")
    assert out.returncode == 1
    first = json.loads((run / "verify.json").read_text())["first_divergence"]
    assert first["stage"] == "first_epoch" and "val_loss" in first["detail"] and "0.0002 " in first["detail"]


def test_stage_comparison_tolerances():
    from cezsar.harness.digests import compare_stage

    assert compare_stage("accuracies", {"a": 0.500}, {"a": 0.504})[0]
    same, detail = compare_stage("accuracies", {"a": 0.500}, {"a": 0.506})
    assert not same and "a: absolute difference 0.006" in detail
    assert not compare_stage("data", {"sha256": "ab"}, {"sha256": "ac"})[0]
    assert compare_stage("triplets", None, None)[0]
    assert compare_stage("features", None, {"x": 1.0}) == (False, "missing in this run")


def test_verify_names_a_missing_reference_and_an_unknown_stage(tmp_path: Path, synth_small: Path, capsys):
    params, run = _fake_run(tmp_path, synth_small)
    out = _verify(capsys, str(run), "--params", str(params), "--reference", str(tmp_path / "none.json"))
    assert out.returncode != 0 and "none.json" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    # in a real process: the exit code the shell sees for a usage error
    bad = subprocess.run([sys.executable, "-m", "cezsar", "verify", str(run), "--params", str(params), "--stages",
                          "featurez"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "featurez" in bad.stderr and "Traceback" not in bad.stderr


def test_environment_record_and_differences(tmp_path: Path):
    from cezsar.base import environment

    rec = environment.record("cpu")
    import numpy
    import torch

    assert rec["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert rec["packages"]["numpy"] == numpy.__version__
    assert rec["threads"] == torch.get_num_threads() and rec["device"] == "cpu"
    assert f"torch {rec['packages']['torch']}" in environment.short(rec)
    other = json.loads(json.dumps(rec))
    other["packages"]["numpy"] = "0.0.1"
    other["threads"] = rec["threads"] + 3
    diffs = environment.differences(rec, other)
    assert f"numpy: {numpy.__version__} vs 0.0.1" in diffs
    assert f"threads: {rec['threads']} vs {rec['threads'] + 3}" in diffs
    assert environment.differences(rec, rec) == []
    # a lock file's pins are read and compared with what is installed
    lock = tmp_path / "locks" / "cpu.txt"
    lock.parent.mkdir()
    lock.write_text(f"# comment\nnumpy=={numpy.__version__}\n    # via x\nno-such-package-xyz==1.0\n"
                    "--extra-index-url u\n")
    status = environment.lock_status(tmp_path)
    assert status["file"] == "locks/cpu.txt" and status["differs"] == ["no-such-package-xyz missing (lock 1.0)"]


def test_notebook_00_and_the_report_show_the_comparison(tmp_path: Path, synth_small: Path):
    from cezsar.harness import digests
    from cezsar.harness.layout import layout_from
    from cezsar.harness.params import settings
    from cezsar.harness.run_page import _verdict

    params, run = _fake_run(tmp_path, synth_small)
    s = settings(params)
    lay = layout_from(s)
    ref = digests.compute(lay, s, ("data", "features"))
    ref["environment"] = dict(digests.environment.record("cpu"), threads=99)
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "fake.json").write_text(json.dumps(ref))  # the committed run of the parameter set fake.yaml
    shown = digests.early_check(lay, s, tmp_path / "fake.json").data
    assert "**Committed run (fake.json):**" in shown
    assert "identical to that of the committed run" in shown and "threads:" in shown and "99" in shown
    (lay.data_root / "groups.json").write_text("{}")
    assert "differs from that of the committed run" in digests.early_check(lay, s, tmp_path / "fake.json").data
    assert "No committed digests" in digests.early_check(lay, s, tmp_path / "none.json").data

    assert "Not verified" in _verdict(run)
    now = digests.environment.record("cpu")
    verdict = digests.compare(digests.compute(lay, s, ("data", "features")), ref, now=now)
    (run / "verify.json").write_text(json.dumps(verdict))
    page = _verdict(run)
    assert "diverges first at stage 'data'" in page and "threads: " in page


def test_results_json_records_the_environment_and_every_computed_row_shows_it(tmp_path: Path, monkeypatch):
    import torch

    from cezsar.base import environment
    from cezsar.harness import params, pipeline, pipeline_evaluation, report

    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"data_root": str(tmp_path / "raw"), "runs": 3,
                                                     "work_dir": str(tmp_path / "work"), "use_objects": "off",
                                                     "device": "cpu"}))
    monkeypatch.setenv("CEZSAR_RUNS_DIR", str(tmp_path / "runs"))
    s = params.settings(tmp_path / "p.yaml")
    lay = pipeline.layout_from(s)
    record = {"protocol": "0/all", "n_videos": 3, "n_dataset_videos": 3, "n_classes": 4, "skipped_videos": [],
              "backbone": "b", "text_model": "t", "top1_mean": 0.5, "top1_std": 0.1, "runs": [0.4, 0.6],
              "chance": 0.25}
    monkeypatch.setattr(pipeline_evaluation, "evaluate_methods", lambda lay, kind, *a, **k: {
        "_emb": {}, "VE": {"101" if kind == "ucf101" else "400": dict(record)}})
    results = report.evaluate_all(lay, s, checkpoint=tmp_path / "none.pt")
    saved = json.loads((lay.run_dir / "results.json").read_text())["environment"]
    assert saved["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0] and saved["device"] == "cpu"
    md = report.write_tables(results, tmp_path / "figures")
    line = next(row for row in md["table1"].splitlines() if row.startswith("| CEZSAR (VE) |"))
    assert line.rstrip(" |").endswith(environment.short(saved))


def test_cpu_vector_units_are_recorded_and_named_as_a_difference():
    """Two CPUs sold as one model ("AMD EPYC") can run other float kernels (AVX2 against AVX-512): the record keeps
    torch's CPU capability and the vector flags, and `differences` names them."""
    import torch

    from cezsar.base import environment

    rec = environment.record("cpu")
    assert rec["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].splitlines()[0].split() \
        if Path("/proc/cpuinfo").exists() else []
    assert rec["cpu_flags"] == [f for f in environment.VECTOR_FLAGS if f in flags]
    other = json.loads(json.dumps(rec))
    other["cpu_capability"] = "AVX512" if rec["cpu_capability"] != "AVX512" else "AVX2"
    diffs = environment.differences(rec, other)
    assert f"cpu_capability: {rec['cpu_capability']} vs {other['cpu_capability']}" in diffs


def test_a_triplet_files_digest_ignores_where_the_clone_lives(tmp_path: Path):
    """The same triplets mined in two clones differ only in the absolute paths their meta records: same digest.
    A changed input hash beside the path still changes it."""
    from cezsar.harness.digests import triplets_digest

    def write(folder: Path, path: str, sha: str) -> dict:
        folder.mkdir()
        meta = {"summary": {"inputs": {"captions": [{"path": path, "sha256": sha}]}, "tau": 0.8}}
        np.savez(folder / "triplets_tau0.80.npz", pos=np.arange(4), meta=np.frombuffer(
            json.dumps(meta).encode(), dtype=np.uint8))
        return triplets_digest(folder)["triplets_tau0.80.npz"]

    a = write(tmp_path / "a", "/home/one/cezsar/data/raw/train.json", "de0b")
    b = write(tmp_path / "b", "/srv/two/data/raw/train.json", "de0b")
    c = write(tmp_path / "c", "/srv/two/data/raw/train.json", "ffff")
    assert a == b
    assert a["pos"] == c["pos"] and a["meta"] != c["meta"]


def test_a_triplet_files_digest_ignores_where_and_when_its_inputs_were_made(tmp_path: Path):
    """The same triplets mined on another machine (another clone path, feature files written at other times) have
    the same digest; a changed config value or caption content does not."""
    from cezsar.harness.digests import triplets_digest

    def meta(root: str, folder_hash: str, tau: float = 0.7, caption_sha: str = "de0b8a03") -> np.ndarray:
        m = {"summary": {"config": {"tau": tau}, "inputs": {
            "captions": [{"bytes": 46282, "path": f"{root}/raw/train.json", "sha256": caption_sha}],
            "features": {"path": f"{root}/features", "files": 150, "hash": folder_hash},
            "objects": {"path": f"{root}/objects", "files": 150, "hash": folder_hash[::-1]}}}}
        return np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)

    def digest(name: str, m: np.ndarray) -> dict:
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "triplets_tau0.70.npz", anchor=np.arange(6), meta=m)
        return triplets_digest(tmp_path / name)["triplets_tau0.70.npz"]

    here = digest("here", meta("/work/main/data", "e4115cd98ebfcfcf"))
    assert digest("there", meta("/tmp/clone/data", "50095b71467ebca7")) == here
    assert digest("tau", meta("/work/main/data", "e4115cd98ebfcfcf", tau=0.9))["meta"] != here["meta"]
    assert digest("caps", meta("/work/main/data", "e4115cd98ebfcfcf", caption_sha="00000000"))["meta"] != here["meta"]


def test_a_triplet_files_meta_difference_is_named_and_its_statistics_have_a_tolerance(tmp_path: Path):
    """Digests v4: the meta is compared part by part, so the verdict names the entry that differs (a sentence list,
    a setting); a mining statistic that a last-bit SBERT difference moves by a count passes, a larger move does
    not. A reference of another digest version is named as such."""
    from cezsar.harness.digests import compare, compare_stage, triplets_digest

    def digest(name: str, sentences: list[str], counts: list[int], tau: float = 0.7) -> dict:
        m = {"sentences": sentences, "video_ids": ["v1", "v2"], "summary": {
            "config": {"tau": tau}, "sim_hist": {"counts": counts}, "admissible": {"mean": 141.38}}}
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "triplets_tau0.70.npz", pos=np.arange(6),
                 meta=np.frombuffer(json.dumps(m).encode(), dtype=np.uint8))
        return triplets_digest(tmp_path / name)

    ref = digest("ref", ["a cat", "a dog"], [18, 4364])
    same, detail = compare_stage("triplets", digest("one_count", ["a cat", "a dog"], [19, 4363]), ref)
    assert same and "sim_hist/counts[0]" in detail
    same, detail = compare_stage("triplets", digest("moved", ["a cat", "a dog"], [18, 4380]), ref)
    assert not same and "sim_hist/counts[1]" in detail
    # two similarities on a bin edge move into the next bin: a small bin changes by 0.11 % of itself, 0.001 % of
    # the histogram (as an AVX2 machine's SBERT did against the AVX-512 reference); a real move of a bin does not pass
    big = digest("big", ["a cat", "a dog"], [18, 4364, 169000, 1786])
    same, detail = compare_stage("triplets", digest("edge", ["a cat", "a dog"], [18, 4364, 168998, 1788]), big)
    assert same and "sim_hist/counts[" in detail
    same, detail = compare_stage("triplets", digest("shifted", ["a cat", "a dog"], [18, 4364, 168600, 2186]), big)
    assert not same and "sim_hist/counts[2]" in detail
    same, detail = compare_stage("triplets", digest("sentences", ["a cat", "a bird"], [18, 4364]), ref)
    assert not same and "meta/sentences differs" in detail
    same, detail = compare_stage("triplets", digest("tau", ["a cat", "a dog"], [18, 4364], tau=0.8), ref)
    assert not same and "summary/config/tau differs" in detail
    verdict = compare({"digests_version": 4, "stages": {"triplets": ref}},
                      {"digests_version": 3, "stages": {"triplets": ref}})
    assert verdict["first_divergence"]["stage"] == "digests" and "version 4" in verdict["first_divergence"]["detail"]


def _kernels(capability: str, products: str, device: str = "cpu") -> dict:
    return {"device": device, "cpu_capability": capability, "cpu_products": products, "threads": 2}


def test_the_reference_is_the_one_of_the_runs_training_kernels(tmp_path: Path):
    """A run is compared with the committed reference of its own training kernels where one exists, else with the
    committed run (<set>.json)."""
    from cezsar.harness import references

    folder = tmp_path / "digests"
    folder.mkdir()
    main, avx2 = folder / "embedded.json", folder / "embedded.avx2.json"
    main.write_text(json.dumps({"environment": _kernels("AVX512", "onednn")}))
    avx2.write_text(json.dumps({"environment": _kernels("AVX2", "torch")}))
    (folder / "paper.avx2.json").write_text(json.dumps({"environment": _kernels("AVX2", "torch")}))

    assert references.reference_files("params/embedded.yaml", folder) == [main, avx2]
    assert references.choose("params/embedded.yaml", _kernels("AVX2", "torch"), folder) == avx2
    assert references.choose("params/embedded.yaml", _kernels("AVX512", "onednn"), folder) == main
    # the same vector family with the other product library trains other bits: the committed run
    assert references.choose("params/embedded.yaml", _kernels("AVX2", "onednn"), folder) == main
    assert references.choose("params/embedded.yaml", _kernels("", "", "cuda:0 (NVIDIA H100)"), folder) == main
    assert references.choose("params/embedded.yaml", None, folder) == main
    assert references.role(avx2, "params/embedded.yaml") != references.role(main, "params/embedded.yaml")
    # a set with only a family reference: that one for its kernels, the absent <set>.json otherwise
    assert references.choose("paper.yaml", _kernels("AVX2", "torch"), folder).name == "paper.avx2.json"
    assert references.choose("paper.yaml", _kernels("AVX512", "onednn"), folder).name == "paper.avx2.json"
    assert references.choose("other.yaml", _kernels("AVX2", "torch"), folder) == folder / "other.json"


def test_verify_picks_the_reference_of_this_machines_kernels(tmp_path: Path, synth_small: Path, capsys,
                                                            monkeypatch):
    from cezsar import config
    from cezsar.base import environment

    params, run = _fake_run(tmp_path, synth_small)
    ours = tmp_path / "ours.json"
    assert _verify(capsys, str(run), "--params", str(params), "--write", str(ours),
                   "--stages", "data,accuracies").returncode == 0
    digest = json.loads(ours.read_text())
    here = environment.record("cpu")
    other = dict(here, cpu_capability="SOME_OTHER_FAMILY")
    folder = tmp_path / "project" / "data" / "digests"
    folder.mkdir(parents=True)
    committed = json.loads(json.dumps(digest))  # the committed run: other kernels, another accuracy
    committed["environment"] = other
    committed["stages"]["accuracies"]["ucf101/VE/16/seed_top1[1]"] += 0.1
    (folder / "fake.json").write_text(json.dumps(committed))
    (folder / "fake.here.json").write_text(json.dumps(dict(digest, environment=here)))
    monkeypatch.setattr(config, "PROJ_ROOT", tmp_path / "project")

    out = _verify(capsys, str(run), "--params", str(params), "--stages", "data,accuracies")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0] == ("reference: data/digests/fake.here.json "
                                          "(the reference run of these training kernels)")
    # no reference of these kernels: the committed run, which parts at the accuracies and names the family
    (folder / "fake.here.json").unlink()
    out = _verify(capsys, str(run), "--params", str(params), "--stages", "data,accuracies")
    assert out.returncode == 1
    assert out.stdout.splitlines()[0] == "reference: data/digests/fake.json (the committed run)"
    assert "cpu_capability:" in out.stdout and "SOME_OTHER_FAMILY" in out.stdout
    # a run trained elsewhere is judged by the kernels its results.json recorded, not by this process's
    elsewhere = dict(here, cpu_capability="THE_RUNS_FAMILY")
    (folder / "fake.theirs.json").write_text(json.dumps(dict(digest, environment=elsewhere)))
    results = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps(dict(results, environment=elsewhere)))
    out = _verify(capsys, str(run), "--params", str(params), "--stages", "data,accuracies")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].startswith("reference: data/digests/fake.theirs.json ")


def test_the_committed_references_are_current_and_one_per_kernel_family():
    from cezsar.base import environment
    from cezsar.harness import digests, references

    for stem in {p.name.split(".")[0] for p in (ROOT / "data" / "digests").glob("*.json")}:
        files = references.reference_files(f"{stem}.yaml", ROOT / "data" / "digests")
        assert files[0].name == f"{stem}.json", f"{stem}: a family reference without the committed run"
        kernels = []
        for path in files:
            ref = json.loads(path.read_text())
            assert ref["digests_version"] == digests.DIGESTS_VERSION, path.name
            assert set(ref["stages"]) == set(digests.STAGES) and all(ref["stages"].values()), path.name
            kernels.append(environment.training_kernels(ref["environment"]))
        assert all(kernels) and len(set(kernels)) == len(kernels), f"{stem}: two references of the same kernels"
