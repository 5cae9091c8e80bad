"""The fidelity measurement as a table, a plot and a record (figures/fidelity.{json,md,png}; docs/fidelity.md).

Each variant's scores are its mean ± std over training seeds; its Δ against its reference variant is the paired
mean over the seeds both have (model k of each trained with training seed k) with the 95 % t-interval of that
mean (`cezsar.reporting.compare.paired`). A variant that cannot change anything on the data
(`cezsar.harness.fidelity_checks`) gets its reason instead of numbers. The record, figures/fidelity.json, keeps every
(variant, seed) result with the settings that made it (`record_key`: the parameter values, the epochs, the data's
digest, the device kind), so `cezsar.harness.fidelity.measure` continues a measurement from it on any machine.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from cezsar.reporting import compare
from cezsar.base.atomic import write_json, write_text
from cezsar.base.devices import resolve_device
from cezsar.base.environment import kernel_family
from cezsar.harness.digests import data_digest
from cezsar.harness.layout import TEST_SETS
from cezsar.harness.params import stage_configs
from cezsar.reporting.plots import shown_once

# parameter-set keys no (variant, seed) result reads: left out of the record's settings key
NOT_IN_KEY = {"params_file", "run_dir", "figures_dir", "fidelity_seeds", "fidelity_epochs", "epochs", "train_seeds",
              "train_threads", "tau_values", "runs", "demo_labels", "clip_model"}
SCORES = ("ucf101_VE+O", "kinetics400_VE+O", "ucf101_VE", "kinetics400_VE")
SETS = (("ucf101_VE+O", "UCF-form"), ("kinetics400_VE+O", "Kinetics-form"))


def table(results: list[dict], variants: dict[str, tuple[str, dict, str]],
          not_measurable: dict[str, str] | None = None) -> list[dict]:
    """Per variant (in `variants` order): mean ± std (ddof 1) over seeds of each score, and "delta_<score>": the
    paired comparison (`compare.paired`: n, diff, low, high) with its reference over the seeds both have, None
    without a common seed. A variant in `not_measurable` gets {"not_measurable": reason} instead of numbers."""
    not_measurable = not_measurable or {}
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["variant"], []).append(r)
    per_seed = {name: {k: {str(r["seed"]): r[k] for r in rs} for k in SCORES} for name, rs in by.items()}
    rows = []
    for name, (what, _, ref) in variants.items():
        if name in not_measurable:
            rows.append({"variant": name, "what": what, "reference": ref, "not_measurable": not_measurable[name]})
            continue
        if name not in by:
            continue
        row = {"variant": name, "what": what, "reference": ref, "seeds": len(by[name]), "per_seed": per_seed[name]}
        for k in SCORES:
            v = np.array([r[k] for r in by[name]], np.float64)
            row[k] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
            mine, theirs = per_seed[name][k], per_seed.get(ref, {}).get(k, {})
            both = sorted(set(mine) & set(theirs), key=int)
            row[f"delta_{k}"] = (compare.paired([mine[s] for s in both], [theirs[s] for s in both])
                                 if both and ref != name else None)
        rows.append(row)
    return rows


def delta_cell(d: dict | float | None) -> str:
    """"+3.3 (−1.2 … +7.8)": the paired mean and its 95 % interval, in p.p. (a bare number in records made
    before the intervals)."""
    if d is None:
        return "–"
    if not isinstance(d, dict):
        return f"{100 * d:+.1f}"
    if d["low"] is None:
        return f"{100 * d['diff']:+.1f} (1 seed)"
    if d["low"] == d["high"] == 0:  # e.g. VE alone under a switch of the object term: nothing it reads changed
        return "identical on every seed"
    return f"{100 * d['diff']:+.1f} ({100 * d['low']:+.1f} … {100 * d['high']:+.1f})"


def to_markdown(rows: list[dict], settings: dict, not_measured: dict[str, str], pending: list[str] = ()) -> str:
    """The fidelity table as markdown: top-1 (%) of Eq. 9 (VE + O, and VE alone) on every class, and each Δ
    (p.p.) with its 95 % interval; `pending` names the variants an interrupted measurement has not reached."""
    lines = [f"Top-1 accuracy (%) on every class of SynthActions' UCF-form and Kinetics-form test sets, mean ± std "
             f"over the training seeds (up to {settings['seeds']}); Δ = the change against the reference variant "
             f"(\"vs\"), the paired mean over the seeds both have, with its 95 % t-interval in brackets "
             f"(p.p.; `cezsar.reporting.compare`). {settings['note']}", "",
             "| variant | what it switches | UCF VE+O | Δ | Kinetics VE+O | Δ | UCF VE | Δ | Kinetics VE | Δ | vs "
             "| seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "not_measurable" in r:
            lines.append(f"| {r['variant']} | {r['what']} | {r['not_measurable']} |" + " – |" * 7
                         + f" {r['reference']} | – |")
            continue
        cells = [f"{100 * r[k][0]:.1f} ± {100 * r[k][1]:.1f} | {delta_cell(r[f'delta_{k}'])}" for k in SCORES]
        lines.append(f"| {r['variant']} | {r['what']} | " + " | ".join(cells) + f" | {r['reference']} | {r['seeds']} |")
    paired = comparisons(rows)
    if paired:
        lines += ["", "Each variant against its reference, paired by training seed (generated by "
                  "`cezsar.reporting.compare`):", "", *[f"- {x}" for x in paired]]
    if pending:
        command = settings.get("command", "python -m cezsar.harness.fidelity")
        lines += ["", f"Not yet measured ({len(pending)} of {len(pending) + len(rows)} variants; the measurement "
                      f"continues from this record with `{command}`): " + ", ".join(pending) + "."]
    lines += ["", "Not measured here: " + "; ".join(f"{k} ({v})" for k, v in not_measured.items()) + "."]
    return "\n".join(lines) + "\n"


def comparisons(rows: list[dict]) -> list[str]:
    """The paired comparison (`cezsar.reporting.compare.sentence`) of each variant's VE + O top-1 with its reference's,
    over the seeds both have, per test set."""
    by = {r["variant"]: r for r in rows}
    out = []
    for r in rows:
        ref = by.get(r["reference"])
        if ref is None or r is ref or "per_seed" not in r or "per_seed" not in ref:
            continue
        for k, where in SETS:
            mine, theirs = r["per_seed"][k], ref["per_seed"][k]
            both = sorted(set(mine) & set(theirs), key=int)
            if both:
                out.append(compare.sentence(r["variant"], [mine[x] for x in both], r["reference"],
                                            [theirs[x] for x in both], f"{where}, every class, VE + O top-1"))
    return out


def plot(rows: list[dict]):
    """Paired change of the VE + O top-1 against each variant's reference, per test set; whiskers: its 95 %
    interval (none with one seed, or in records made before the intervals)."""
    shown = [r for r in rows if r["variant"] != r["reference"] and "not_measurable" not in r]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(shown) + 1.4))
    y = np.arange(len(shown))
    for off, (k, label) in zip((-0.2, 0.2), SETS):
        d, lo, hi = [], [], []
        for r in shown:
            x = r.get(f"delta_{k}")
            diff = x["diff"] if isinstance(x, dict) else (x or 0.0)
            d.append(100 * diff)
            has = isinstance(x, dict) and x["low"] is not None
            lo.append(100 * (diff - x["low"]) if has else 0.0)
            hi.append(100 * (x["high"] - diff) if has else 0.0)
        ax.barh(y + off, d, height=0.38, xerr=[lo, hi], label=label, capsize=2)
    ax.set_yticks(y, [r["variant"] for r in shown])
    ax.invert_yaxis()
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Δ top-1 (p.p.) against the reference, paired over seeds, with its 95 % interval")
    ax.set_title("What each released-code behaviour costs (VE + O, every class)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return shown_once(fig)


def report(results: list[dict], figures: str | Path, settings: dict, variants: dict, not_measured: dict[str, str],
           not_measurable: dict[str, str] | None = None) -> dict:
    """Write figures/fidelity.{json,md,png} (the json is the record `read_record` continues from); returns
    {"rows", "markdown", "figure"}."""
    figures = Path(figures)
    rows = table(results, variants, not_measurable)
    done = {r["variant"] for r in rows}
    md = to_markdown(rows, settings, not_measured, [v for v in variants if v not in done])
    write_json(figures / "fidelity.json", {"settings": settings, "not_measurable": not_measurable or {},
                                           "rows": rows, "results": results})
    write_text(figures / "fidelity.md", md)
    fig = plot(rows)
    fig.savefig(figures / "fidelity.png", dpi=130)
    return {"rows": rows, "markdown": md, "figure": fig}


def other_settings(figures: str | Path, key: dict) -> str | None:
    """What differs when `<figures>/fidelity.json` records a measurement of other settings than `key` (e.g.
    "epochs 4, not 25"), None when it records these settings or there is no record."""
    path = Path(figures) / "fidelity.json"
    if not path.is_file():
        return None
    was = json.loads(path.read_text()).get("settings", {}).get("key")
    if was == key:
        return None
    if not isinstance(was, dict):
        return "a record without settings key (made before records could be continued)"
    return ", ".join(f"{k} {was.get(k)}, not {v}" for k, v in key.items() if was.get(k) != v)


def read_record(figures: str | Path, key: dict, variants: dict) -> tuple[list[dict], dict[str, str]]:
    """The (variant, seed) results and the not-measurable verdicts of `<figures>/fidelity.json` made with the same
    settings `key` (parameter values, epochs, data, ...) and the same overrides per variant as `variants` has
    now; ([], {}) for a record of other settings or none."""
    path = Path(figures) / "fidelity.json"
    if not path.is_file():
        return [], {}
    data = json.loads(path.read_text())
    if data.get("settings", {}).get("key") != key:
        return [], {}
    same = [r for r in data.get("results", []) if r.get("variant") in variants
            and r.get("overrides") == json.loads(json.dumps(variants[r["variant"]][1]))]
    return same, {k: v for k, v in data.get("not_measurable", {}).items() if k in variants}


def recorded(figures: str | Path) -> dict | None:
    """The recorded measurement (figures/fidelity.json) as {"rows", "markdown", "figure", "settings"}, or None."""
    path = Path(figures) / "fidelity.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    rows = [{**r, **{k: tuple(v) for k, v in r.items() if k in SCORES}} for r in data["rows"]]
    md_file = Path(figures) / "fidelity.md"
    md = md_file.read_text() if md_file.is_file() else to_markdown(rows, data["settings"], {})
    return {"rows": rows, "markdown": md, "figure": plot(rows), "settings": data["settings"]}


# --- the record's settings key ----------------------------------------------------------------------------------
def key_of(*parts: Any) -> str:
    """A short SHA-256 of JSON-serialisable parts (folder names, the parameter-values hash)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_sha256(lay: Any) -> str:
    """The data's digest: embedded mode, every byte of the generated SynthActions (the "data" stage of `cezsar
    verify`); real data, the caption and description files' bytes and the names and sizes of every feature file
    (hashing the raw videos would take hours)."""
    if lay.mode == "embedded":
        d = data_digest(lay.data_root)
        if d is not None:
            return d["sha256"]
    h = hashlib.sha256()
    files = [*lay.captions, *(lay.descriptions[k] for k in TEST_SETS)]
    for f in files:
        for p in sorted(Path(f).rglob("*")) if Path(f).is_dir() else [Path(f)]:
            if p.is_file():
                h.update(p.name.encode() + b"\0" + p.read_bytes())
    for folder in (lay.train_features, *(lay.test_features[k] for k in TEST_SETS)):
        for p in sorted(Path(folder).glob("*.npy")):
            h.update(f"{p.name}\0{p.stat().st_size}\0".encode())
    return h.hexdigest()


def record_key(values: dict, epochs: int, lay: Any) -> dict:
    """The settings a recorded (variant, seed) result must share to count for this measurement: the parameter
    values (less NOT_IN_KEY), the epochs, the data's digest, the device kind (bf16 autocast on CUDA) and the
    machine's kernel family. Each Δ pairs a variant's seed with the paper's same seed, which is only a pairing when
    both trained on one family: across CPU vector units the same seed trains another model."""
    kept = {k: v for k, v in values.items() if k not in NOT_IN_KEY}
    device = resolve_device(stage_configs(values)["train"].device)
    return {"params_sha256": key_of(kept), "epochs": int(epochs), "data_sha256": data_sha256(lay),
            "device": device.type, "kernels": kernel_family(device)}
