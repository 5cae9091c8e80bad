"""Readers of the real formats: quirks counted, bad input named, and the real reference files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cezsar import cli
from cezsar.formats.captions import read_activitynet
from cezsar.formats.datasets import load_dataset, normalize_class, read_descriptions, read_split
from cezsar.errors import DatasetError

from paper_fixture import REFERENCE as REF


def need(rel: str) -> Path:
    path = REF / rel
    if not path.exists():
        pytest.skip(f"reference data {path} absent")
    return path


@pytest.mark.parametrize("raw, expected", [
    ("ApplyEyeMakeup", "apply eye makeup"),
    ("apply_eye_makeup", "apply eye makeup"),
    ("Apply Eye Makeup", "apply eye makeup"),
    ("  apply   eye makeup ", "apply eye makeup"),
    ("YoYo", "yo yo"),
    ("Skiing (not slalom or crosscountry)", "skiing (not slalom or crosscountry)"),
    ("passing American football ( in game )", "passing american football (in game)"),
    ("brush_hair", "brush hair"),
])
def test_normalize_class(raw, expected):
    assert normalize_class(raw) == expected


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_activitynet_quirks_repaired_and_counted(tmp_path):
    data = {
        "v_a": {"duration": 10.0, "timestamps": [[8.0, 12.5], [5.0, 2.0], [3.0, 3.0], [0, 1], [1, 2]],
                "sentences": ["Past the end.", " Reversed.", "Zero length.", "   ", "Past the end."]},
        "v_b": {"duration": 4.0, "timestamps": [[-1.0, 2.0]], "sentences": ["Negative start."]},
    }
    cap = read_activitynet(write(tmp_path / "c.json", json.dumps(data)))
    assert cap.durations == {"v_a": 10.0, "v_b": 4.0}
    assert [(s.start, s.end, s.sentence) for s in cap.segments] == [
        (8.0, 10.0, "Past the end."), (2.0, 5.0, "Reversed."), (3.0, 3.0, "Zero length."),
        (1.0, 2.0, "Past the end."), (0.0, 2.0, "Negative start.")]
    assert cap.problems == {"past_duration": 1, "whitespace_stripped": 1, "reversed": 1, "zero_length": 1,
                            "empty_sentence": 1, "duplicate_sentence": 1, "negative_time": 1}
    assert all(cap.examples[k] for k in cap.problems)
    assert "v_a #3" in cap.examples["empty_sentence"][0]


@pytest.mark.parametrize("text, message", [
    ('{"v_a": {"duration": 1,\n "timestamps": [[0, 1]], "sentences": ["x"]', "line 2"),
    ('{"v_a": {"duration": 1, "sentences": ["x"]}}', "v_a: missing key(s) timestamps"),
    ('{"v_a": {"duration": "long", "timestamps": [[0, 1]], "sentences": ["x"]}}', "v_a duration"),
    ('{"v_a": {"duration": 5, "timestamps": [[0, 1]], "sentences": ["x", "y"]}}', "lists of one length"),
    ('{"v_a": {"duration": 5, "timestamps": [[0, 1]], "sentences": [7]}}', "sentence #0"),
    ('[1, 2]', "expected an object"),
])
def test_activitynet_bad_input_named(tmp_path, text, message):
    path = write(tmp_path / "bad.json", text)
    with pytest.raises(DatasetError, match=str(path)) as err:
        read_activitynet(path)
    assert message in str(err.value)


def ucf_official(root: Path, testlist: str = "Archery/v_Archery_g01_c01.avi\n") -> Path:
    write(root / "ucfTrainTestlist" / "classInd.txt", "2 HandstandPushups\n1 ApplyEyeMakeup\n3 Archery\n")
    write(root / "ucfTrainTestlist" / "trainlist01.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g01_c01.avi 2\n")
    write(root / "ucfTrainTestlist" / "testlist01.txt", testlist)
    write(root / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi", "")
    write(root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", "")
    return root


def test_ucf101_official_layout(tmp_path):
    data = load_dataset("ucf101", ucf_official(tmp_path))
    assert data.classes == ["apply eye makeup", "handstand pushups", "archery"]  # classInd order
    by_id = {v.video_id: v for v in data.videos}
    assert by_id["v_HandStandPushups_g01_c01"].label == "handstand pushups"
    assert by_id["v_Archery_g01_c01"].path == tmp_path / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi"
    assert by_id["v_HandStandPushups_g01_c01"].path is None
    assert data.problems == {"missing_video": 1}


def test_ucf101_unknown_class_in_list_is_named(tmp_path):
    ucf_official(tmp_path, testlist="Archery/v_Archery_g01_c01.avi\nBowling/v_Bowling_g01_c01.avi\n")
    with pytest.raises(DatasetError, match=r"testlist01.txt: line 2: unknown class 'Bowling'"):
        load_dataset("ucf101", tmp_path)


def test_ucf101_authors_json_and_clashing_names(tmp_path):
    path = write(tmp_path / "ucf101_dataset.json", json.dumps(
        {"apply eye makeup": ["v_ApplyEyeMakeup_g01_c01"], "yo yo": ["v_YoYo_g01_c01", "v_YoYo_g01_c02"]}))
    data = load_dataset("ucf101", tmp_path)
    assert data.classes == ["apply eye makeup", "yo yo"]
    assert [v.label for v in data.videos] == ["apply eye makeup", "yo yo", "yo yo"]
    write(path, json.dumps({"YoYo": ["v_1"], "yo_yo": ["v_2"]}))
    with pytest.raises(DatasetError, match="'YoYo' and 'yo_yo' both normalise to 'yo yo'"):
        load_dataset("ucf101", path)


def test_hmdb51_split_lists(tmp_path):
    lists = tmp_path / "testTrainMulti_7030_splits"
    write(lists / "brush_hair_test_split1.txt", "a.avi 1\nb.avi 2\n")
    write(lists / "cartwheel_test_split1.txt", "c.avi 0\n")
    write(lists / "cartwheel_test_split2.txt", "c.avi 2\n")
    write(tmp_path / "brush_hair" / "a.avi", "")
    data = load_dataset("hmdb51", tmp_path)
    assert data.classes == ["brush hair", "cartwheel"]
    assert [(v.video_id, v.label, v.path is not None) for v in data.videos] == [
        ("a", "brush hair", True), ("b", "brush hair", False), ("c", "cartwheel", False)]
    write(lists / "cartwheel_test_split1.txt", "c.avi 7\n")
    with pytest.raises(DatasetError, match=r"cartwheel_test_split1.txt: line 1"):
        load_dataset("hmdb51", tmp_path)


def test_kinetics_both_clip_names_and_missing(tmp_path):
    write(tmp_path / "test.csv", "label,youtube_id,time_start,time_end,split\n"
          "skiing (not slalom or crosscountry),abc,5,15,test\nAbseiling,xyz,0.0,10.0,test\n"
          "abseiling,qqq,1,11,test\n")
    write(tmp_path / "clips" / "abc_000005_000015.mp4", "")
    write(tmp_path / "clips" / "abseiling" / "v_xyz.mp4", "")
    data = load_dataset("kinetics400", tmp_path)
    assert data.classes == ["abseiling", "skiing (not slalom or crosscountry)"]
    paths = {v.video_id: v.path for v in data.videos}
    assert paths["abc_000005_000015"] == tmp_path / "clips" / "abc_000005_000015.mp4"
    assert paths["xyz_000000_000010"] == tmp_path / "clips" / "abseiling" / "v_xyz.mp4"
    assert paths["qqq_000001_000011"] is None
    assert data.problems == {"missing_video": 1}


@pytest.mark.parametrize("text, message", [
    ("label,youtube_id,time_start\nx,y,1\n", "missing column(s) time_end"),
    ("label,youtube_id,time_start,time_end\nx,y,1,2\nx,z,one,2\n", "line 3"),
])
def test_kinetics_bad_csv_named(tmp_path, text, message):
    path = write(tmp_path / "k.csv", text)
    with pytest.raises(DatasetError, match=str(path)) as err:
        load_dataset("kinetics400", path)
    assert message in str(err.value)


def test_descriptions_all_forms(tmp_path):
    ours = write(tmp_path / "ours.json", json.dumps(
        {"_meta": {"source": "test"}, "ApplyEyeMakeup": ["One.", " Two. "], "yo yo": "Bare string."}))
    assert read_descriptions(ours) == {"apply eye makeup": ["One.", "Two."], "yo yo": ["Bare string."]}
    folder = tmp_path / "txt"
    write(folder / "apply_eye_makeup.txt", "Eyes.")
    write(folder / "balance beam.txt", 'A beam."')  # the stray quote of the authors' balance_beam.txt
    assert read_descriptions(folder) == {"apply eye makeup": ["Eyes."], "balance beam": ["A beam."]}


@pytest.mark.parametrize("content, message", [
    ({"archery": []}, "class 'archery': empty description"),
    ({"archery": ["  "]}, "empty description"),
    ({"archery": [3]}, "expected a list of sentences"),
    ({"Archery": ["a"], "archery": ["b"]}, "'Archery' and 'archery' both normalise to 'archery'"),
])
def test_descriptions_bad_input(tmp_path, content, message):
    path = write(tmp_path / "d.json", json.dumps(content))
    with pytest.raises(DatasetError, match=str(path)) as err:
        read_descriptions(path)
    assert message in str(err.value)


def test_read_split_maps_every_class(tmp_path):
    classes = ["apply eye makeup", "handstand pushups", "yo yo"]
    path = write(tmp_path / "s.json", json.dumps(
        {"training": ["Apply Eye Makeup", "Hand Stand Pushups", "Apply Eye Makeup"], "testing": ["YoYo"]}))
    split = read_split(path, classes)
    assert (split.training, split.testing) == (["apply eye makeup", "handstand pushups"], ["yo yo"])
    assert split.problems == {"duplicate_training": 1}
    write(path, json.dumps({"training": [], "testing": ["Yo Yo", "Archery"]}))
    with pytest.raises(DatasetError, match=r"s.json \(testing\): unknown class 'Archery'"):
        read_split(path, classes)


# --- the real files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, videos, sentences", [
    ("train.json", 10009, 37421), ("val_1.json", 4917, 17505), ("val_2.json", 4885, 17031)])
def test_reference_activitynet(name, videos, sentences):
    cap = read_activitynet(need(f"activitynet_captions/{name}"))
    assert (len(cap.durations), len(cap.segments)) == (videos, sentences)
    assert all(0 <= s.start <= s.end <= cap.durations[s.video_id] for s in cap.segments)
    assert cap.problems.get("past_duration", 0) > 0  # the real files do run past the end


def test_reference_ucf101_and_splits():
    data = load_dataset("ucf101", need("ucf101/ucf101_dataset.json"))
    assert (len(data.classes), len(data.videos)) == (101, 13320)
    sizes = {}
    for f in sorted((REF / "ucf101" / "splits").glob("*.json")):
        split = read_split(f, data.classes)
        sizes[f.name] = (len(split.training), len(split.testing))
        assert set(split.training) | set(split.testing) <= set(data.classes)
    assert sizes["ucf101_truezsl_splits.json"] == (67, 34)
    assert sizes["ucf101_truezsl2.0_splits.json"] == (70, 31)
    assert len(sizes) == 4


@pytest.mark.parametrize("name, rows", [("validate.csv", 18035), ("test.csv", 35357)])
def test_reference_kinetics(name, rows):
    data = load_dataset("kinetics400", need(f"kinetics400/{name}"))
    assert (len(data.classes), len(data.videos)) == (400, rows)
    split = read_split(need("kinetics400/kinetics400_splits.json"), data.classes)
    assert sorted(split.testing) == data.classes


def test_reference_description_txt_folder():
    desc = read_descriptions(need("descriptions_format_sample/ucf101_per_class_txt"))
    assert sorted(desc) == ["apply eye makeup", "archery", "balance beam"]
    assert all(len(s) == 1 and s[0].endswith(".") for s in desc.values())


def test_check_data_cli_json(capsys, tmp_path):
    path = need("activitynet_captions/val_2.json")
    assert cli.main(["check-data", "activitynet", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["kind"], out["videos"], out["sentences"]) == ("activitynet", 4885, 17031)
    assert out["problems"]["past_duration"] > 0
    bad = write(tmp_path / "bad.json", "{")
    assert cli.main(["check-data", "activitynet", str(bad)]) == 1
    assert str(bad) in capsys.readouterr().err
