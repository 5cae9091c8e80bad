"""Readers of the class-labelled datasets (UCF-101, HMDB-51, Kinetics-400), class names, descriptions and split
files (docs/decisions.md §4) into small typed records; the ActivityNet Captions reader is `cezsar.formats.captions`.

Real annotation quirks (captions past the video's end, reversed segments, leading spaces, duplicates)
are kept or repaired explicitly and counted in `problems` with a few `examples`, never dropped silently.
Unreadable input (malformed JSON/CSV, missing keys, wrong types, unknown class) raises `DatasetError`
naming the file and the item."""
from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cezsar.errors import DatasetError
from cezsar.base.textio import loads_json, read_text

KINDS = ("ucf101", "hmdb51", "kinetics400")
MAX_EXAMPLES = 3


@dataclass(frozen=True)
class Video:
    video_id: str
    path: Path | None  # None when the file is absent (annotation-only copy)
    label: str  # normalised class


@dataclass(frozen=True)
class Split:
    training: list[str]  # normalised classes, file order, duplicates removed (and counted)
    testing: list[str]
    problems: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ClassDataset:
    kind: str  # ucf101 | hmdb51 | kinetics400
    classes: list[str]  # normalised, official order
    videos: list[Video]
    problems: dict[str, int]
    examples: dict[str, list[str]]


class Problems:
    """Counts quirks by name and keeps the first few examples of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, name: str, example: str) -> None:
        self.counts[name] += 1
        if len(self.examples[name]) < MAX_EXAMPLES:
            self.examples[name].append(example)


# --- class names -----------------------------------------------------------------------------------
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def normalize_class(name: str) -> str:
    """One class-name form for every dataset (docs/decisions.md §4): lower case words, single spaces.

    "ApplyEyeMakeup", "apply_eye_makeup", "Apply Eye Makeup" -> "apply eye makeup"; Kinetics keeps its
    parentheses: "Skiing (not slalom or crosscountry)" -> "skiing (not slalom or crosscountry)".
    """
    text = _CAMEL.sub(" ", name.replace("_", " "))
    text = re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", text))
    return " ".join(text.split()).lower()


def _loose_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


class _ClassIndex:
    """Maps raw names onto a dataset's classes; falls back to letters and digits only when unambiguous
    (UCF's "HandStandPushups" files vs "HandstandPushups" in classInd.txt; the authors' Kinetics split
    drops parentheses: "hurling sport")."""

    def __init__(self, classes: Iterable[str], source: str) -> None:
        self.classes, self.source = list(classes), source
        keys = [_loose_key(c) for c in self.classes]
        self._loose = {k: c for k, c in zip(keys, self.classes) if keys.count(k) == 1}

    def get(self, raw: str) -> str | None:
        key = normalize_class(raw)
        return key if key in self.classes else self._loose.get(_loose_key(key))

    def resolve(self, raw: str, where: str) -> str:
        if (found := self.get(raw)) is None:
            raise DatasetError(f"{where}: unknown class {raw!r} (not among the {len(self.classes)} classes "
                               f"of {self.source})")
        return found


def _unique_classes(raw_names: Iterable[str], where: str) -> list[str]:
    seen: dict[str, str] = {}
    for raw in raw_names:
        key = normalize_class(raw)
        if key in seen:
            raise DatasetError(f"{where}: classes {seen[key]!r} and {raw!r} both normalise to {key!r}")
        seen[key] = raw
    return list(seen)


# --- JSON / CSV helpers --------------------------------------------------------------------------------
def load_json(path: Path):
    """A JSON file (a BOM, CRLF, UTF-16 with its mark read; a key given twice in one object refused naming it)."""
    return loads_json(_read_text(path, "JSON file"), str(path), DatasetError)


def _read_text(path: Path, what: str = "text file") -> str:
    """A text file's content (`cezsar.base.textio`); DatasetError naming it when it is a folder, unreadable or not
    text."""
    return read_text(path, what, DatasetError)


def parse_number(value: object, where: str) -> float:
    """A JSON number as float; a bool, string or null is a DatasetError naming `where` (file and entry)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DatasetError(f"{where}: expected a number, got {value!r}")
    return float(value)


# --- class descriptions and split files -------------------------------------------------------------
def _clean_sentence(text: str) -> str:
    text = text.strip()
    if text.count('"') % 2 == 1:  # a stray quote left at either end (seen in the authors' .txt files)
        text = text.strip('"').strip()
    return text


def read_descriptions(path: str | Path) -> dict[str, list[str]]:
    """Class descriptions (the sentences that stand for unseen classes, paper §3.5), keys normalised.

    Accepts our JSON `{class: [sentence, ...], "_meta": {...}}` (a bare string = one sentence), a plain
    `{class: [sentences]}` JSON, or a folder of `<class>.txt` files (one sentence each).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DatasetError(f"{path}: no <class>.txt description files")
        items = [(f.stem, _read_text(f).splitlines(), str(f)) for f in files]
    else:
        data = load_json(path)
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected an object {{class: [sentences]}}, got {type(data).__name__}")
        items = [(name, [v] if isinstance(v, str) else v, f"{path}: class {name!r}")
                 for name, v in data.items() if name != "_meta"]
    out: dict[str, list[str]] = {}
    for key, (name, sentences, where) in zip(_unique_classes([i[0] for i in items], str(path)), items):
        if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
            raise DatasetError(f"{where}: expected a list of sentences, got {sentences!r:.60}")
        out[key] = [c for c in map(_clean_sentence, sentences) if c]
        if not out[key]:
            raise DatasetError(f"{where}: empty description")
    return out


def read_split(path: str | Path, classes: Iterable[str]) -> Split:
    """A split file `{"training": [...], "testing": [...]}` (authors' form) mapped onto `classes`.

    Every class must resolve; an unknown one raises naming it. Duplicates are removed and counted;
    a class in both lists is kept in both and counted (the authors' hard-cases file has six).
    """
    path = Path(path)
    index = _ClassIndex(classes, "the dataset")
    data = load_json(path)
    if not isinstance(data, dict) or not ({"training", "testing"} & set(data)):
        raise DatasetError(f"{path}: expected an object with 'training' and/or 'testing' lists")
    probs = Problems()
    out: dict[str, list[str]] = {}
    for part in ("training", "testing"):
        names = data.get(part, [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: {part!r} must be a list of class names")
        out[part] = []
        for cls in (index.resolve(raw, f"{path} ({part})") for raw in names):
            if cls in out[part]:
                probs.add(f"duplicate_{part}", cls)
            else:
                out[part].append(cls)
    for cls in set(out["training"]) & set(out["testing"]):
        probs.add("train_test_overlap", cls)
    return Split(out["training"], out["testing"], dict(probs.counts))


# --- class datasets ---------------------------------------------------------------------------------------
def _file_index(folders: Iterable[Path]) -> dict[str, Path]:
    """File name -> path for files in `folders` and their direct subfolders (class folders)."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                for sub in sorted(entry.iterdir()):
                    found.setdefault(sub.name, sub)
            else:
                found.setdefault(entry.name, entry)
    return found


def _finish(kind: str, classes: list[str], videos: list[Video], probs: Problems) -> ClassDataset:
    unique: dict[str, Video] = {}
    for v in videos:
        if v.video_id in unique:
            probs.add("duplicate_video", f"{v.video_id} listed again; kept once")
        elif unique.setdefault(v.video_id, v).path is None:
            probs.add("missing_video", v.video_id)
    used = {v.label for v in unique.values()}
    for cls in (c for c in classes if c not in used):
        probs.add("class_without_videos", cls)
    return ClassDataset(kind, classes, list(unique.values()), dict(probs.counts), dict(probs.examples))


def _read_lines(path: Path) -> list[tuple[int, str]]:
    return [(i, ln.strip()) for i, ln in enumerate(_read_text(path).splitlines(), 1) if ln.strip()]


def _load_ucf101(root: Path) -> ClassDataset:
    probs = Problems()
    if root.is_dir() and not list(root.rglob("classInd.txt")) and (root / "ucf101_dataset.json").exists():
        root = root / "ucf101_dataset.json"
    if root.suffix == ".json":  # the authors' {"apply eye makeup": ["v_ApplyEyeMakeup_g04_c06", ...]}
        data = load_json(root)
        if not isinstance(data, dict):
            raise DatasetError(f"{root}: expected an object {{class: [video ids]}}")
        classes = _unique_classes(data, str(root))
        files = _file_index([root.parent, root.parent / "UCF-101", root.parent / "videos"])
        videos = []
        for cls, (name, ids) in zip(classes, data.items()):
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise DatasetError(f"{root}: class {name!r}: expected a list of video ids")
            videos += [Video(i, files.get(i + ".avi"), cls) for i in ids]
        return _finish("ucf101", classes, videos, probs)
    found = sorted(root.rglob("classInd.txt"))
    if not found:
        raise DatasetError(f"{root}: no classInd.txt (official UCF-101 layout) and no ucf101_dataset.json")
    ind = found[0]
    order = []
    line_of: dict[int, tuple[int, str]] = {}
    for n, line in _read_lines(ind):
        parts = line.split()
        if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()):
            raise DatasetError(f"{ind}: line {n}: expected '<index> <ClassName>', got {line!r}")
        k = int(parts[0])
        if k in line_of:  # two classes on one index: the label order (and every class id) would be ambiguous
            raise DatasetError(f"{ind}: line {n}: index {k} of {parts[1]!r} is already used by "
                               f"{line_of[k][1]!r} (line {line_of[k][0]}); give each class its own index")
        line_of[k] = (n, parts[1])
        order.append((k, parts[1]))
    classes = _unique_classes([name for _, name in sorted(order)], str(ind))
    index = _ClassIndex(classes, str(ind))
    files = _file_index([root, ind.parent, ind.parent.parent, root / "UCF-101"])
    videos = []
    lists = sorted(ind.parent.glob("trainlist*.txt")) + sorted(ind.parent.glob("testlist*.txt"))
    for lst in lists:
        for n, line in _read_lines(lst):
            rel = line.split()[0]
            if "/" not in rel:
                raise DatasetError(f"{lst}: line {n}: expected '<Class>/<video>.avi', got {line!r}")
            folder, name = rel.rsplit("/", 1)
            cls = index.resolve(folder, f"{lst}: line {n}")
            videos.append(Video(Path(name).stem, files.get(name), cls))
    if not lists:
        probs.add("no_split_lists", f"{ind.parent}: videos taken from the class folders")
        videos = [Video(p.stem, p, index.resolve(p.parent.name, str(p))) for name, p in sorted(files.items())
                  if p.suffix == ".avi" and index.get(p.parent.name)]
    return _finish("ucf101", classes, videos, probs)


def _load_hmdb51(root: Path) -> ClassDataset:
    probs = Problems()
    by_split: dict[int, list[Path]] = defaultdict(list)
    for f in root.rglob("*_test_split*.txt"):
        m = re.fullmatch(r"(.+)_test_split(\d+)\.txt", f.name)
        if m:
            by_split[int(m.group(2))].append(f)
    if not by_split:
        raise DatasetError(f"{root}: no <class>_test_split<N>.txt files (official HMDB-51 split lists)")
    lists = sorted(by_split[min(by_split)])  # every split lists all videos; split 1 fixes the set
    raw_names = [f.name.rsplit("_test_split", 1)[0] for f in lists]
    classes = _unique_classes(raw_names, str(lists[0].parent))
    files = _file_index([root, root / "hmdb51", lists[0].parent.parent])
    videos = []
    for lst, cls in zip(lists, classes):
        for n, line in _read_lines(lst):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetError(f"{lst}: line {n}: expected '<video>.avi 0|1|2', got {line!r}")
            videos.append(Video(Path(parts[0]).stem, files.get(parts[0]), cls))
    order = sorted(range(len(classes)), key=lambda i: classes[i])
    return _finish("hmdb51", [classes[i] for i in order], videos, probs)


KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")


def kinetics_clip_name(youtube_id: str, start: int, end: int) -> str:
    """The official downloader's clip name `<ytid>_<start:06d>_<end:06d>.mp4` (docs/decisions.md §4)."""
    return f"{youtube_id}_{start:06d}_{end:06d}.mp4"


def _load_kinetics400(root: Path) -> ClassDataset:
    probs = Problems()
    if root.is_dir():
        csvs = [root / n for n in ("test.csv", "validate.csv", "val.csv", "train.csv") if (root / n).exists()]
        if not csvs:
            raise DatasetError(f"{root}: no test.csv / validate.csv / train.csv")
        root = csvs[0]
    stem = root.stem
    files = _file_index([root.parent / "clips", root.parent / stem, root.parent / {"validate": "val"}.get(stem, stem)])
    text = _read_text(root, "CSV file")
    rows = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in KINETICS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{root}: missing column(s) {', '.join(missing)} (header {reader.fieldnames})")
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise DatasetError(f"{root}: malformed CSV: {err}") from err
    videos = []
    for n, row in rows:
        if any(row.get(c) in (None, "") for c in KINETICS_COLUMNS):
            raise DatasetError(f"{root}: line {n}: empty field in {dict(row)}")
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except (ValueError, OverflowError) as err:  # "x", "nan" (ValueError) or "inf" (OverflowError)
            raise DatasetError(f"{root}: line {n}: time_start/time_end must be finite numbers: {err}") from err
        ytid = row["youtube_id"]
        name = kinetics_clip_name(ytid, start, end)
        path = files.get(name) or files.get(f"v_{ytid}.mp4")
        videos.append(Video(Path(name).stem, path, normalize_class(row["label"])))
    classes = sorted({v.label for v in videos})
    return _finish("kinetics400", classes, videos, probs)


def load_dataset(kind: str, root: str | Path) -> ClassDataset:
    """A class-labelled test dataset in its standard layout (docs/decisions.md §4); `kind` in ucf101, hmdb51, kinetics400.

    `root` is the dataset folder, or for ucf101 the authors' `ucf101_dataset.json`, for kinetics400 a CSV.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    loaders = {"ucf101": _load_ucf101, "hmdb51": _load_hmdb51, "kinetics400": _load_kinetics400}
    if kind not in loaders:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(KINDS)}")
    return loaders[kind](root)
