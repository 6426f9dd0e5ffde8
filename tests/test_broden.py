"""The Broden reader on fixtures written by hand in the real format, and the synthetic generator."""

import numpy as np
import pytest
from PIL import Image

from interpviz.broden import BrodenDataset, BrodenFormatError, encode_mask
from interpviz.concepts import COLOURS, SHAPES, TEXTURES, concept_labels, generate

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


def test_synthetic_set_is_deterministic_and_exact(tmp_path):
    first = BrodenDataset(generate(tmp_path / "one", count=30, size=64, seed=3, progress=False))
    again = BrodenDataset(generate(tmp_path / "two", count=30, size=64, seed=3, progress=False))
    assert np.array_equal(first.load_image(7), again.load_image(7))
    labels = concept_labels()
    assert len(COLOURS) == 11 and len(TEXTURES) >= 8 and len(SHAPES) >= 6
    assert [label.name for label in first.labels[1:]] == [name for name, _ in labels.names]
    for index in range(len(first)):
        row = first.rows[index]
        assert row.segmentation_size == (32, 32)
        assert ("scene" in row.scalars) != ("texture" in row.scalars)
        colour = first.load_masks(index)["color"][0]
        assert (colour > 0).all(), "every pixel has a colour"
        image = first.load_image(index)[::2, ::2].astype(int)
        for number in np.unique(colour):
            rgb = np.array(COLOURS[first.labels[number].name])
            assert np.abs(np.median(image[colour == number], axis=0) - rgb).max() < 20
