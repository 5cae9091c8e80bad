"""A label list for `cezsar classify` (paper §3.5: any class named in words is a zero-shot class): labels given as
a file or as "a, b, c", deduplicated in `datasets.normalize_class` form, each with the sentences that stand for
it (its descriptions when a descriptions file covers it, else its own words).

A bare label is its own sentence, in `datasets.normalize_class` form ("HorseRiding" -> "horse riding"), so
CamelCase or snake_case class lists read as words to SBERT. A label covered by a descriptions file uses *all*
its sentences: the prototype is the mean of their L2-normalised embeddings (`prototypes.class_prototypes`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cezsar.formats.datasets import normalize_class, read_descriptions
from cezsar.errors import LabelError
from cezsar.base.textio import read_text




@dataclass
class LabelSet:
    """Labels as the user wrote them (deduplicated), one sentence list per label, and notes for stderr."""

    labels: list[str]
    sentences: list[list[str]]
    source: list[str]  # per label: "descriptions" or "label" (its own text)
    notes: list[str] = field(default_factory=list)


def _normalize(name: str) -> str:
    return normalize_class(name)


# a label that ends like a file name, or a lone item with a path separator, is a label file that is not
# there (a typo, another folder): ranking its name as a label would give confident nonsense
_FILE_LIKE = re.compile(r"\.(txt|text|csv|tsv|json|jsonl|lst|list|labels|ya?ml|md)$", re.IGNORECASE)


def _refuse_missing_file(spec: str) -> None:
    items = [x.strip() for x in spec.split(",") if x.strip()]
    lone = len(items) == 1
    for item in items:
        if _FILE_LIKE.search(item) or (lone and ("/" in item or "\\" in item or item.startswith("~"))):
            raise LabelError(f"--labels {spec}: {item!r} looks like a file name but no such file exists; give an "
                             "existing label file (one label per line) or plain labels \"label a, label b, ...\"")


def parse_labels(spec: str | Sequence[str]) -> tuple[list[str], list[str]]:
    """Labels from a file (one per line; blank lines and `#` comments skipped) or "a, b, c"; or a list.

    Whitespace is trimmed and duplicates (same `normalize_class` form) dropped, the first spelling kept.
    Returns (labels, notes); raises LabelError when fewer than two distinct labels are left.
    """
    if isinstance(spec, str):
        path = Path(spec).expanduser()
        if spec.strip() and path.is_dir():
            raise LabelError(f"--labels {spec}: is a folder; give a label file (one label per line) or "
                             "\"label a, label b, ...\"")
        if not path.is_file():
            _refuse_missing_file(spec)
        if path.is_file():
            try:  # a BOM, CRLF, UTF-16 with its mark: all read (cezsar.base.textio)
                lines = read_text(path, "label file", LabelError).splitlines()
            except LabelError as err:
                raise LabelError(f"{path}: cannot read the label file ({str(err)[len(str(path)) + 2:]})") from None
            where = str(path)
            raw = [ln.strip() for ln in lines]
            raw = [ln for ln in raw if ln and not ln.startswith("#")]
        else:
            where = "--labels"
            raw = [x.strip() for x in spec.split(",")]
            raw = [x for x in raw if x]
    else:
        where = "labels"
        raw = [str(x).strip() for x in spec]
        raw = [x for x in raw if x]
    seen: dict[str, str] = {}
    notes = []
    for label in raw:
        key = _normalize(label)
        if key in seen:
            notes.append(f"warning: duplicate label {label!r} (same as {seen[key]!r}) ignored")
            continue
        seen[key] = label
    labels = list(seen.values())
    if len(labels) < 2:  # ranking needs alternatives: one label would always come first
        if not labels:
            what = "no labels"
        elif len(raw) > 1:
            what = f"only duplicates of {labels[0]!r}"
        else:
            what = f"a single label ({labels[0]!r}) has nothing to be ranked against"
        raise LabelError(f"{where}: {what}; give at least two labels, in a file (one per line) or as "
                         "\"label a, label b, ...\"")
    return labels, notes


def prepare_labels(spec: str | Sequence[str], descriptions: str | Path | Mapping[str, Sequence[str]] | None = None
                   ) -> LabelSet:
    """Parse labels and attach their sentences: a descriptions entry when there is one, else the label itself.

    `descriptions`: a file read by `datasets.read_descriptions` ({class: [sentences], "_meta": ...}) or
    an already read {normalised class: [sentences]} dict.
    """
    labels, notes = parse_labels(spec)
    desc: Mapping[str, Sequence[str]] = {}
    if descriptions is not None:
        if isinstance(descriptions, Mapping):
            desc = {_normalize(k): list(v) for k, v in descriptions.items() if k != "_meta"}
        else:
            desc = read_descriptions(descriptions)
    sentences, source = [], []
    for label in labels:
        found = desc.get(_normalize(label))
        if found:
            sentences.append([str(s) for s in found])
            source.append("descriptions")
        else:
            sentences.append([_normalize(label)])
            source.append("label")
    if descriptions is not None:
        bare = [lab for lab, s in zip(labels, source) if s == "label"]
        if bare:
            notes.append(f"note: {len(bare)} label(s) not in the descriptions use their own text as sentence: "
                         + ", ".join(repr(b) for b in bare[:10]) + (" ..." if len(bare) > 10 else ""))
        unused = len(set(desc) - {_normalize(lab) for lab in labels})
        if unused:
            notes.append(f"note: {unused} description(s) match no label and are not used")
    return LabelSet(labels, sentences, source, notes)
