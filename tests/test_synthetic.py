"""SynthActions: zero-shot by construction, deterministic, readable by the project's own readers."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from cezsar import cli
from cezsar.formats.captions import read_activitynet
from cezsar.formats.datasets import load_dataset, normalize_class, read_descriptions
from cezsar.formats.synthetic import _plan, generate
from cezsar.formats.synthetic_world import ACTIONS, ACTORS
from cezsar.encoders.video import decode_1fps

ANNOTATIONS = ["activitynet/train.json", "ucf101/classInd.txt", "ucf101/testlist01.txt", "kinetics400/test.csv",
               "descriptions/ucf101.json", "descriptions/kinetics400.json", "groups.json", "synthactions.json"]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict, float]:
    out = tmp_path_factory.mktemp("synth") / "a"
    start = time.perf_counter()
    summary = generate(out, seed=3, size="small", workers=1)
    return out, summary, time.perf_counter() - start


def mentions(sentence: str, phrases) -> bool:
    return any(re.search(rf"\b{re.escape(p)}\b", sentence.lower()) for p in phrases)


def captioned_pairs(captions: list[str]) -> set[tuple[str, str]]:
    """(actor, action) of every caption, read back from its words alone."""
    pairs = set()
    for s in captions:
        actors = [a for a, spec in ACTORS.items() if mentions(s, spec.synonyms)]
        actions = [b for b, spec in ACTIONS.items() if mentions(s, spec.phrases)]
        assert len(actors) == 1 and len(actions) == 1, (s, actors, actions)
        pairs.add((actors[0], actions[0]))
    return pairs


def test_zero_shot_by_construction(small):
    out, _, _ = small
    captions = [s.sentence for s in read_activitynet(out / "activitynet/train.json").segments]
    seen = captioned_pairs(captions)
    assert {a for a, _ in seen} == set(ACTORS) and {b for _, b in seen} == set(ACTIONS)
    manifest = json.loads((out / "synthactions.json").read_text())
    lowered = "\n".join(c.lower() for c in captions)
    for kind in ("ucf101", "kinetics400"):
        data = load_dataset(kind, out / kind)
        classes = {normalize_class(k): tuple(v) for k, v in manifest["classes"][kind].items()}
        assert sorted(classes) == sorted(data.classes)
        assert 10 <= len(classes) <= 16
        for name, pair in classes.items():
            assert pair not in seen, f"{kind} class {name} is a captioned pair {pair}"
            assert name not in lowered, f"{kind} class name {name!r} occurs in a caption"
        desc = read_descriptions(out / "descriptions" / f"{kind}.json")
        assert sorted(desc) == sorted(classes)
        for name, sentences in desc.items():
            for s in sentences:
                assert s.lower() not in {c.lower() for c in captions}
                # the description names the class's actor and action in caption-like words
                assert mentions(s, ACTORS[classes[name][0]].synonyms)


def test_every_part_reads_without_problems(small):
    out, summary, _ = small
    cap = read_activitynet(out / "activitynet/train.json")
    assert cap.problems == {}
    assert len(cap.durations) == summary["videos"]["activitynet"]
    for vid, duration in cap.durations.items():
        assert re.fullmatch(r"v_[A-Za-z0-9_-]{11}", vid)
        assert (out / "activitynet/videos" / f"{vid}.mp4").is_file()
    for kind in ("ucf101", "kinetics400"):
        data = load_dataset(kind, out / kind)
        assert data.problems == {}
        assert all(v.path is not None and v.path.is_file() for v in data.videos)
        groups = json.loads((out / "groups.json").read_text())[kind]
        assert len(groups["tsne"]) == 4 and 8 <= len(groups["hard"]) <= 12
        names = {normalize_class(n) for n in groups["tsne"] + groups["hard"] + sum(groups["pairs"], [])}
        assert names <= set(data.classes)
    for args in (["activitynet", out / "activitynet/train.json"], ["ucf101", out / "ucf101"],
                 ["kinetics400", out / "kinetics400"], ["descriptions", out / "descriptions/ucf101.json"]):
        assert cli.main(["check-data", str(args[0]), str(args[1]), "--json"]) == 0


def test_videos_decode_at_one_fps_with_the_action_visible(small):
    out, _, _ = small
    cap = read_activitynet(out / "activitynet/train.json")
    vid, duration = next(iter(cap.durations.items()))
    frames = decode_1fps(out / "activitynet/videos" / f"{vid}.mp4")
    assert frames.shape == (int(duration), 160, 160, 3) and frames.dtype == np.uint8
    ucf = load_dataset("ucf101", out / "ucf101")
    clip = {v.label: v.path for v in ucf.videos}
    appear = decode_1fps(clip[normalize_class("KittenAppearing")]).astype(np.float32)  # (8, H, W, 3)
    vanish = decode_1fps(clip[normalize_class("KittenVanishing")]).astype(np.float32)
    assert appear.shape == vanish.shape == (8, 160, 160, 3)
    # appear: empty scene first, the cat later; vanish the other way round
    change_appear = np.abs(appear[-1] - appear[0]).mean()
    assert change_appear > 20 and np.abs(appear[1] - appear[0]).mean() < 8
    assert np.abs(vanish[-1] - vanish[-2]).mean() < 8 and np.abs(vanish[0] - vanish[-1]).mean() > 20


def test_same_seed_same_bytes_and_frames(small, tmp_path):
    out, _, _ = small
    again = tmp_path / "b"
    generate(again, seed=3, size="small", workers=2)  # other process layout, same result
    for rel in ANNOTATIONS:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    videos = sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".mp4", ".avi"))
    assert videos == sorted(p.relative_to(again) for p in again.rglob("*") if p.suffix in (".mp4", ".avi"))
    for rel in videos[:: max(1, len(videos) // 5)]:
        assert np.array_equal(decode_1fps(out / rel), decode_1fps(again / rel)), rel
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    other, _ = _plan(4, "small")  # another seed: other captions (annotations only; no need to render)
    assert other["activitynet/train.json"] != json.loads((out / "activitynet/train.json").read_text())


def test_small_size_and_time(small):
    out, summary, seconds = small
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size == summary["bytes"] and size < 10e6
    assert seconds < 60  # a few seconds on an idle machine; generous for a shared CI runner
    assert summary["videos"] == {"activitynet": 6, "ucf101": 16, "kinetics400": 12}
