"""The Broden reader on fixtures written by hand in the real format (the synthetic set: test_concepts.py)."""

import numpy as np
import pytest
from PIL import Image

from interpviz.broden import BrodenDataset, BrodenFormatError, encode_mask

INDEX_HEADER = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"


def write_fixture(root, index_rows=None, label_rows=None):
    """A two-image Broden folder: pixel categories with part planes, scalar scene/texture, label 0."""
    images = root / "images" / "set"
    images.mkdir(parents=True)
    for name in ("a", "b"):
        Image.new("RGB", (8, 8), (10, 20, 30)).save(images / f"{name}.jpg")
    color = np.zeros((4, 4), np.int64)
    color[:2] = 1
    color[2:, :2] = 2
    obj = np.zeros((4, 4), np.int64)
    obj[1:3, 1:3] = 3
    part_one = np.zeros((4, 4), np.int64)
    part_one[1, 1] = 4
    part_two = np.zeros((4, 4), np.int64)
    part_two[2, 2] = 300
    for name, plane in [("a_color", color), ("a_object", obj), ("a_part_1", part_one), ("a_part_2", part_two)]:
        encode_mask(plane).save(images / f"{name}.png")
    (root / "index.csv").write_text(INDEX_HEADER + "".join(index_rows or [
        "set/a.jpg,train,8,8,4,4,set/a_color.png,set/a_object.png,set/a_part_1.png;set/a_part_2.png,,5,\n",
        "set/b.jpg,val,8,8,4,4,,,,,,6;7\n",
    ]))
    (root / "category.csv").write_text(
        "name,first,last,count,frequency\ncolor,1,2,2,1\nobject,3,3,1,1\npart,4,300,2,1\nmaterial,0,0,0,0\n"
        "scene,5,5,1,1\ntexture,6,7,2,1\n")
    labels = label_rows or [f"{n},label{n},x(1),1,0.1,\n" for n in range(301)]
    (root / "label.csv").write_text("number,name,category,frequency,coverage,syns\n0,-,color(0),0,0,\n" + "".join(labels[1:]))
    table = "code,number,name,frequency,coverage\n"
    (root / "c_color.csv").write_text(table + "1,1,label1,1,0.5\n2,2,label2,1,0.25\n3,3,label3,1,0.01\n")
    (root / "c_object.csv").write_text(table + "1,3,label3,1,0.25\n")
    (root / "c_part.csv").write_text(table + "1,4,label4,1,0.0625\n2,300,label300,1,0.0625\n")
    (root / "c_material.csv").write_text(table)
    (root / "c_scene.csv").write_text(table + "1,5,label5,1,1.0\n")
    (root / "c_texture.csv").write_text(table + "1,6,label6,1,1.0\n2,7,label7,1,1.0\n")
    return root


def test_reader_parses_the_real_layout(tmp_path):
    dataset = BrodenDataset(write_fixture(tmp_path))
    assert len(dataset) == 2 and dataset.categories == ["color", "object", "part", "material", "scene", "texture"]
    first, second = dataset.rows
    assert first.image_size == (8, 8) and first.segmentation_size == (4, 4) and first.split == "train"
    assert first.masks["part"] == ["set/a_part_1.png", "set/a_part_2.png"]
    assert first.scalars == {"scene": [5]} and second.scalars == {"texture": [6, 7]} and second.masks == {}
    planes = dataset.load_masks(0)
    assert len(planes["part"]) == 2 and planes["part"][1][2, 2] == 300 and planes["part"][0][0, 0] == 0
    assert planes["color"][0][0, 0] == 1 and planes["object"][0][1, 1] == 3
    assert dataset.load_image(1).shape == (8, 8, 3)
    assert dataset.pixel_categories == ["color", "object", "part"]


def test_primary_category_is_the_one_with_most_coverage(tmp_path):
    dataset = BrodenDataset(write_fixture(tmp_path))
    assert dataset.labels[3].category == "object"
    assert dataset.labels[300].category == "part" and dataset.labels[300].number == 300
    assert dataset.labels[0].name == "-"


def test_paths_may_not_leave_the_dataset(tmp_path):
    rows = ["../../etc/passwd,train,8,8,4,4,,,,,,\n"]
    with pytest.raises(BrodenFormatError, match="index.csv row 2: path '../../etc/passwd' points outside"):
        BrodenDataset(write_fixture(tmp_path, index_rows=rows))


@pytest.mark.parametrize(
    "row, message",
    [
        ("set/a.jpg,train,8,eight,4,4,,,,,,\n", "index.csv: row 2: column 'iw' should be a whole number, got 'eight'"),
        ("set/a.jpg,train,8\n", "index.csv: row 2 has 3 fields"),
        ("set/a.jpg,train,8,8,4,4,set/../../x.png,,,,,\n", "row 2: path 'set/../../x.png' points outside"),
    ],
)
def test_malformed_rows_name_the_file_and_row(tmp_path, row, message):
    with pytest.raises(BrodenFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        BrodenDataset(write_fixture(tmp_path, index_rows=[row]))


def test_missing_files_are_named(tmp_path):
    root = write_fixture(tmp_path)
    (root / "c_scene.csv").unlink()
    with pytest.raises(FileNotFoundError, match="c_scene.csv"):
        BrodenDataset(root)
    root2 = write_fixture(tmp_path / "second")
    (root2 / "images" / "set" / "a_object.png").unlink()
    with pytest.raises(FileNotFoundError, match="a_object.png.*image 0, object"):
        BrodenDataset(root2).load_masks(0)


def test_label_numbers_must_be_consecutive(tmp_path):
    rows = [f"{n},label{n},x(1),1,0.1,\n" for n in range(301)]
    rows[5] = "9,label9,x(1),1,0.1,\n"
    with pytest.raises(BrodenFormatError, match="label.csv: row 7"):
        BrodenDataset(write_fixture(tmp_path, label_rows=rows))


def test_a_blank_last_line_and_a_byte_order_mark_are_read(tmp_path):
    root = write_fixture(tmp_path)
    index = root / "index.csv"
    index.write_bytes(b"\xef\xbb\xbf" + index.read_bytes() + b"\n")
    label = root / "label.csv"
    label.write_text(label.read_text() + ",,,,,\n")
    dataset = BrodenDataset(root)
    assert len(dataset) == 2 and len(dataset.labels) == 301


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    root = write_fixture(tmp_path)
    label = root / "label.csv"
    label.write_bytes(label.read_bytes().replace(b"label7,", "caf\u00e9,".encode("latin-1")))
    with pytest.raises(BrodenFormatError, match=r"label.csv: row 9 is not UTF-8 text \(byte 0xe9\)"):
        BrodenDataset(root)


def test_label_zero_is_filled_in_when_missing(tmp_path):
    root = write_fixture(tmp_path)
    label = root / "label.csv"
    header, _, *rest = label.read_text().splitlines(keepends=True)
    label.write_text(header + "".join(rest))
    dataset = BrodenDataset(root)
    assert [label.number for label in dataset.labels[:3]] == [0, 1, 2]
    assert dataset.labels[0].name == "-" and dataset.labels[1].name == "label1"


NOT_AN_ENTRY = "index.csv: row 2: column 'scene' holds mask files \\(.png\\) and label numbers .*got"


@pytest.mark.parametrize(
    "scene, message",
    [
        ("-5", f"{NOT_AN_ENTRY} '-5'"),
        ("5.0", f"{NOT_AN_ENTRY} '5.0'"),
        ("sky", f"{NOT_AN_ENTRY} 'sky'"),
        ("5;301", "index.csv: row 2: column 'scene' names label 301, which label.csv does not list"),
    ],
)
def test_bad_scalar_labels_name_file_row_and_value(tmp_path, scene, message):
    rows = [f"set/a.jpg,train,8,8,4,4,,,,,{scene},\n"]
    with pytest.raises(BrodenFormatError, match=message):
        BrodenDataset(write_fixture(tmp_path, index_rows=rows))


def test_a_column_may_hold_masks_and_label_numbers(tmp_path):
    rows = ["set/a.jpg,train,8,8,4,4,,,,,,set/a_color.png;6\n"]
    row = BrodenDataset(write_fixture(tmp_path, index_rows=rows)).rows[0]
    assert row.masks == {"texture": ["set/a_color.png"]} and row.scalars == {"texture": [6]}


def test_a_mask_pixel_missing_from_label_csv_is_named(tmp_path):
    root = write_fixture(tmp_path)
    encode_mask(np.full((4, 4), 301)).save(root / "images" / "set" / "a_object.png")
    dataset = BrodenDataset(root)
    message = r"mask 'set/a_object.png' \(index.csv row 2, object\) has pixel value 301, a label number that label.csv"
    with pytest.raises(BrodenFormatError, match=message):
        dataset.load_masks(0)


def test_an_image_of_the_wrong_size_is_named(tmp_path):
    root = write_fixture(tmp_path)
    Image.new("RGB", (8, 6)).save(root / "images" / "set" / "b.jpg")
    dataset = BrodenDataset(root)
    with pytest.raises(BrodenFormatError, match=r"image 'set/b.jpg' is 6x8 .* index.csv row 3 says ih=8, iw=8"):
        dataset.load_image(1)


def test_fetch_broden_respects_offline_mode_and_removes_the_folder_it_made(tmp_path, monkeypatch):
    import urllib.request

    from interpviz import broden

    monkeypatch.setenv("INTERPVIZ_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="INTERPVIZ_OFFLINE is set"):
        broden.fetch_broden(tmp_path / "new")
    assert not (tmp_path / "new").exists()

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("INTERPVIZ_OFFLINE", "0")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ConnectionError, match="could not download"):
        broden.fetch_broden(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ConnectionError):
        broden.fetch_broden(tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()
