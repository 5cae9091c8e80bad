"""Issue 30: inputs and faults that got through — full disks, user errors shown as bugs, messages without the
file, results that should have been refusals, text encodings, a checkpoint write that dies part-way.

Each test drives the library or the `cezsar` CLI with a real small input and checks the user-visible outcome
(one `error:` line naming the input, the exit code, what is left on disk)."""
from __future__ import annotations

import builtins
import codecs
import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cezsar import errors
from cezsar.base import atomic, diskspace
from cezsar.cli import error_line, main

sys.path.insert(0, str(Path(__file__).parent))
from test_bad_inputs import minilm_id, one_error, toy, train_args  # noqa: E402,F401 (fixtures)


def cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


class _FullDisk:
    """A binary file whose writes fail with ENOSPC once `room` bytes were written (a disk that fills up)."""

    def __init__(self, fh, room: int) -> None:
        self._fh, self._room = fh, room

    def write(self, data) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self._room:
            self._fh.write(bytes(memoryview(data).cast("B")[:self._room]))
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= n
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def fill_disk_after(monkeypatch, room: int) -> None:
    """Every `write_atomic` from now on writes at most `room` bytes, then fails with ENOSPC."""
    real_open = builtins.open
    monkeypatch.setattr(atomic, "open", lambda path, mode="r", *a, **k: _FullDisk(real_open(path, mode, *a, **k), room),
                        raising=False)


class _Store:
    """An in-memory feature store of `{video id: (T, D) array}`."""

    def __init__(self, stacks: dict[str, np.ndarray]) -> None:
        self.stacks = stacks
        self.ids = sorted(stacks)
        self.dim = next(iter(stacks.values())).shape[1]

    def load(self, vid: str) -> np.ndarray:
        return self.stacks[vid]


def _stacks(n: int = 3, t: int = 5, d: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"v{i}": rng.standard_normal((t + i, d)).astype(np.float32) for i in range(n)}


# --- 1. a full disk ------------------------------------------------------------------------------------------
def test_feature_bank_refuses_before_writing_when_the_disk_has_too_little_room(tmp_path, monkeypatch):
    from cezsar.training.featurebank import build_bank

    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    with pytest.raises(errors.DiskFullError) as err:
        build_bank(_Store(_stacks()), ["v0", "v1", "v2"], tmp_path / "bank.npy", "float32")
    assert "needs ≈" in str(err.value) and f"under {tmp_path}" in str(err.value) and "GB free" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    assert error_line(err.value) == ("error: " + str(err.value), 1)


def test_feature_bank_is_written_by_ordinary_writes_not_a_memory_map(tmp_path, monkeypatch):
    from cezsar.training.featurebank import build_bank

    real_map = np.lib.format.open_memmap

    def read_only_map(filename, mode="r+", *a, **k):
        if mode not in ("r", "c"):  # reading a finished bank through a map is fine; writing one is not
            raise AssertionError("the bank must not be written through a memory map (SIGBUS on a full disk)")
        return real_map(filename, mode, *a, **k)

    monkeypatch.setattr(np.lib.format, "open_memmap", read_only_map)
    stacks = _stacks()
    bank, offsets = build_bank(_Store(stacks), ["v2", "v0"], tmp_path / "bank.npy", "float32")
    assert np.array_equal(np.asarray(bank), np.concatenate([stacks["v2"], stacks["v0"]]))
    assert offsets.tolist() == [0, len(stacks["v2"]), len(stacks["v2"]) + len(stacks["v0"])]


def test_a_full_disk_while_writing_the_bank_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    from cezsar.training.featurebank import build_bank

    fill_disk_after(monkeypatch, 200)  # the header and part of the first stack fit
    with pytest.raises(errors.DiskFullError) as err:
        build_bank(_Store(_stacks()), ["v0", "v1", "v2"], tmp_path / "bank.npy", "float32")
    line, code = error_line(err.value)
    assert code == 1 and str(tmp_path / "bank.npy") in line and "disk full" in line and "\n" not in line
    assert list(tmp_path.iterdir()) == []  # no bank.npy, no temp file


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    OSError(errno.EDQUOT, "Disk quota exceeded"),
    OSError("40960 requested and 1024 written"),  # numpy's short fwrite drops the errno
    RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
                 "file write failed"),
])
def test_a_write_that_runs_out_of_room_names_the_file_and_keeps_the_old_one(tmp_path, failure):
    target = tmp_path / "report.json"
    target.write_text("old")

    def write(fh):
        fh.write(b"new, half")
        raise failure

    with pytest.raises(errors.DiskFullError) as err:
        atomic.write_atomic(target, write)
    line, code = error_line(err.value)
    assert code == 1 and line.startswith(f"error: {target}: disk full") and "unexpected" not in line
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_extract_refuses_when_the_rest_of_the_videos_will_not_fit(tmp_path, monkeypatch):
    from cezsar.encoders import extraction

    out = tmp_path / "feats"
    out.mkdir()
    np.save(out / "a.npy", np.zeros((100, 1280), np.float32))  # a finished video: 0.5 MB
    videos = [type("V", (), {"video_id": v, "path": None, "label": "x"})() for v in ("a", "b", "c")]
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 << 20})())
    with pytest.raises(errors.DiskFullError, match=r"features of 2 video\(s\): needs ≈ .* GB under .*feats"):
        extraction._check_room(out, videos, videos[1:])


def test_cezsar_train_on_a_full_disk_is_one_line_before_training(capsys, tmp_path, toy, minilm_id, monkeypatch):
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: type("U", (), {"free": 1 << 20})())
    line = one_error(*cli(capsys, *train_args(toy, tmp_path / "run")), 1, "needs ≈", "GB free")
    assert "under" in line and not (tmp_path / "run" / "last.pt").exists()


# --- 2. user errors that reached the "a bug in cezsar" boundary -------------------------------------------------
def test_a_null_in_a_parameter_set_names_the_key_and_its_type(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text("epochs: null\n")
    one_error(*cli(capsys, "train", "--params", p), 1, str(p), "epochs: null is not allowed",
              "a whole number")


@pytest.mark.parametrize("line, needle", [
    ("batch: 0", "batch: 0 must be at least 1"),
    ("tau: 3.5", "tau: 3.5 must be at least 0 and at most 2"),
    ("val_fraction: 1", "val_fraction: 1.0 must be at least 0 and below 1"),
    ("seed: -3", "seed: -3 must be at least 0"),
    ("mode: papr", "mode: 'papr' is not one of embedded, paper"),
    ("epochs: .nan", "epochs: nan is not a whole number"),
    ('tau_values: "0.7,x"', "tau_values: 'x' is not a tau"),
    ('tau_values: "0.7,5"', "tau_values: '5' is not a tau"),
])
def test_parameter_values_outside_their_allowed_values_are_refused_naming_the_key(tmp_path, line, needle):
    from cezsar.harness import params

    p = tmp_path / "p.yaml"
    p.write_text(line + "\n")
    with pytest.raises(errors.ParameterError) as err:
        params.load(p)
    assert str(p) in str(err.value) and needle in str(err.value)


def test_training_a_parameter_set_before_mining_says_to_mine_first(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_text(f"work_dir: {tmp_path / 'work'}\n")
    one_error(*cli(capsys, "train", "--params", p), 1, "triplets_tau0.80.npz", "no triplet file",
              "`cezsar mine`")


@pytest.mark.parametrize("argv, needle", [
    (["mine", "--seed", "-3"], "argument --seed: must be ≥ 0"),
    (["train", "--seed", "-1"], "argument --seed: must be ≥ 0"),
    (["synth", "--out", "x", "--seed", "-1"], "argument --seed: must be ≥ 0"),
    (["train", "--dropout", "1"], "argument --dropout: must be a finite number ≥ 0 and < 1"),
    (["train", "--max-len", "0"], "argument --max-len: must be ≥ 1"),
    (["evaluate", "--std-ddof", "2"], "argument --std-ddof: must be ≥ 0 and ≤ 1"),
])
def test_option_values_are_checked_where_they_enter(capsys, argv, needle):
    one_error(*cli(capsys, *argv), 2, needle)


# --- 3. messages that name the file ---------------------------------------------------------------------------
def test_a_truncated_stack_names_the_file_and_what_to_do(tmp_path):
    from cezsar.errors import FeatureError
    from cezsar.encoders.features import FeatureStore

    np.save(tmp_path / "a.npy", np.ones((10, 16), np.float32))
    np.save(tmp_path / "b.npy", np.ones((10, 16), np.float32))
    data = (tmp_path / "b.npy").read_bytes()
    (tmp_path / "b.npy").write_bytes(data[:len(data) // 2])
    store = FeatureStore(tmp_path)
    for read in (store.length, store.load):
        with pytest.raises(FeatureError) as err:
            read("b")
        assert str(tmp_path / "b.npy") in str(err.value) and "truncated" in str(err.value)
        assert "cezsar extract" in str(err.value)


def test_an_object_array_names_the_file_and_what_to_do(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.array([np.ones(4), "x"], dtype=object), allow_pickle=True)
    one_error(*cli(capsys, "check-data", "activitynet", _captions(tmp_path), "--features", tmp_path), 1,
              str(tmp_path / "a.npy"), "holds Python objects", "cezsar extract")


def _captions(folder: Path) -> Path:
    p = folder.parent / "captions.json"
    p.write_text(json.dumps({"a": {"duration": 4.0, "timestamps": [[0, 2]], "sentences": ["a person runs"]}}))
    return p


def test_a_flat_stack_of_one_second_goes_into_the_bank(tmp_path):
    from cezsar.training.featurebank import build_bank
    from cezsar.encoders.features import FeatureStore

    np.save(tmp_path / "a.npy", np.arange(1280, dtype=np.float32))  # one second saved flat
    np.save(tmp_path / "b.npy", np.ones((3, 1280), np.float32))
    store = FeatureStore(tmp_path)
    assert store.length("a") == 1
    bank, offsets = build_bank(store, ["a", "b"], tmp_path / "cache" / "bank.npy", "float32")
    assert offsets.tolist() == [0, 1, 4] and np.array_equal(np.asarray(bank)[0], np.arange(1280))


def test_a_flat_stack_of_another_size_says_so(tmp_path):
    from cezsar.errors import FeatureError
    from cezsar.encoders.features import FeatureStore

    np.save(tmp_path / "a.npy", np.ones((3, 1280), np.float32))
    np.save(tmp_path / "b.npy", np.ones(640, np.float32))
    with pytest.raises(FeatureError, match=r"b\.npy: expected a \(T, D\) stack .*flat stack of 640 values"):
        FeatureStore(tmp_path).length("b")


# --- 4. results that should have been refusals ---------------------------------------------------------------
@pytest.mark.parametrize("spec, total", [("0/1", 5), ("0/all", 1)])
def test_a_protocol_of_fewer_than_two_classes_is_refused(spec, total):
    from cezsar.evaluation.protocols import get_protocol

    with pytest.raises(ValueError, match="at least 2 classes"):
        get_protocol("custom", spec, total)


def _backbone(seed: int, dim: int):
    """Stacks of one made-up network: a fixed channel profile (its biases) plus video content."""
    net = np.random.default_rng(seed)
    w, bias = net.standard_normal((16, dim)), net.gamma(1.0, 1.0, dim)
    rng = np.random.default_rng(seed + 100)
    return lambda t: np.maximum(rng.standard_normal((t, 16)) @ w * 0.3 + bias, 0).astype(np.float32)


def test_a_feature_folder_mixing_two_backbones_of_equal_width_is_refused(tmp_path):
    from cezsar.encoders.feature_folder import feature_folder

    one, other = _backbone(1, 256), _backbone(2, 256)
    for i in range(24):
        np.save(tmp_path / f"v{i:02d}.npy", (other if i % 4 == 0 else one)(6))
    with pytest.raises(errors.DataError, match="two different backbones of dim 256.*v00"):
        feature_folder(tmp_path)


def test_a_feature_folder_of_one_backbone_or_of_random_numbers_passes(tmp_path):
    from cezsar.encoders.feature_folder import feature_folder

    one = _backbone(1, 256)
    (tmp_path / "net").mkdir()
    (tmp_path / "noise").mkdir()
    rng = np.random.default_rng(0)
    n_videos = 24
    for i in range(n_videos):
        np.save(tmp_path / "net" / f"v{i:02d}.npy", one(6))
        np.save(tmp_path / "noise" / f"v{i:02d}.npy", rng.standard_normal((6, 256)).astype(np.float32))
    assert len(feature_folder(tmp_path / "net").ids) == n_videos
    assert len(feature_folder(tmp_path / "noise").ids) == n_videos


def test_a_manifest_that_records_two_backbones_is_refused_by_it(tmp_path):
    from cezsar.encoders.features import FeatureStore
    from cezsar.errors import MixedBackbones
    from cezsar.encoders.stack_origin import check_one_backbone

    rng = np.random.default_rng(0)
    for v in ("a", "b"):
        np.save(tmp_path / f"{v}.npy", rng.standard_normal((3, 8)).astype(np.float32))
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"stacks": {"a": {"backbone": "bit_m_r152x2"}, "b": {"backbone": "resnet152"}}}))
    with pytest.raises(MixedBackbones, match="bit_m_r152x2: e.g. a, resnet152: e.g. b"):
        check_one_backbone(FeatureStore(tmp_path))


def test_a_caption_file_with_a_video_given_twice_is_refused_naming_it(tmp_path, capsys):
    p = tmp_path / "train.json"
    entry = '{"duration": 4, "timestamps": [[0, 2]], "sentences": ["a person runs"]}'
    p.write_text('{"v_a": %s, "v_b": %s, "v_a": %s}' % (entry, entry, entry))
    one_error(*cli(capsys, "check-data", "activitynet", p), 1, str(p), "'v_a' appears twice")


# --- 5. text as people's files come ----------------------------------------------------------------------------
def _as(text: str, form: str) -> bytes:
    """`text` saved the way an editor might: UTF-8 with a BOM and CRLF, or UTF-16 (LE, BE) with its BOM."""
    crlf = text.replace("\n", "\r\n")
    return {"bom-crlf": codecs.BOM_UTF8 + crlf.encode("utf-8"),
            "utf16le": codecs.BOM_UTF16_LE + crlf.encode("utf-16-le"),
            "utf16be": codecs.BOM_UTF16_BE + text.encode("utf-16-be")}[form]


FORMS = ["bom-crlf", "utf16le", "utf16be"]


@pytest.mark.parametrize("form", FORMS)
def test_ucf101_class_and_test_lists_read_with_a_bom_and_crlf(tmp_path, form):
    from cezsar.formats.datasets import load_dataset

    (tmp_path / "classInd.txt").write_bytes(_as("1 ApplyEyeMakeup\n2 Archery\n", form))
    (tmp_path / "testlist01.txt").write_bytes(_as("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
                                                  "Archery/v_Archery_g01_c01.avi\n", form))
    ds = load_dataset("ucf101", tmp_path)
    assert ds.classes == ["apply eye makeup", "archery"]
    assert [v.video_id for v in ds.videos] == ["v_ApplyEyeMakeup_g01_c01", "v_Archery_g01_c01"]


@pytest.mark.parametrize("form", FORMS)
def test_kinetics_csv_reads_with_a_bom_and_crlf(tmp_path, form):
    from cezsar.formats.datasets import load_dataset

    p = tmp_path / "test.csv"
    p.write_bytes(_as("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,test\n", form))
    ds = load_dataset("kinetics400", p)
    assert ds.classes == ["abseiling"] and ds.videos[0].video_id == "abc_000010_000020"


@pytest.mark.parametrize("form", FORMS)
def test_json_inputs_read_with_a_bom_and_crlf(tmp_path, form):
    from cezsar.formats.captions import read_activitynet
    from cezsar.formats.datasets import read_descriptions, read_split

    caps = tmp_path / "caps.json"
    caps.write_bytes(_as('{"v_a": {"duration": 4,\n "timestamps": [[0, 2]], "sentences": ["a person runs"]}}\n', form))
    assert [s.sentence for s in read_activitynet(caps).segments] == ["a person runs"]
    desc = tmp_path / "desc.json"
    desc.write_bytes(_as('{"Archery": ["shooting arrows"],\n "Swimming": "a swimmer"}\n', form))
    assert read_descriptions(desc) == {"archery": ["shooting arrows"], "swimming": ["a swimmer"]}
    split = tmp_path / "split.json"
    split.write_bytes(_as('{"training": ["Archery"],\n "testing": ["Swimming"]}\n', form))
    assert read_split(split, ["archery", "swimming"]).testing == ["swimming"]


@pytest.mark.parametrize("form", FORMS)
def test_description_folders_label_files_and_parameter_sets_read_with_a_bom_and_crlf(tmp_path, form):
    from cezsar.harness import params
    from cezsar.evaluation.class_labels import parse_labels
    from cezsar.formats.datasets import read_descriptions

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "Archery.txt").write_bytes(_as("shooting arrows\nat a target\n", form))
    assert read_descriptions(tmp_path / "d") == {"archery": ["shooting arrows", "at a target"]}
    labels = tmp_path / "labels.txt"
    labels.write_bytes(_as("# my labels\nplaying piano\ncooking\n", form))
    assert parse_labels(str(labels))[0] == ["playing piano", "cooking"]
    p = tmp_path / "p.yaml"
    p.write_bytes(_as("epochs: 3\nmode: embedded\n", form))
    assert params.load(p)["epochs"] == 3


def test_a_text_file_in_another_encoding_is_refused_with_a_hint(tmp_path, capsys):
    p = tmp_path / "labels.txt"
    p.write_bytes("café\nthé\n".encode("latin-1"))
    from cezsar.evaluation.class_labels import parse_labels
    from cezsar.errors import LabelError

    with pytest.raises(LabelError, match="labels.txt: cannot read the label file .*not a UTF-8 text file.*save it as"):
        parse_labels(str(p))
    q = tmp_path / "p.yaml"
    q.write_bytes("epochs: 3\n".encode("utf-16-le"))  # UTF-16 without its mark
    one_error(*cli(capsys, "train", "--params", q), 1, str(q), "UTF-16 without its byte-order mark")


# --- 7. a checkpoint write that dies part-way ------------------------------------------------------------------
def test_a_checkpoint_write_that_dies_part_way_keeps_last_and_best_loadable(tmp_path, monkeypatch):
    import torch

    from cezsar.training.checkpoints import read_checkpoint
    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.train import fit
    from test_train import TINY, make_toy

    torch.set_num_threads(1)
    trip, store, text = make_toy(tmp_path / "feats")
    out = tmp_path / "run"
    model_cfg = ModelConfig(**{**TINY, "dropout": 0.0})
    fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=2, device="cpu"), model_cfg, out, progress=False)
    before = {n: (out / n).read_bytes() for n in ("last.pt", "best.pt")}
    fill_disk_after(monkeypatch, 4096)  # the next checkpoint breaks off after 4 KB
    with pytest.raises(errors.DiskFullError) as err:
        fit(trip, store, text, TrainConfig(lr=1e-3, batch=32, epochs=4, device="cpu"), model_cfg, out,
            resume=True, progress=False)
    assert str(out / "last.pt") in str(err.value)
    monkeypatch.undo()
    for name, data in before.items():
        assert (out / name).read_bytes() == data
        assert read_checkpoint(out / name, None, training=True)["epoch"] in (0, 1)
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


def test_stacked_training_refuses_a_full_disk_before_replacing_any_seeds_files(tmp_path, monkeypatch):
    """Stacked seeds (the notebooks' training) check the room for an epoch's checkpoints as `fit` does: a disk
    too full for the next last.pt is one DiskFullError naming the seed's folder, and every seed keeps its files."""
    import torch

    from cezsar.config import ModelConfig, TrainConfig
    from cezsar.training.stacked import fit_stacked, seed_dir
    from test_train import TINY, make_toy

    torch.set_num_threads(1)
    trip, store, text = make_toy(tmp_path / "feats")
    out, mcfg = tmp_path / "run", ModelConfig(**TINY)
    fit_stacked(trip, store, text, [0, 1], TrainConfig(lr=1e-3, batch=32, epochs=1, device="cpu"), mcfg, out)
    names = ("last.pt", "best.pt", "log.json")
    before = {(s, n): (seed_dir(out, s) / n).read_bytes() for s in (0, 1) for n in names}
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda p: type("U", (), {"free": 1 << 16})())
    with pytest.raises(errors.DiskFullError, match="checkpoint: needs ≈") as err:
        fit_stacked(trip, store, text, [0, 1], TrainConfig(lr=1e-3, batch=32, epochs=2, device="cpu"), mcfg, out,
                    resume=True)
    assert str(seed_dir(out, 0)) in str(err.value)
    monkeypatch.undo()
    assert {(s, n): (seed_dir(out, s) / n).read_bytes() for s in (0, 1) for n in names} == before


def test_a_killed_builds_temp_bank_is_removed_before_the_room_is_measured(tmp_path):
    import subprocess

    from cezsar.training.featurebank import build_bank

    dead = subprocess.Popen(["true"])  # a process that has ended: its pid is a dead writer's
    dead.wait()
    leftover = tmp_path / f".bank.npy.{dead.pid}@{atomic._HOST}.tmp"  # what kill -9 during a build leaves
    leftover.write_bytes(b"\0" * 4096)
    build_bank(_Store(_stacks()), ["v0"], tmp_path / "bank.npy", "float32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.json", "bank.npy"]


def test_a_stack_saved_in_fortran_order_still_loads(tmp_path):
    from cezsar.encoders.features import FeatureStore

    x = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(3, 8))
    np.save(tmp_path / "a.npy", x)
    store = FeatureStore(tmp_path)
    assert store.length("a") == 3 and np.array_equal(store.load("a"), x)


def test_few_channels_or_stacks_are_never_taken_for_two_backbones(tmp_path):
    from cezsar.encoders.feature_folder import feature_folder

    rng = np.random.default_rng(0)
    for i in range(6):  # 8 channels of noise: chance correlations as large as real agreement
        np.save(tmp_path / f"v{i}.npy", rng.normal(size=(6, 8)).astype(np.float32))
    assert len(feature_folder(tmp_path).ids) == 6
