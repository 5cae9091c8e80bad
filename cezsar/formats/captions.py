"""ActivityNet Captions (paper §3.4's training data) into typed records: one file, or several read as one corpus.

`{"v_<ytid>": {"duration": s, "timestamps": [[start, end], …], "sentences": […]}}` (docs/decisions.md §4). Real
quirks (timestamps past the duration, reversed or zero-length segments, stray spaces, duplicates) are repaired or
kept and counted in `problems` with a few `examples`, never dropped silently; unreadable input raises
`DatasetError` naming the file and the video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from cezsar.formats.datasets import MAX_EXAMPLES, load_json, parse_number, Problems
from cezsar.errors import DatasetError


@dataclass(frozen=True)
class Segment:
    video_id: str
    start: float  # seconds
    end: float  # seconds
    sentence: str


@dataclass(frozen=True)
class Captions:
    segments: list[Segment]
    durations: dict[str, float]  # video id -> seconds
    problems: dict[str, int]
    examples: dict[str, list[str]]
    provenance: dict = field(default_factory=dict)  # {"file", "dataset"}: what a model trained on them saw


def captions_provenance(path: str | Path) -> dict:
    """{"file", "dataset"} of a captions file: "SynthActions (synthetic clips)" when it lies in a folder
    written by `cezsar synth` (its synthactions.json marker), else "captions <file name>"."""
    path = Path(path)
    synthetic = any((d / "synthactions.json").is_file() for d in (path.parent, path.parent.parent))
    return {"file": path.name, "dataset": "SynthActions (synthetic clips)" if synthetic else f"captions {path.name}"}


def read_activitynet(path: str | Path) -> Captions:
    """ActivityNet Captions `{"v_id": {"duration", "timestamps", "sentences"}}` (paper §3.4 training data).

    Repairs (counted): timestamps past the duration or below 0 are clipped, reversed segments swapped,
    surrounding whitespace stripped, empty sentences dropped. Kept (counted): zero-length segments,
    duplicate sentences within a video. Dropped (counted): a video whose duration is NaN, infinite or
    negative ("bad_duration"), a segment with a NaN or infinite timestamp ("bad_timestamp").
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object of videos, got {type(data).__name__}")
    probs = Problems()
    segments: list[Segment] = []
    durations: dict[str, float] = {}
    for vid, entry in data.items():
        where = f"{path}: video {vid}"
        if not isinstance(entry, dict):
            raise DatasetError(f"{where}: expected an object, got {type(entry).__name__}")
        missing = [k for k in ("duration", "timestamps", "sentences") if k not in entry]
        if missing:
            raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}")
        duration = parse_number(entry["duration"], f"{where} duration")
        stamps, sents = entry["timestamps"], entry["sentences"]
        if not isinstance(stamps, list) or not isinstance(sents, list) or len(stamps) != len(sents):
            raise DatasetError(f"{where}: timestamps and sentences must be lists of one length, got "
                               f"{stamps!r:.40} and {sents!r:.40}")
        if not math.isfinite(duration) or duration < 0:  # JSON readers accept NaN/Infinity literals
            probs.add("bad_duration", f"{vid}: duration {duration!r}; video and its {len(sents)} segment(s) dropped")
            continue
        durations[vid] = duration
        seen: set[str] = set()
        for i, (stamp, sent) in enumerate(zip(stamps, sents)):
            item = f"{vid} #{i}"
            if not isinstance(stamp, list) or len(stamp) != 2:
                raise DatasetError(f"{where}: timestamp #{i} must be [start, end], got {stamp!r}")
            if not isinstance(sent, str):
                raise DatasetError(f"{where}: sentence #{i} must be a string, got {type(sent).__name__}")
            start, end = (parse_number(t, f"{where} timestamp #{i}") for t in stamp)
            if not (math.isfinite(start) and math.isfinite(end)):
                probs.add("bad_timestamp", f"{item}: [{start}, {end}] dropped")
                continue
            text = sent.strip()
            if not text:
                probs.add("empty_sentence", f"{item}: {sent!r} dropped")
                continue
            if text != sent:
                probs.add("whitespace_stripped", f"{item}: {sent[:40]!r}")
            if start > end:
                probs.add("reversed", f"{item}: [{start}, {end}] swapped")
                start, end = end, start
            if start < 0:
                probs.add("negative_time", f"{item}: start {start} clipped to 0")
                start = 0.0
            if end > duration:
                probs.add("past_duration", f"{item}: [{start}, {end}] clipped to duration {duration}")
                start, end = min(start, duration), duration
            if end <= start:
                probs.add("zero_length", f"{item}: [{start}, {end}] kept")
            if text in seen:
                probs.add("duplicate_sentence", f"{item}: {text[:40]!r} kept")
            seen.add(text)
            segments.append(Segment(vid, start, end, text))
    return Captions(segments, durations, dict(probs.counts), dict(probs.examples), captions_provenance(path))


def read_activitynet_files(paths: str | Path | Iterable[str | Path]) -> Captions:
    """Several ActivityNet Captions files read as one corpus (the released code trained on train + val_1 +
    val_2). One path, a list of paths, or a comma-separated string of them.

    val_1 and val_2 annotate the same videos twice: a video found in several files keeps every segment,
    except a (start, end, sentence) already seen, which is counted as `duplicate_across_files` and kept
    once; durations that disagree between files are an error naming both files.
    """
    if isinstance(paths, (str, Path)):
        paths = [p.strip() for p in str(paths).split(",") if p.strip()]
    paths = [Path(p) for p in paths]
    if not paths:
        raise DatasetError("no ActivityNet Captions file given")
    if len(paths) == 1:
        return read_activitynet(paths[0])
    probs = Problems()
    segments: list[Segment] = []
    durations: dict[str, float] = {}
    origin: dict[str, Path] = {}
    seen: set[tuple[str, float, float, str]] = set()
    for path in paths:
        caps = read_activitynet(path)
        for name, n in caps.problems.items():
            probs.counts[name] += n
            probs.examples[name].extend(caps.examples.get(name, [])[:max(0, MAX_EXAMPLES - len(probs.examples[name]))])
        for vid, d in caps.durations.items():
            if vid in durations and abs(durations[vid] - d) > 0.5:
                raise DatasetError(f"video {vid}: duration {durations[vid]} in {origin[vid]} but {d} in {path}")
            durations.setdefault(vid, d)
            origin.setdefault(vid, path)
        for seg in caps.segments:
            key = (seg.video_id, seg.start, seg.end, seg.sentence)
            if key in seen:
                probs.add("duplicate_across_files", f"{seg.video_id}: {seg.sentence[:40]!r} in {path.name}")
                continue
            seen.add(key)
            segments.append(seg)
    return Captions(segments, durations, dict(probs.counts), dict(probs.examples))
