"""SynthActions: the embedded dataset, generated offline from a seed in the real formats (docs/decisions.md §6).

Actors are real photographs shipped with scikit-image (a tabby cat, a coffee cup, a cameraman behind a
tripod, a moped) so that the ImageNet object branch (Eq. 9) recognises real objects; they are drawn large
(longer side >= ~0.5 of the 160-px frame, mostly ~0.8-1.0) because EfficientNet-Lite0 at 160 px only
recognises big objects. Actions are motions a 1-frame-per-second stack shows (grow, shrink, rise, fall,
appear, vanish, slide left/right) on a fixed asymmetric scene (sky top, ground bottom, brick wall on the
left third), because pooled CNN features are nearly mirror-invariant otherwise.

Zero-shot by construction: the 32 (actor, action) pairs are split so that every actor and every action is
captioned in training, while the test classes are exactly the pairs never captioned; class names and
description sentences use other word forms than the captions (checked in `generate`).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import re
import string
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import av
import numpy as np
import skimage.data as skd
from PIL import Image

from cezsar.atomic import write_json, write_text
from cezsar.datasets import kinetics_clip_name, normalize_class

SIDE = 160  # frame side in pixels (docs/decisions.md §6: EfficientNet-Lite0 at 160 px)
FPS = 5  # encoded frame rate; the pipeline decodes 1 frame/s, the rest only makes the clips watchable
SIZES = {  # training videos (3 segments each), clips per UCF class, clips per Kinetics class
    "small": {"train_videos": 6, "ucf_clips": 1, "kinetics_clips": 1},
    "default": {"train_videos": 150, "ucf_clips": 10, "kinetics_clips": 10},
}


@dataclass(frozen=True)
class Actor:
    image: str  # skimage.data loader
    synonyms: tuple[str, ...]  # caption words
    ucf: str  # UCF-style class noun (CamelCase part)
    kinetics: str  # Kinetics-style class noun
    described: str  # description phrase (close to the ImageNet class, for the object branch)


@dataclass(frozen=True)
class Action:
    phrases: tuple[str, ...]  # caption verb phrases (3rd person present)
    ucf: str  # UCF gerund (CamelCase)
    kinetics: str  # Kinetics gerund phrase
    described: str  # description verb phrase


ACTORS = {
    "cat": Actor("chelsea", ("cat", "kitten", "tabby", "kitty", "tabby cat"), "Kitten", "kitty",
                 "a tabby cat, a small furry pet with striped fur,"),
    "cup": Actor("coffee", ("cup", "coffee cup", "mug", "cup of coffee", "espresso cup"), "Mug", "coffee mug",
                 "a cup of espresso coffee on a saucer"),
    "cameraman": Actor("camera", ("cameraman", "photographer", "man with a camera", "man behind a tripod"),
                       "Photographer", "cameraman", "a photographer standing behind a camera on a tripod"),
    "moped": Actor("motorcycle", ("moped", "scooter", "motorbike", "motor scooter"), "Scooter", "moped",
                   "a moped, a small motor scooter,"),
}
ACTIONS = {
    "grow": Action(("grows", "gets bigger", "expands", "swells", "grows larger", "increases in size"),
                   "Swelling", "swelling", "grows larger and larger until it fills the whole frame"),
    "shrink": Action(("shrinks", "gets smaller", "contracts", "dwindles", "decreases in size"),
                     "Shrinking", "shrinking", "shrinks and becomes smaller and smaller"),
    "rise": Action(("rises", "moves up", "floats upward", "goes up", "climbs upward"),
                   "Rising", "rising", "moves upward from the ground towards the sky"),
    "fall": Action(("falls", "drops down", "moves down", "sinks", "goes down"),
                   "Falling", "falling", "drops downward from the sky towards the ground"),
    "appear": Action(("appears", "shows up", "comes into view", "pops into view", "materializes"),
                     "Appearing", "appearing", "appears in an empty scene and then stays in view"),
    "vanish": Action(("vanishes", "disappears", "fades away", "goes out of view", "is gone"),
                     "Vanishing", "vanishing", "is visible at first and then disappears, leaving an empty scene"),
    "left": Action(("slides to the left", "moves left", "drifts leftward", "glides to the left",
                    "moves toward the wall"), "SlidingLeft", "sliding (to the left)",
                   "slides sideways to the left, towards the brick wall"),
    "right": Action(("slides to the right", "moves right", "drifts rightward", "glides to the right",
                     "moves away from the wall"), "SlidingRight", "sliding (to the right)",
                    "slides sideways to the right, away from the brick wall"),
}
TEMPLATES = (
    "A {actor} {action}.", "The {actor} {action}.", "Then the {actor} {action}.",
    "We see a {actor} that {action}.", "In the scene, a {actor} {action}.",
    "The {actor} {action} in front of the wall.", "Next, the {actor} {action} slowly.",
    "A {actor} in the picture {action}.", "After that a {actor} {action}.",
)


def split_combos() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training, test) (actor, action) pairs: actor i is captioned with 4 of the 8 actions.

    Pair (i, j) is captioned when (j + 2i) mod 8 < 4, so each action is captioned with 2 actors and each
    actor with 4 actions; the other 16 pairs are the unseen test classes.
    """
    train, test = [], []
    for i, actor in enumerate(ACTORS):
        for j, action in enumerate(ACTIONS):
            (train if (j + 2 * i) % len(ACTIONS) < 4 else test).append((actor, action))
    return train, test


def class_names(style: str, combos: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Test class name -> (actor, action): UCF "KittenAppearing", Kinetics "appearing kitty"."""
    if style == "ucf101":
        return {f"{ACTORS[a].ucf}{ACTIONS[b].ucf}": (a, b) for a, b in combos}
    names = {}
    for a, b in combos:
        verb, _, rest = ACTIONS[b].kinetics.partition(" ")
        names[" ".join(filter(None, [verb, ACTORS[a].kinetics, rest]))] = (a, b)
    return names


def descriptions(combo: tuple[str, str]) -> list[str]:
    """Two description sentences of an (actor, action) class (our analogue of the paper's class sentences)."""
    actor, action = ACTORS[combo[0]], ACTIONS[combo[1]]
    return [f"This video shows {actor.described} that {action.described}.",
            f"Here {actor.described} {action.described}."]


def caption(rng: np.random.Generator, combo: tuple[str, str]) -> str:
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    actor = ACTORS[combo[0]].synonyms[rng.integers(len(ACTORS[combo[0]].synonyms))]
    action = ACTIONS[combo[1]].phrases[rng.integers(len(ACTIONS[combo[1]].phrases))]
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", template.format(actor=actor, action=action))


# --- rendering ---------------------------------------------------------------------------------------------
def _photos() -> dict[str, np.ndarray]:
    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a

    photos = {"chelsea": skd.chelsea(), "coffee": skd.coffee(), "camera": rgb(skd.camera()),
              "motorcycle": skd.stereo_motorcycle()[0]}
    textures = {name: getattr(skd, name)() for name in ("grass", "brick", "gravel")}
    return {**photos, **textures}


class Renderer:
    """Draws frames: a scene varied per video (texture offsets, tint) and one actor placed by an action."""

    def __init__(self) -> None:
        self._Image = Image
        self.images = _photos()
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    def scene(self, rng: np.random.Generator) -> np.ndarray:
        def tex(name: str, h: int, w: int, tint: tuple[float, float, float]) -> np.ndarray:
            t = self.images[name]
            y, x = rng.integers(0, t.shape[0] - h), rng.integers(0, t.shape[1] - w)
            patch = t[y:y + h, x:x + w, None].astype(np.float32) / 255.0  # (h, w, 1)
            return patch * np.asarray(tint, np.float32) * rng.uniform(0.85, 1.15)

        frame = np.empty((SIDE, SIDE, 3), np.float32)
        sky = np.linspace(0.55, 0.9, 48, dtype=np.float32)[:, None, None]  # (48, 1, 1) brighter downwards
        frame[:48] = sky * np.asarray([0.55, 0.75, 1.0], np.float32) * 255
        frame[48:112] = tex("gravel", 64, SIDE, (200, 190, 170))
        frame[112:] = tex("grass", 48, SIDE, (110, 200, 90))
        frame[:112, :53] = tex("brick", 112, 53, (230, 120, 90))  # the wall makes the layout asymmetric
        return np.clip(frame, 0, 255).astype(np.uint8)

    def actor(self, image: str, longer: int) -> np.ndarray:
        key = (image, longer)
        if key not in self._cache:
            src = self.images[image]
            h, w = src.shape[:2]
            scale = longer / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            self._cache[key] = np.asarray(self._Image.fromarray(src).resize(size, self._Image.BILINEAR))
        return self._cache[key]

    def draw(self, bg: np.ndarray, image: str, longer: float, cx: float, cy: float, alpha: float) -> np.ndarray:
        """`bg` with the actor of longer side `longer` (fraction of the frame) centred at (cx, cy), blended by alpha."""
        frame = bg.copy()
        if alpha <= 0:
            return frame
        act = self.actor(image, int(round(longer * SIDE)))
        h, w = act.shape[:2]
        y0, x0 = int(round(cy * SIDE - h / 2)), int(round(cx * SIDE - w / 2))
        fy0, fx0, fy1, fx1 = max(y0, 0), max(x0, 0), min(y0 + h, SIDE), min(x0 + w, SIDE)
        if fy1 <= fy0 or fx1 <= fx0:
            return frame
        patch = act[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
        if alpha >= 1:
            frame[fy0:fy1, fx0:fx1] = patch
        else:
            region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
            frame[fy0:fy1, fx0:fx1] = (alpha * patch + (1 - alpha) * region).round().astype(np.uint8)
        return frame


def pose(action: str, p: float, jitter: np.ndarray) -> tuple[float, float, float, float]:
    """(longer side, cx, cy, alpha) of the actor at progress p in [0, 1] of an action; jitter (4,) in [-1, 1]."""
    size, cx, cy = 0.85 + 0.05 * jitter[0], 0.55 + 0.04 * jitter[1], 0.5 + 0.04 * jitter[2]
    p = min(max(p * (1 + 0.1 * jitter[3]), 0.0), 1.0)  # per-clip speed
    ease = p * p * (3 - 2 * p)  # smoothstep: still at both ends, so a window never starts mid-jump
    if action == "grow":
        return 0.5 + 0.5 * ease, cx, cy, 1.0
    if action == "shrink":
        return 1.0 - 0.5 * ease, cx, cy, 1.0
    if action == "rise":
        return size, cx, 0.78 - 0.5 * ease, 1.0
    if action == "fall":
        return size, cx, 0.28 + 0.5 * ease, 1.0
    if action == "left":
        return size, 0.75 - 0.45 * ease, cy, 1.0
    if action == "right":
        return size, 0.3 + 0.45 * ease, cy, 1.0
    if action == "appear":
        return size, cx, cy, min(max((p - 0.3) / 0.15, 0.0), 1.0)
    if action == "vanish":
        return size, cx, cy, 1.0 - min(max((p - 0.55) / 0.15, 0.0), 1.0)
    raise ValueError(f"unknown action {action!r}")


def render(renderer: Renderer, seed: int, duration: float, segments: list[tuple[float, float, tuple[str, str]]]
           ) -> np.ndarray:
    """All frames (N, SIDE, SIDE, 3) uint8 at FPS of one video; outside segments the scene is empty."""
    rng = np.random.default_rng(seed)
    bg = renderer.scene(rng)
    jitters = rng.uniform(-1, 1, (len(segments), 4))
    frames = []
    for i in range(int(round(duration * FPS))):
        t = i / FPS
        frame = bg
        for (start, end, (actor, action)), jit in zip(segments, jitters):
            if start <= t < end:
                frame = renderer.draw(bg, ACTORS[actor].image, *pose(action, (t - start) / (end - start), jit))
        frames.append(frame)
    return np.stack(frames)  # (N, H, W, 3)


def _yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB (N, H, W, 3) uint8 -> planar YUV 4:2:0 (N, H * 3 // 2, W) uint8, BT.601 limited range.

    The integer BT.601 formulas swscale uses for rgb24 -> yuv420p, applied to the whole stack at once
    because per-frame swscale calls cost more than the encoding itself.
    """
    n, h, w, _ = frames.shape
    r, g, b = (frames[..., c].astype(np.int32) for c in range(3))  # (N, H, W) each
    out = np.empty((n, h * 3 // 2, w), np.uint8)
    out[:, :h] = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    # chroma from 2x2 sums of RGB (the transform is linear, so this equals averaging U and V)
    r4, g4, b4 = (c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2] for c in (r, g, b))
    u = ((-38 * r4 - 74 * g4 + 112 * b4 + 512) >> 10) + 128  # (N, H/2, W/2)
    v = ((112 * r4 - 94 * g4 - 18 * b4 + 512) >> 10) + 128
    out[:, h:h + h // 4] = u.reshape(n, h // 4, w)  # planar U then V, each H/2 x W/2 row-major
    out[:, h + h // 4:] = v.reshape(n, h // 4, w)
    return out


def write_video(path: Path, frames: np.ndarray) -> None:
    """Encode with fixed options (mpeg4, a keyframe every second, bitexact, one thread) so the same frames
    give the same bytes; written to a temp file and renamed (atomic)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    with av.open(str(tmp), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIDE, SIDE, "yuv420p"
        stream.codec_context.gop_size = FPS  # a keyframe per second: cheap exact seeks at 1 fps
        stream.thread_count = 1
        # quantiser 3-5: ~6 kB per second of video, mean abs error ~5/255 (the default rate blurs the actors)
        stream.options = {"qmin": "3", "qmax": "5", "flags": "+bitexact"}
        for planes in _yuv420p(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        container.mux(stream.encode())
    os.replace(tmp, path)


# --- the dataset --------------------------------------------------------------------------------------------
def _ident(rng: np.random.Generator, used: set[str]) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    while True:
        ident = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 11))
        if ident not in used:
            used.add(ident)
            return ident


def _plan(seed: int, size: str) -> tuple[dict, list[tuple[str, int, float, list]]]:
    """Every annotation file's content and the list of videos to render, from the seed alone."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    n = SIZES[size]
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    jobs: list[tuple[str, int, float, list]] = []  # (relative path, render seed, duration, segments)
    train, test = split_combos()
    # every training pair gets at least one caption; the rest are drawn in a seeded order
    slots = [train[k % len(train)] for k in range(3 * n["train_videos"])]
    slots = [slots[k] for k in rng.permutation(len(slots))]
    anet: dict[str, dict] = {}
    for v in range(n["train_videos"]):
        vid = "v_" + _ident(rng, used)
        t, segs, sents = float(rng.uniform(0.5, 2.0)), [], []
        for combo in slots[3 * v:3 * v + 3]:
            start, end = round(t, 2), round(t + rng.uniform(8.0, 10.0), 2)
            segs.append((start, end, combo))
            sents.append(caption(rng, combo))
            t = end + rng.uniform(1.0, 3.0)  # empty scene between segments, as in untrimmed video
        duration = round(segs[-1][1] + rng.uniform(1.0, 2.0), 2)
        anet[vid] = {"duration": duration, "timestamps": [[s, e] for s, e, _ in segs], "sentences": sents}
        jobs.append((f"activitynet/videos/{vid}.mp4", int(rng.integers(2**31)), duration, segs))
    ucf = class_names("ucf101", test)
    testlist = []
    for name, combo in ucf.items():
        for k in range(n["ucf_clips"]):
            clip = f"v_{name}_g{k // 2 + 1:02d}_c{k % 2 + 1:02d}.avi"
            testlist.append(f"{name}/{clip}")
            jobs.append((f"ucf101/{name}/{clip}", int(rng.integers(2**31)), 8.0, [(0.0, 8.0, combo)]))
    # the Kinetics-form set leaves out the sliding pairs: 12 classes, a different protocol from UCF's 16
    kin = class_names("kinetics400", [c for c in test if c[1] not in ("left", "right")])
    rows = []
    for name, combo in kin.items():
        for _ in range(n["kinetics_clips"]):
            ytid, start = _ident(rng, used), int(rng.integers(0, 300))
            rows.append((ytid, f"{name},{ytid},{start},{start + 10},test"))
            jobs.append((f"kinetics400/clips/{kinetics_clip_name(ytid, start, start + 10)}",
                         int(rng.integers(2**31)), 10.0, [(0.0, 10.0, combo)]))
    meta = {"source": "SynthActions (cezsar.synthetic)", "seed": seed, "size": size}
    files = {
        "activitynet/train.json": anet,
        "ucf101/classInd.txt": "".join(f"{i} {name}\n" for i, name in enumerate(ucf, 1)),
        "ucf101/testlist01.txt": "".join(f"{line}\n" for line in testlist),
        "kinetics400/test.csv": "label,youtube_id,time_start,time_end,split\n"
        + "".join(f"{row}\n" for _, row in sorted(rows)),  # sorted by youtube id like the real file
        "descriptions/ucf101.json": {"_meta": meta, **{k: descriptions(c) for k, c in ucf.items()}},
        "descriptions/kinetics400.json": {"_meta": meta, **{k: descriptions(c) for k, c in kin.items()}},
        "groups.json": {"ucf101": _groups(ucf), "kinetics400": _groups(kin)},
        "synthactions.json": {**meta, "train_combos": [list(c) for c in train],
                              "classes": {"ucf101": {k: list(c) for k, c in ucf.items()},
                                          "kinetics400": {k: list(c) for k, c in kin.items()}}},
    }
    return files, jobs


def _groups(names: dict[str, tuple[str, str]]) -> dict[str, list]:
    """Confusable classes for Figs. 1 and 3: same actor with opposite actions (the Horse Riding vs Horse
    Race analogue) and the same action on different actors."""
    by = {combo: name for name, combo in names.items()}
    opposite = {"grow": "shrink", "rise": "fall", "appear": "vanish", "left": "right"}
    pairs = [[by[(a, b)], by[(a, c)]] for (a, b) in by for c in [opposite.get(b)] if (a, c) in by]
    hard = [n for n, (a, b) in names.items() if b in ("appear", "vanish", "grow", "shrink")]
    tsne = [n for n, (a, b) in names.items() if a in ("cat", "cup") and b in ("appear", "vanish")]
    return {"tsne": tsne, "hard": hard, "pairs": pairs}


def check_zero_shot(files: dict) -> None:
    """Raise if a test class name or description sentence occurs in a training caption (docs/decisions.md §6)."""

    captions = [s.lower() for v in files["activitynet/train.json"].values() for s in v["sentences"]]
    joined = "\n".join(captions)
    for key in ("descriptions/ucf101.json", "descriptions/kinetics400.json"):
        for name, sentences in files[key].items():
            if name == "_meta":
                continue
            if normalize_class(name) in joined:
                raise AssertionError(f"test class {name!r} occurs in a training caption")
            for s in sentences:
                if s.lower() in captions:
                    raise AssertionError(f"description {s!r} is a training caption")


def _render_job(job: tuple[str, int, float, list], out: Path) -> None:
    rel, seed, duration, segs = job
    write_video(out / rel, render(_renderer(), seed, duration, segs))


_RENDERER: Renderer | None = None


def _renderer() -> Renderer:
    global _RENDERER  # one per process: the resized-actor cache is reused across videos
    if _RENDERER is None:
        _RENDERER = Renderer()
    return _RENDERER


def generate(out: str | Path, seed: int = 0, size: str = "default", workers: int | None = None) -> dict:
    """Write SynthActions under `out` (docs/decisions.md §6) and return a summary (counts, seconds of video, bytes).

    The same seed gives byte-identical annotation files and identical frames; `workers` processes render
    videos in parallel (each video has its own seed, so the order does not matter).
    """
    out = Path(out)
    files, jobs = _plan(seed, size)
    check_zero_shot(files)
    if (out / "synthactions.json").exists():  # ours from an earlier run: drop clips of another size/seed
        planned = {out / job[0] for job in jobs}
        for folder in ("activitynet/videos", "ucf101", "kinetics400/clips"):
            for p in (out / folder).rglob("*") if (out / folder).is_dir() else []:
                if p.suffix in (".mp4", ".avi") and p not in planned:
                    p.unlink()
    for rel, content in files.items():
        if isinstance(content, str):
            write_text(out / rel, content)
        else:
            write_json(out / rel, content, ensure_ascii=False)
    if workers is None:  # below ~50 videos, starting processes costs more than it saves
        workers = min(2, os.cpu_count() or 1) if len(jobs) > 50 else 1
    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(partial(_render_job, out=out), jobs, chunksize=4)
    else:
        for job in jobs:
            _render_job(job, out)
    parts = {"activitynet": [j for j in jobs if j[0].startswith("activitynet")],
             "ucf101": [j for j in jobs if j[0].startswith("ucf101")],
             "kinetics400": [j for j in jobs if j[0].startswith("kinetics400")]}
    return {
        "out": str(out), "seed": seed, "size": size,
        "videos": {k: len(v) for k, v in parts.items()},
        "seconds": {k: round(sum(j[2] for j in v), 2) for k, v in parts.items()},
        "segments": sum(len(v["sentences"]) for v in files["activitynet/train.json"].values()),
        "classes": {"ucf101": len(files["descriptions/ucf101.json"]) - 1,
                    "kinetics400": len(files["descriptions/kinetics400.json"]) - 1},
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }
