"""The encoders a command names, built here with their problems as one-line errors (docs/errors.md): a frame
encoder (`--backbone`, `--weights`: `backbones.get_encoder`) and a text encoder (`--text-model`:
`text.SentenceEncoder`). A missing offline resource keeps its own message (`ResourceMissing`, with the command
that fixes it)."""
from __future__ import annotations

from typing import Any

from cezsar.encoders.backbones import BACKBONES, get_encoder
from cezsar.base.checks import first_sentence, require_file
from cezsar.encoders.clip import is_clip
from cezsar.errors import DataError, ResourceMissing, UsageError
from cezsar.encoders.text import SentenceEncoder


def text_encoder(name: str, option: str = "--text-model", **kwargs: Any) -> SentenceEncoder:
    """`text.SentenceEncoder(name, **kwargs)`, with a model that cannot be found or loaded as one line.

    An unknown name or a folder that is not a sentence-transformers model -> UsageError; a missing
    offline resource keeps its own message (module doc).
    """
    try:
        return SentenceEncoder(name, **kwargs)
    except ResourceMissing:
        raise
    except (OSError, ValueError, KeyError) as err:
        reason = first_sentence(err)
        raise UsageError(f"{option} {name}: cannot load this sentence model offline ({reason}); use minilm, "
                         "mpnet or a local sentence-transformers folder") from err


def frame_encoder(backbone: str, weights: str | None, option: str = "--weights", **kwargs: Any) -> Any:
    """`backbones.get_encoder(backbone, weights, **kwargs)` with its input problems as one line each."""
    if is_clip(backbone):
        return _clip_encoder(backbone, weights, option, **kwargs)
    if weights is not None:
        require_file(weights, option, "weights file")
    try:
        return get_encoder(backbone, weights, **kwargs)
    except ResourceMissing:
        raise
    except ValueError as err:
        if "unknown backbone" in str(err):
            raise UsageError(f"--backbone {backbone}: unknown; choose one of {', '.join(BACKBONES)} or "
                             "clip:<model id or folder>") from err
        raise DataError(f"{option} {weights}: cannot load it for {backbone} ({err})") from err
    except FileNotFoundError as err:  # a backbone that needs weights, given none
        raise UsageError(f"--backbone {backbone}: {' '.join(str(err).split())}") from err
    except Exception as err:  # torch/numpy raise many types for a file that is not the weights it claims to be
        reason = first_sentence(err)
        raise DataError(f"{option} {weights}: not usable weights for {backbone} ({type(err).__name__}: "
                        f"{reason}); pass the original weights file") from err


def _clip_encoder(backbone: str, weights: str | None, option: str, **kwargs: Any) -> Any:
    """`--backbone clip:<model>`: a model that cannot be had here is a usage error naming what to give instead."""
    if weights is not None:
        raise UsageError(f"{option} {weights}: a CLIP is named by --backbone clip:<hub id or local folder>, not "
                         f"by {option}")
    try:
        return get_encoder(backbone, None, **kwargs)
    except ResourceMissing:
        raise
    except Exception as err:  # transformers raises OSError, ValueError, EnvironmentError... for a model it lacks
        raise UsageError(f"--backbone {backbone}: cannot load this CLIP ({first_sentence(err)}); offline, give a local "
                         "folder holding its config.json and weights (docs/clip.md)") from err
