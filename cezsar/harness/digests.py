"""Stage digests: a few numbers per stage boundary of a run, to find where two machines part (docs/interfaces.md).

`compute(layout, settings)` reads a run's files and summarises each stage, in pipeline order:

- data: the SHA-256 of every byte of the generated data (file names and contents);
- features: per feature stack (training corpus, each test set) its shape, mean, std, quantiles, and each file's
  mean and std;
- sbert: the SBERT vectors of a fixed sample of captions and class descriptions, encoded afresh;
- triplets: the SHA-256 of every array of every mined triplet file, and its meta's parts: the sentence list's and
  video list's SHA-256, the text model, and every entry of the mining summary (its statistics within 1e-3 ×
  max(|value|, 1000));
- first_epoch: the losses and accuracies of every trained model's first epoch;
- accuracies: every top-1 of results.json (each seed's where results.json keeps them).

`compare(run, reference)` checks each stage against its tolerance (TOLERANCES) and returns the verdict: the
first stage that diverges, by how much, and the environment differences (cezsar.base.environment) that might explain
it. Everything is read from the run's files; the whole computation takes seconds.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from cezsar.base import environment
from cezsar.harness import references
from cezsar.harness.layout import TEST_SETS, Layout
from cezsar.harness.params import Settings
from cezsar.encoders.text import SentenceEncoder
from cezsar.formats import datasets
from cezsar.formats.captions import read_activitynet_files

# 2: a triplet file's meta is hashed without its machine paths; 3: and without its folders' file-time hashes;
# 4: the meta as its parts (sentences, video ids, text model, every summary entry), so a difference is named
DIGESTS_VERSION = 4
STAGES = ("data", "features", "sbert", "triplets", "first_epoch", "accuracies")
# what counts as the same, per stage; the verdict prints it beside each difference
TOLERANCES = {
    "data": "identical bytes",
    "features": "difference ≤ 1e-4 × max(|value|, 1) of every statistic",
    "sbert": "absolute difference ≤ 1e-4 of every vector component",
    "triplets": "identical arrays, sentences and settings; mining statistics within 1e-3 × max(|value|, 1000), "
                "a histogram's counts within 1e-3 of its total",
    "first_epoch": "difference ≤ 1e-4 × max(|value|, 1) of every loss",
    "accuracies": "absolute difference ≤ 0.005 (half a point) of every top-1",
}
_REL = {"features": 1e-4, "first_epoch": 1e-4}
_ABS = {"sbert": 1e-4, "accuracies": 0.005}
_STAT_REL, _STAT_SCALE = 1e-3, 1000.0  # mining statistics: within 1e-3 of `_statistic_scales`
SAMPLE = 8  # captions and descriptions per test set in the SBERT sample
SBERT_DIMS = 64  # leading components kept of each sample vector (with its norm, over every component)
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
QUANTILE_ROWS = 20000  # rows of a stack the quantiles are taken over (every k-th row of the joined stack)


def _sig(x: float) -> float:
    return float(f"{float(x):.8g}")


def data_digest(root: Path) -> dict | None:
    """SHA-256 over the sorted relative paths and bytes of every file under `root`; None without the folder."""
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    files = total = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        files += 1
        total += path.stat().st_size
    return {"sha256": h.hexdigest(), "files": files, "bytes": total}


def stack_summary(folder: Path) -> dict | None:
    """A feature folder's `<id>.npy` stacks: the joined stack's shape, mean, std and quantiles (over at most
    QUANTILE_ROWS evenly spaced rows), and each file's mean and std (so a changed file is named); None without any."""
    paths = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if not paths:
        return None
    per_file, lengths = {}, []
    total = total_sq = 0.0
    count = dim = 0
    for p in paths:  # one file at a time: a large stack never sits in memory whole
        a = np.load(p).astype(np.float64)
        a = a.reshape(len(a), -1)  # (T, D)
        per_file[p.stem] = [_sig(a.mean()), _sig(a.std())]
        total, total_sq, count, dim = total + a.sum(), total_sq + np.square(a).sum(), count + a.size, a.shape[1]
        lengths.append(len(a))
    rows = sum(lengths)
    step = max(1, -(-rows // QUANTILE_ROWS))
    sample = np.concatenate([np.load(p).reshape(n, -1)[(step - start % step) % step::step]
                             for p, n, start in zip(paths, lengths, np.cumsum([0] + lengths[:-1]))])  # (≤ rows, D)
    mean = total / count
    return {"files": len(paths), "shape": [rows, dim], "mean": _sig(mean),
            "std": _sig(np.sqrt(max(total_sq / count - mean * mean, 0.0))),
            "quantiles": {str(q): _sig(v) for q, v in zip(QUANTILES, np.quantile(sample.astype(np.float64),
                                                                                 QUANTILES))},
            "per_file": per_file}


def sbert_sample(lay: Layout) -> list[str]:
    """The fixed sentence sample: the first captions of the training file (by video id) and the first class
    descriptions of each test set (by class name)."""

    out: list[str] = []
    if lay.captions and all(c.is_file() for c in lay.captions):
        caps = read_activitynet_files(lay.captions)
        out += [g.sentence for g in sorted(caps.segments, key=lambda g: (g.video_id, g.start))[:SAMPLE]]
    for kind in TEST_SETS:
        if lay.descriptions[kind].exists():
            desc = datasets.read_descriptions(lay.descriptions[kind])
            for name in sorted(desc)[:SAMPLE]:
                text = desc[name]
                out.append(text if isinstance(text, str) else " ".join(map(str, text)))
    return out


def sbert_digest(lay: Layout, s: Settings) -> dict | None:
    """The SBERT vectors of `sbert_sample`, encoded now with the set's text model (no sentence cache): each one's
    norm and its first SBERT_DIMS components."""

    sentences = sbert_sample(lay)
    if not sentences:
        return None
    with tempfile.TemporaryDirectory() as tmp:  # a fresh cache: this machine's SBERT, not a stored vector
        vecs = SentenceEncoder(s.text_model, cache_dir=tmp).encode(sentences)  # (N, dim)
    vecs = np.asarray(vecs, dtype=np.float64)  # (N, dim)
    return {"model": s.text_model, "sentences": sentences, "dim": int(vecs.shape[1]),
            "norms": [_sig(v) for v in np.linalg.norm(vecs, axis=1)],
            "vectors": [[_sig(v) for v in row[:SBERT_DIMS]] for row in vecs]}


def triplets_digest(folder: Path) -> dict | None:
    """Per triplet file under `folder`: every array's SHA-256 and its meta's parts (`_meta_parts`)."""
    paths = sorted(folder.glob("triplets_tau*.npz")) if folder.is_dir() else []
    if not paths:
        return None
    out = {}
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            out[p.name] = {k: _meta_parts(z[k]) if k == "meta" else _array_sha(z[k]) for k in sorted(z.files)}
    return out


def _array_sha(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest()


def _meta_parts(meta: np.ndarray) -> dict:
    """A triplet file's meta (JSON bytes) as comparable parts: the SHA-256 of each list (the sentences the arrays
    index, the video ids) and every other entry as it is, so that `compare_stage` names the entry that differs.

    Left out is what only says where and when this machine made its inputs: every "path" entry, and the "hash" of
    each feature or objects folder (its files' names, sizes and modification times, `pipeline_mining._folder_key`:
    the reuse key of one machine). The caption files' content hashes, the folders' file counts and every config
    value stay; the data and features stages check the inputs' content."""
    def strip(v):
        if isinstance(v, dict):
            folder = "files" in v and "hash" in v  # a `_folder_key`
            return {k: strip(x) for k, x in v.items() if k != "path" and not (folder and k == "hash")}
        return [strip(x) for x in v] if isinstance(v, list) else v
    parts = strip(json.loads(bytes(meta).decode("utf-8")))
    for key in ("sentences", "video_ids"):
        if isinstance(parts.get(key), list):
            parts[key] = hashlib.sha256(json.dumps(parts[key]).encode("utf-8")).hexdigest()
    return parts


def first_epoch_digest(models: Path) -> dict | None:
    """The losses and accuracies of the first epoch of every training log (`log.json`) under `models`."""
    logs = sorted(models.rglob("log.json")) if models.is_dir() else []
    out = {}
    for p in logs:
        log = json.loads(p.read_text())
        hist = log.get("history", []) if isinstance(log, dict) else log
        if hist:
            out[p.relative_to(models).as_posix()] = {  # losses and accuracies; timings and throughput vary
                k: _sig(v) for k, v in hist[0].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and ("loss" in k or "acc" in k)}
    return out or None


def _seed_values(record: dict) -> dict[str, float]:
    """Each seed's top-1 of a protocol record, under whatever key holds them (a list or a seed → value map)."""
    out = {}
    for key, val in record.items():
        if "seed" not in key.lower():
            continue
        if isinstance(val, list):
            for i, v in enumerate(val):
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}[{i}]"] = float(v)
                elif isinstance(v, dict) and isinstance(v.get("top1_mean", v.get("top1")), (int, float)):
                    out[f"{key}[{v.get('seed', i)}]"] = float(v.get("top1_mean", v.get("top1")))
        elif isinstance(val, dict):
            for k, v in val.items():
                v = v.get("top1_mean", v.get("top1")) if isinstance(v, dict) else v
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    out[f"{key}[{k}]"] = float(v)
    return out


def accuracies_digest(results_file: Path) -> dict | None:
    """Every top-1 mean of results.json (dataset/method/column; the τ ablation's rows where it holds them), and
    each seed's where a record keeps them."""
    if not results_file.is_file():
        return None
    results = json.loads(results_file.read_text())
    out = {}
    for kind, d in sorted(results.get("datasets", {}).items()):
        for method, cols in sorted(d.get("methods", {}).items()):
            if not isinstance(cols, dict):
                continue
            for col, rec in sorted(cols.items()):
                if not isinstance(rec, dict) or "top1_mean" not in rec:
                    continue
                where = f"{kind}/{method}/{col}"
                out[where] = _sig(rec["top1_mean"])
                for k, v in _seed_values(rec).items():
                    out[f"{where}/{k}"] = _sig(v)
    ablation = results.get("tau_ablation")  # the τ ablation's rows, where results.json keeps them
    for row in ablation.get("rows", []) if isinstance(ablation, dict) else []:
        if isinstance(row, dict) and isinstance(row.get("top1"), (int, float)):
            out[f"tau_ablation/{row.get('tau')}"] = _sig(row["top1"])
            for k, v in _seed_values(row).items():
                out[f"tau_ablation/{row.get('tau')}/{k}"] = _sig(v)
    return out or None


def run_environment(lay: Layout) -> dict | None:
    """The environment results.json recorded (None before notebook 05 has run, or for an older results file)."""
    path = lay.run_dir / "results.json"
    if path.is_file():
        return json.loads(path.read_text()).get("environment")
    return None


def compute(lay: Layout, s: Settings, stages: tuple[str, ...] = STAGES) -> dict:
    """The digests of a run's files (a stage without files is None), with the environment that made the run."""
    parts = {"activitynet": lay.train_features, **{k: lay.test_features[k] for k in TEST_SETS}}
    makers = {
        "data": lambda: data_digest(lay.data_root),
        "features": lambda: {k: v for k, v in ((k, stack_summary(f)) for k, f in parts.items()) if v} or None,
        "sbert": lambda: sbert_digest(lay, s),
        "triplets": lambda: triplets_digest(lay.processed),
        "first_epoch": lambda: first_epoch_digest(lay.models),
        "accuracies": lambda: accuracies_digest(lay.run_dir / "results.json"),
    }
    return {"digests_version": DIGESTS_VERSION, "params_file": Path(s.params_file).name,
            "environment": run_environment(lay), "tolerances": TOLERANCES,
            "stages": {name: makers[name]() for name in stages}}


# --- comparison ------------------------------------------------------------------------------------------------
def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list) and obj and all(isinstance(v, (int, float)) for v in obj):
        return {f"{prefix}[{i}]": v for i, v in enumerate(obj)}
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def _mining_statistic(key: str) -> bool:
    """Whether a flattened triplets-stage key is one of the mining summary's statistics (similarity histograms,
    admissible counts, ...): numbers that summarise float similarities, which a last-bit difference in SBERT moves by
    a count or two, while the arrays they describe stay identical. The summary's config and inputs are settings."""
    _, sep, rest = key.partition("/meta/summary/")
    return bool(sep) and not rest.startswith(("config/", "inputs/"))


def _statistic_scales(ref: dict) -> dict[str, float]:
    """Each mining statistic's scale: max(|value|, 1000, a histogram bin's histogram total); a last-bit SBERT
    difference moves similarities on a bin edge to the next bin (2 of a bin of 1786 on an AVX2 machine)."""
    stats = {k: abs(float(v)) for k, v in ref.items()
             if _mining_statistic(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}
    group = lambda k: k.rpartition("[")[0] or k  # noqa: E731 - a histogram's bins `<name>[i]` share `<name>`
    totals: dict[str, float] = {}
    for key, v in stats.items():
        totals[group(key)] = totals.get(group(key), 0.0) + v
    return {k: max(v, totals[group(k)], _STAT_SCALE) for k, v in stats.items()}


def compare_stage(stage: str, ours, ref) -> tuple[bool, str]:
    """(same, what differs) for one stage under its tolerance; the text names the worst entry and its size."""
    if ours is None and ref is None:
        return True, "absent on both sides"
    if ours is None or ref is None:
        return False, "missing in this run" if ours is None else "not in the reference"
    a, b = _flatten(ours), _flatten(ref)
    only = sorted(set(a) ^ set(b))
    if only:
        return False, f"{len(only)} entries on one side only, e.g. {only[0]}"
    worst, where = 0.0, ""
    stat_worst, stat_where = 0.0, ""  # the triplet files' mining statistics
    scales = _statistic_scales(b) if stage == "triplets" else {}
    for key in sorted(a):
        x, y = a[key], b[key]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        if numeric and stage == "triplets" and _mining_statistic(key):
            diff = abs(float(x) - float(y)) / scales[key]  # a count of 18 may move by 1
            if diff > _STAT_REL:
                return False, f"{key}: relative difference {diff:.3g} (tolerance {_STAT_REL:g})"
            if diff > stat_worst:
                stat_worst, stat_where = diff, key
            continue
        if not numeric or stage not in _REL and stage not in _ABS:
            if x != y:
                return False, f"{key} differs ({str(x)[:16]} vs {str(y)[:16]})"
            continue
        diff = abs(float(x) - float(y))
        if stage in _REL:  # relative to the value, or to 1 below it (a mean near 0 has no useful ratio)
            diff /= max(abs(float(y)), 1.0)
        if diff > worst:
            worst, where = diff, key
    limit = _REL.get(stage, _ABS.get(stage, 0.0))
    kind = "relative" if stage in _REL else "absolute"
    if worst > limit:
        return False, f"{where}: {kind} difference {worst:.3g} (tolerance {limit:g})"
    if stat_worst:
        return True, f"identical arrays; largest relative difference {stat_worst:.3g} of a statistic at {stat_where}"
    if stage not in _REL and stage not in _ABS:
        return True, "identical"
    return True, f"largest {kind} difference {worst:.3g}" + (f" at {where}" if where else "")


def compare(run: dict, reference: dict, now: dict | None = None) -> dict:
    """The verdict of a run's digests against the reference ones: every stage's check, the first that diverges
    (None: all hold) and the environment differences between the run (else `now`) and the reference's."""
    checks = []
    versions = run.get("digests_version"), reference.get("digests_version")
    if versions[0] != versions[1]:  # another digest layout: stage entries would differ in form, not in content
        checks.append({"stage": "digests", "same": False, "tolerance": "the same digest version",
                       "detail": f"this run's digests are version {versions[0]}, the reference's {versions[1]}: "
                                 f"compare with a reference written by this version (cezsar verify --write)"})
    for stage in STAGES:
        if stage not in run.get("stages", {}) or stage not in reference.get("stages", {}):
            continue
        same, detail = compare_stage(stage, run["stages"][stage], reference["stages"][stage])
        checks.append({"stage": stage, "same": same, "detail": detail, "tolerance": TOLERANCES[stage]})
    first = next((c for c in checks if not c["same"]), None)
    env = run.get("environment") or now
    return {"same": first is None, "first_divergence": first, "checks": checks,
            "environment_differences": environment.differences(env, reference.get("environment"))}


def verdict_text(verdict: dict) -> str:
    """The verdict as a few lines of text (the command's output, the report's section)."""
    lines = [f"reference: {verdict['reference']} ({verdict.get('reference_role', 'the committed run')})"
             ] if verdict.get("reference") else []
    for c in verdict["checks"]:
        lines.append(f"{'ok  ' if c['same'] else 'DIFF'} {c['stage']:<12} {c['detail']} [{c['tolerance']}]")
    first = verdict["first_divergence"]
    if first is None:
        lines.append("verdict: every stage matches the reference digests")
    else:
        lines.append(f"verdict: the run diverges first at stage '{first['stage']}': {first['detail']}")
    diffs = verdict["environment_differences"]
    lines.append("environment differences that might explain it: " + ("; ".join(diffs) if diffs else "none recorded")
                 if first else "environment differences: " + ("; ".join(diffs) if diffs else "none"))
    return "\n".join(lines)


def early_check(lay: Layout, s: Settings, reference: str | Path | None = None):
    """Notebook 00: before anything is computed, this machine's environment and the generated data against the
    reference run's (`references.choose`: the committed run, or the one of this machine's training kernels); the
    full verdict comes at the end of the run (the report)."""
    from IPython.display import Markdown  # lazy: IPython, only in a notebook (verify runs without it)

    now = environment.record(str(s.device))
    ref_path = Path(reference) if reference else references.choose(s.params_file, now)
    lines = [f"**This machine:** {environment.short(now)}", ""]
    if not ref_path.is_file():
        return Markdown("\n".join(lines + [f"No committed digests for this parameter set ({ref_path.name}): "
                                           "nothing to compare with."]))
    ref = json.loads(ref_path.read_text())
    who = references.role(ref_path, s.params_file)
    title = who.removeprefix("the ").capitalize()
    lines += [f"**{title} ({ref_path.name}):** {environment.short(ref.get('environment'))}", ""]
    diffs = environment.differences(now, ref.get("environment"))
    lines.append("**Environment differences:** " + ("; ".join(diffs) if diffs else "none") + "")
    lines.append("")
    same, detail = compare_stage("data", data_digest(lay.data_root), ref.get("stages", {}).get("data"))
    lines.append(f"**Generated data:** {'identical to' if same else 'differs from'} that of {who} ({detail}).")
    return Markdown("\n".join(lines))
