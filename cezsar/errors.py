"""Every error type of the package and the exit codes a `cezsar` command returns for them (docs/errors.md).

A leaf: it imports nothing of cezsar, so any layer may raise these. Each message names the input (option, file,
video id, line), says what is wrong and what to do, on one line; `cezsar.cli.main` prints it as `error: ...`.

Two kinds of bad input at the command boundary, two exit codes:
- `UsageError` (exit 2): the command line cannot be used as given: an option out of range, a path that does not
  exist or is the wrong kind (a folder where a file is expected), a label list that is not one.
- `DataError` (exit 1): the inputs exist but their content is wrong: a corrupt checkpoint or cache, a model that
  does not fit the features, a mining run that yields nothing.
The library's own readers raise their typed errors below (exit 1 unless `USAGE_ERRORS` says 2).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

EXIT_OK = 0  # done (a long job may have skipped items, listed and counted)
EXIT_DATA = 1  # an input's content is wrong, or some items failed
EXIT_USAGE = 2  # the command line cannot be used as given
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)


class InputError(Exception):
    """A bad input named in one line; `exit_code` is what the command returns."""

    exit_code = EXIT_DATA


class UsageError(InputError):
    """The command line cannot be used as given (exit 2)."""

    exit_code = EXIT_USAGE


class DataError(InputError):
    """An input exists but its content cannot be used (exit 1)."""

    exit_code = EXIT_DATA


class CheckpointError(DataError):
    """A checkpoint file that is not a readable, complete CEZSAR checkpoint."""


class ResourceMissing(RuntimeError):
    """An offline resource is absent; the message ends with the exact command that fixes it."""


class TextFileError(ValueError):
    """A text input that cannot be read as text (encoding, a folder, permissions); the message names the file."""


class DatasetError(ValueError):
    """Unreadable dataset input; the message names the file and the item (video id, class, line)."""


class ParameterError(ValueError):
    """A parameter file or value that cannot be used; the message names the file and the key."""


class DiskFullError(OSError):
    """No room for an output (found before writing, or a write that failed with ENOSPC/EDQUOT); one line that
    names the folder or file."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(errno.ENOSPC, message, None if path is None else str(path))
        self.message = message

    def __str__(self) -> str:
        return self.message


class VideoDecodeError(RuntimeError):
    """A video that cannot be decoded; `path` and `reason` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ManifestMismatch(ValueError):
    """Test features made another way than the model's training features; the message is one line."""


class MixedBackbones(ValueError):
    """A feature folder whose stacks come from different backbones; the message names examples of each group."""


class ShardReportsMissing(ValueError):
    """A merge asked for while some shards have no report (not run, still running, or killed)."""


class FeatureError(ValueError):
    """A feature file that is unreadable or inconsistent; the message names the file."""


class LabelError(ValueError):
    """A label list that cannot be used (empty, only duplicates, unreadable file): `cezsar.cli` exits 2."""


class CheckpointMismatch(ValueError):
    """A checkpoint whose feature or sentence space does not match the encoders in use."""


# the library's typed errors whose messages already name the input: `cezsar.cli` prints them as they are, exit 1
LIBRARY_ERRORS: tuple[type[Exception], ...] = (DatasetError, VideoDecodeError, ResourceMissing, DiskFullError,
                                              ParameterError, TextFileError, ManifestMismatch, FeatureError,
                                              LabelError, CheckpointMismatch)
# of those, the ones that say the command line was wrong (a label list that is not one): exit 2
USAGE_ERRORS: tuple[type[Exception], ...] = (LabelError,)
