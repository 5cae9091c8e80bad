"""Shards of a long per-video job (extraction, objects) and their reports (docs/decisions.md §13).

A job over many videos splits into N disjoint shards writing into one folder: N `torchrun` ranks (the shard is
the rank), or N independent processes given `--shard K/N` (a SLURM job array). Each shard writes
`report_shard<k>of<n>.json`; `merge_reports` turns a complete set into one `report.json` (automatically on rank 0
at the end of a torchrun job, or `cezsar extract --merge-reports` after a job array). A killed shard reruns alone:
finished videos are kept (cezsar.encoders.features).
"""
from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

from cezsar.base.atomic import write_json
from cezsar.errors import ShardReportsMissing

SHARD_REPORT = re.compile(r"report_shard(\d+)of(\d+)\.json")
# the only collective of a sharded job is the final barrier, which waits for the slowest shard: hours of
# video on one GPU, far past torch's 30-minute default
JOB_TIMEOUT = datetime.timedelta(days=7)
# counts that add up over shards; lists of items (skipped videos) are concatenated; "seconds" is the slowest
# shard's (they run side by side) and every shard's is kept
_SUMMED = ("videos", "done", "encoded", "reused", "computed", "frames", "rows", "stale_temps_removed")


def for_this_process(shard: tuple[int, int] | None, device="cpu") -> tuple[tuple[int, int], bool]:
    """(k, n) this process works on, and whether it is a torchrun rank that merges at the end.

    `shard` given: that one; under torchrun each rank takes its part of it, (k + n*RANK, n*WORLD_SIZE), the
    positions = k mod n split by rank, merged later with the other tasks' (`--merge-reports`). None: (RANK,
    WORLD_SIZE) under torchrun, joining the process group (Gloo: its one barrier needs no GPU; the CNN still
    runs on `cuda:LOCAL_RANK`), else (0, 1).
    """
    from cezsar.base import distributed  # lazy: torch, only when a job runs, so `cezsar --help` stays fast

    if shard is not None and distributed.is_distributed():  # a job array of torchrun jobs: split K/N by rank
        k, n = shard
        return (k + n * distributed.rank(), n * distributed.world_size()), False
    if shard is not None:
        return tuple(shard), False
    if not distributed.is_distributed():
        return (0, 1), False
    distributed.init(device, backend="gloo", timeout=JOB_TIMEOUT)
    return (distributed.rank(), distributed.world_size()), True


def report_name(shard: tuple[int, int]) -> str:
    """report.json for the whole job, report_shard<k>of<n>.json for one shard of several."""
    return "report.json" if shard[1] == 1 else f"report_shard{shard[0]}of{shard[1]}.json"


def finish(out: str | Path, report: dict) -> dict:
    """End of a torchrun rank's shard: wait for every rank, then rank 0 merges the reports into report.json and
    returns the merged report; the other ranks return their own."""
    from cezsar.base import distributed  # lazy: torch, only when a job runs (see for_this_process)

    distributed.barrier()
    return merge_reports(out) if distributed.is_main() else report


def merge_reports(out: str | Path) -> dict:
    """One report.json from the `report_shard<k>of<n>.json` of `out`; the merged report.

    ShardReportsMissing names the shards without a report (or the shard counts when reports of several
    N lie there). Counts are summed, skipped items concatenated in video-id order (as one process lists them),
    `seconds` is the slowest shard's, `shard_seconds` every shard's, and the rate is recomputed.
    """
    out = Path(out)
    found: dict[int, dict[int, Path]] = {}
    for p in out.glob("report_shard*of*.json"):
        m = SHARD_REPORT.fullmatch(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = p
    if not found:
        raise ShardReportsMissing(f"{out}: no report_shard<k>of<n>.json to merge (run the shards first)")
    if len(found) > 1:
        raise ShardReportsMissing(f"{out}: shard reports of {sorted(found)} shards lie there; delete the stale "
                                  "report_shard*of*.json files of the other shard count")
    n, files = next(iter(found.items()))
    missing = [f"report_shard{k}of{n}.json" for k in range(n) if k not in files]
    if missing:
        raise ShardReportsMissing(f"{out}: {', '.join(missing)} missing; run those shards (--shard K/{n}; a killed "
                                  "shard reruns alone and keeps its finished videos), then merge again")
    parts = [json.loads(files[k].read_text()) for k in range(n)]
    merged = {k: v for k, v in parts[0].items() if k not in _SUMMED}
    for key in _SUMMED:
        if key in parts[0]:
            merged[key] = sum(int(p.get(key, 0)) for p in parts)
    merged["skipped"] = sorted((s for p in parts for s in p.get("skipped", [])), key=lambda s: s["video_id"])
    merged["shard"] = [0, 1]  # the whole job
    merged["shards"] = n
    merged["shard_seconds"] = [p.get("seconds") for p in parts]
    seconds = max(float(p.get("seconds") or 0.0) for p in parts)
    merged["seconds"] = round(seconds, 3)
    for rate, count in (("frames_per_s", "frames"), ("rows_per_s", "rows")):
        if rate in merged:
            merged[rate] = round(merged[count] / seconds, 2) if seconds > 0 else 0.0
    write_json(out / "report.json", merged)
    return merged
