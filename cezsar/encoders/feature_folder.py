"""A feature folder a command names (`--features`), opened with its problems as one-line errors (docs/errors.md)."""
from __future__ import annotations

import os

from cezsar.base.checks import read_json_file, require_dir
from cezsar.errors import DataError, MixedBackbones
from cezsar.errors import FeatureError
from cezsar.encoders.features import FeatureStore
from cezsar.encoders.stack_origin import check_one_backbone


def feature_folder(path: str | os.PathLike, option: str = "--features", objects: str | os.PathLike | None = None,
                   objects_option: str = "--objects", declared_manifest: str | None = None) -> FeatureStore:
    """Open a feature folder (`features.FeatureStore`) with its problems as one-line errors; `objects` is a
    separate objects folder (`cezsar objects --out`, e.g. for the released features), default `<path>/objects`.

    Not a folder / absent -> UsageError; a broken features.json or no feature files -> DataError.
    """
    if objects:
        require_dir(objects, objects_option, "objects folder", "give the --out folder of `cezsar objects`")
    p = require_dir(path, option, "feature folder", "give the --out folder of `cezsar extract`")
    meta = p / "features.json"
    if meta.exists():
        m = read_json_file(meta, None, "features.json")
        if not isinstance(m, dict) or not isinstance(m.get("dim"), int) or m["dim"] < 1:
            raise DataError(f"{meta}: no positive integer 'dim'; delete the folder's features.json and re-create "
                            "the folder with `cezsar extract`")
    try:
        store = FeatureStore(p, objects, declared_manifest=declared_manifest)
        check_one_backbone(store)  # equal-width stacks of two backbones would be scored as one
    except (FeatureError, MixedBackbones) as err:
        raise DataError(f"{option} {err}") from err
    return store
