"""Issue 30, part 6: every reader of a user's file, fed thousands of malformed inputs (Hypothesis).

Each input either parses or raises the package's own typed error whose message names the file; no other
exception, no hang (a per-example deadline). The fast tier runs a bounded number of examples per reader; the
`slow`-marked tier (./run_tests.sh) goes much further. Inputs are drawn three ways: raw bytes, text built from
the tokens the format uses, and a valid file with bytes flipped, cut or inserted."""
from __future__ import annotations

import codecs
import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cezsar import errors
from cezsar.harness import params
from cezsar.formats.captions import read_activitynet
from cezsar.evaluation.class_labels import parse_labels
from cezsar.errors import LabelError
from cezsar.formats.datasets import load_dataset, read_descriptions, read_split
from cezsar.errors import DatasetError
from cezsar.errors import FeatureError
from cezsar.encoders.features import FeatureStore

FAST, SLOW = 60, int(os.environ.get("CEZSAR_FUZZ_EXAMPLES", "400"))  # examples per reader (CEZSAR_FUZZ_EXAMPLES: more)
TIERS = [pytest.param(FAST, id="fast"), pytest.param(SLOW, id="slow", marks=pytest.mark.slow)]


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=timedelta(seconds=3), database=None, derandomize=n == FAST,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """`valid` with a few bytes flipped, a cut, or bytes inserted."""

    @st.composite
    def build(draw) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
            i = draw(st.integers(0, max(0, len(data) - 1)))
            if op == "flip" and data:
                data[i] = draw(st.integers(0, 255))
            elif op == "cut":
                del data[i:i + draw(st.integers(1, 8))]
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[i:]
        return bytes(data)

    return build()


def _encoded(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    """Text saved as people save it: plain UTF-8, with a BOM, CRLF, UTF-16 with its mark."""
    return st.tuples(text, st.sampled_from(["utf8", "bom", "crlf", "utf16"])).map(
        lambda tf: {"utf8": tf[0].encode("utf-8", "surrogatepass"),
                    "bom": codecs.BOM_UTF8 + tf[0].encode("utf-8", "surrogatepass"),
                    "crlf": tf[0].replace("\n", "\r\n").encode("utf-8", "surrogatepass"),
                    "utf16": codecs.BOM_UTF16_LE + tf[0].encode("utf-16-le", "surrogatepass")}[tf[1]])


def _lines(tokens: list[str]) -> st.SearchStrategy[str]:
    word = st.one_of(st.sampled_from(tokens), st.text(max_size=6))
    line = st.lists(word, max_size=5).map(" ".join)
    return st.lists(line, max_size=8).map("\n".join)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                    max_leaves=12)


def _expect(read, path: Path, error: type[Exception]) -> None:
    """`read()` parses, or raises `error` whose message names `path`; anything else fails the test."""
    try:
        read()
    except error as err:
        assert str(path) in str(err) or path.name in str(err), f"message does not name {path}: {err}"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- captions JSON ------------------------------------------------------------------------------------------
VALID_CAPTIONS = json.dumps({"v_a": {"duration": 12.5, "timestamps": [[0, 4.2], [3, 9]],
                                     "sentences": ["a man runs", " he jumps"]}}).encode()
CAPTION_ENTRY = st.fixed_dictionaries({}, optional={"duration": JSON | st.floats(), "timestamps": JSON,
                                                    "sentences": JSON})


@pytest.mark.parametrize("n", TIERS)
def test_captions_reader(tmp_path, n):
    @_settings(n)
    @given(st.one_of(st.binary(max_size=200), _mutated(VALID_CAPTIONS), _encoded(JSON.map(json.dumps)),
                     _encoded(st.dictionaries(st.text(max_size=5), CAPTION_ENTRY, max_size=3).map(json.dumps))))
    def check(data):
        p = _write(tmp_path / "captions.json", data)
        _expect(lambda: read_activitynet(p), p, DatasetError)

    check()


# --- classInd / testlist, split files ------------------------------------------------------------------------
@pytest.mark.parametrize("n", TIERS)
def test_ucf101_class_and_test_lists(tmp_path, n):
    tokens = ["1", "2", "01", "-1", "ApplyEyeMakeup", "Archery", "apply_eye", "/", "Archery/v_Archery_g01_c01.avi",
              "ApplyEyeMakeup/x.avi", "\t", "²"]

    @_settings(n)
    @given(_encoded(_lines(tokens)), _encoded(_lines(tokens)) | _mutated(b"Archery/v_Archery_g01_c01.avi\n"))
    def check(ind, test):
        _write(tmp_path / "classInd.txt", ind)
        _write(tmp_path / "testlist01.txt", test)
        try:
            load_dataset("ucf101", tmp_path)
        except DatasetError as err:
            assert "classInd.txt" in str(err) or "testlist01.txt" in str(err), str(err)

    check()


@pytest.mark.parametrize("n", TIERS)
def test_split_files(tmp_path, n):
    valid = json.dumps({"training": ["Archery"], "testing": ["Swimming", "archery"]}).encode()

    @_settings(n)
    @given(st.one_of(_mutated(valid), _encoded(JSON.map(json.dumps)),
                     _encoded(st.dictionaries(st.sampled_from(["training", "testing", "x"]), JSON).map(json.dumps))))
    def check(data):
        p = _write(tmp_path / "split.json", data)
        _expect(lambda: read_split(p, ["archery", "swimming"]), p, DatasetError)

    check()


# --- Kinetics CSV --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", TIERS)
def test_kinetics_csv(tmp_path, n):
    header = "label,youtube_id,time_start,time_end,split\n"
    tokens = ["abseiling", "abc", "10", "20", "1e309", "nan", "-5", '"', ",", '""', "test", "inf", "\x00"]

    @_settings(n)
    @given(st.one_of(_mutated((header + "abseiling,abc,10,20,test\n").encode()),
                     _encoded(_lines(tokens).map(lambda body: header + body.replace(" ", ","))),
                     st.binary(max_size=120)))
    def check(data):
        p = _write(tmp_path / "test.csv", data)
        _expect(lambda: load_dataset("kinetics400", p), p, DatasetError)

    check()


# --- descriptions --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", TIERS)
def test_descriptions_json_and_folders(tmp_path, n):
    valid = json.dumps({"Archery": ["shooting arrows"], "_meta": {}, "Swimming": "a swimmer"}).encode()

    @_settings(n)
    @given(st.one_of(_mutated(valid), _encoded(JSON.map(json.dumps))),
           st.dictionaries(st.sampled_from(["Archery", "archery", "Swim_ming", "a"]),
                           _encoded(_lines(["shooting", '"', "arrows", ""])) | st.binary(max_size=30), max_size=3))
    def check(data, files):
        p = _write(tmp_path / "desc.json", data)
        _expect(lambda: read_descriptions(p), p, DatasetError)
        folder = tmp_path / "desc"
        for old in folder.glob("*.txt"):
            old.unlink()
        for name, content in files.items():
            _write(folder / f"{name}.txt", content)
        folder.mkdir(exist_ok=True)
        _expect(lambda: read_descriptions(folder), folder, DatasetError)

    check()


# --- label files ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", TIERS)
def test_label_files(tmp_path, n):
    @_settings(n)
    @given(st.one_of(_encoded(_lines(["# note", "playing piano", "cooking", "Cooking", ","])), st.binary(max_size=80)))
    def check(data):
        p = _write(tmp_path / "labels.txt", data)
        _expect(lambda: parse_labels(str(p)), p, LabelError)

    check()


# --- parameter sets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", TIERS)
def test_parameter_sets(tmp_path, n):
    keys = ["epochs", "batch", "tau", "mode", "seed", "device", "val_fraction", "clip_model", "epcohs", "tau_values"]
    values = ["null", "3", "-1", "0.5", ".nan", ".inf", "paper", "[1, 2]", "{a: 1}", "'x'", "2001-01-01", "yes",
              "1e400", "!!python/object:os.system", "&a 1", "*a", "|", '"\\x"']
    text = st.lists(st.tuples(st.sampled_from(keys), st.sampled_from(values)), max_size=4).map(
        lambda kv: "".join(f"{k}: {v}\n" for k, v in kv))

    @_settings(n)
    @given(st.one_of(_encoded(text), _mutated(b"epochs: 3\nmode: embedded\ntau: 0.8\n"), st.binary(max_size=60)))
    def check(data):
        p = _write(tmp_path / "p.yaml", data)
        _expect(lambda: params.load(p), p, errors.ParameterError)

    check()


# --- feature .npy headers ------------------------------------------------------------------------------------
def _npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("n", TIERS)
def test_feature_npy_headers(tmp_path, n):
    valid = _npy(np.ones((3, 8), np.float32))
    headers = st.builds(lambda descr, order, shape: (
        b"\x93NUMPY\x01\x00" + (lambda h: len(h).to_bytes(2, "little") + h)(
            f"{{'descr': {descr!r}, 'fortran_order': {order}, 'shape': {shape}, }}".ljust(118).encode() + b"\n")),
        st.sampled_from(["<f4", "<f8", "|O", "<i4", "<f2", "V8", "xx"]), st.sampled_from(["False", "True", "1"]),
        st.sampled_from(["(3, 8)", "(8,)", "(0, 8)", "(3,)", "()", "(-1, 8)", "(2**70, 8)", "(3, 8, 1)", "'a'"]))

    @_settings(n)
    @given(st.one_of(_mutated(valid), headers.map(lambda h: h + bytes(96)), st.binary(max_size=140)))
    def check(data):
        folder = tmp_path / "feats"
        _write(folder / "features.json", b'{"dim": 8}')
        p = _write(folder / "a.npy", data)
        store = FeatureStore(folder)
        _expect(lambda: store.length("a"), p, FeatureError)
        _expect(lambda: store.load("a"), p, FeatureError)
        np.save(folder / "b.npy", np.ones((2, 8), np.float32))
        (folder / "features.json").unlink()  # a released folder: the dim comes from the first file's header
        _expect(lambda: FeatureStore(folder), p, FeatureError)
        (folder / "b.npy").unlink()

    check()
