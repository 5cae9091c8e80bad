"""SynthActions' world (docs/decisions.md §6): its actors (real photographs shipped with scikit-image), its actions
(motions a 1-frame-per-second stack shows), the split of their pairs into captioned training pairs and unseen
test classes, and the words for each: captions, class names in the UCF-101 and Kinetics-400 styles, descriptions.

Zero-shot by construction: the 32 (actor, action) pairs are split so that every actor and every action is
captioned in training, while the test classes are exactly the pairs never captioned; class names and
description sentences use other word forms than the captions (`cezsar.formats.synthetic.check_zero_shot`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


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
    """One training caption of an (actor, action) pair: a template filled with a drawn synonym and phrase."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    actor = ACTORS[combo[0]].synonyms[rng.integers(len(ACTORS[combo[0]].synonyms))]
    action = ACTIONS[combo[1]].phrases[rng.integers(len(ACTIONS[combo[1]].phrases))]
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", template.format(actor=actor, action=action))
