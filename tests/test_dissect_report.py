import dataclasses
import math
import re
import shutil

import numpy as np
import torch
import pytest
from torch import nn

from interpviz import cli, dissect_report, models
from interpviz.broden import BrodenDataset
from interpviz.concepts import generate
from interpviz.dissect import DissectionSettings, dissect
from interpviz.dissect_report import category_share, overlay, top_image_overlays, top_images_figure, unit_masks, write_report


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    dataset = BrodenDataset(generate(tmp_path_factory.mktemp("report") / "set", count=16, size=32, progress=False))
    torch.manual_seed(0)  # the tiny network's weights must not depend on which tests ran before
    model = models.wrap(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval(), name="tiny")
    return model, dataset, dissect(model, dataset, ["0"], DissectionSettings(batch_size=4), progress=False)


def test_report_has_a_tally_and_a_sortable_page_per_layer(setting, tmp_path):
    model, dataset, results = setting
    index = write_report(model, dataset, results, tmp_path / "out", images_per_unit=2)
    page = (tmp_path / "out" / "0.html").read_text()
    assert "sortBy(3,true)" in page and page.count("<tr") == 1 + 4
    assert len(re.findall(r"data:image/jpeg;base64", page)) == 4 * 2
    assert (tmp_path / "out" / "0-tally.csv").read_text().startswith("unit,category,label,score")
    assert "0.html" in index.read_text()


def test_top_images_figure_has_a_row_per_unit_titled_with_its_label(setting):
    model, dataset, results = setting
    result = results["0"]
    figure = top_images_figure(model, dataset, result, [1, 3], count=2)
    titles = [axis.get_title() for axis in figure.axes]
    best = result.best()
    assert titles == [f"unit 1: {best[1].label} ({best[1].iou:.2f})", "", f"unit 3: {best[3].label} ({best[3].iou:.2f})", ""]


def test_category_share_of_unique_detectors(setting):
    _, _, results = setting
    counts = results["0"].unique_detectors_by_category(0.0)
    total = sum(counts.values())
    assert total > 0
    result = results["0"]
    zero = DissectionSettings(batch_size=4, iou_threshold=0.0)
    lenient = {"0": dataclasses.replace(result, settings=zero)}
    for category, count in counts.items():
        assert category_share(lenient, ["0"], [category]) == pytest.approx(count / total)
    assert category_share(lenient, ["0"], list(counts)) == pytest.approx(1.0)
    strict = {"0": dataclasses.replace(result, settings=DissectionSettings(batch_size=4, iou_threshold=1.0))}
    assert math.isnan(category_share(strict, ["0"], list(counts)))


def test_masks_agree_with_the_thresholds(setting):
    model, dataset, results = setting
    result = results["0"]
    masks = unit_masks(model, dataset, result, [0, 1], [0, 3])
    assert masks.shape == (2, 2, 32, 32) and masks.dtype == torch.bool
    pictures = top_image_overlays(model, dataset, result, 2, count=3)
    assert len(pictures) == 3 and pictures[0].shape == (32, 32, 3)


def test_overlay_dims_outside_and_outlines_the_mask():
    image = np.full((6, 6, 3), 200, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    shown = overlay(image, mask)
    assert tuple(shown[0, 0]) == (60, 60, 60)
    assert tuple(shown[1, 1]) == (255, 220, 0)
    assert tuple(shown[2, 2]) == (200, 200, 200)


def test_dissect_command_writes_the_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path / "cache"))
    dataset = generate(tmp_path / "broden", count=12, size=64, progress=False)
    out = tmp_path / "report"
    code = cli.main(["dissect", "efficientnet_lite0", "--layers", "blocks.1,blocks.3", "--dataset", str(dataset),
                     "--out", str(out), "--limit", "8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "blocks.1:" in printed and "blocks.3:" in printed and "report:" in printed
    assert (out / "index.html").is_file() and (out / "blocks.3-tally.csv").is_file()
    assert cli.main(["dissect", "efficientnet_lite0", "--layers", "blocks.99", "--dataset", str(dataset),
                     "--out", str(out)]) == 2
    assert "closest valid names" in capsys.readouterr().err
    import interpviz.dissect

    used = []
    real_dissect = interpviz.dissect.dissect
    monkeypatch.setattr(interpviz.dissect, "dissect",
                        lambda *a, **k: used.append((a[3].batch_size, a[3].feature_file)) or real_dissect(*a, **k))
    assert cli.main(["dissect", "efficientnet_lite0", "--layers", "blocks.1", "--dataset", str(dataset),
                     "--out", str(out), "--limit", "4", "--batch-size", "3", "--feature-file", "never"]) == 0
    assert used == [(3, "never")]
    real_disk_usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_disk_usage(path)._replace(free=0))
    assert cli.main(["dissect", "efficientnet_lite0", "--layers", "blocks.1", "--dataset", str(dataset),
                     "--out", str(out), "--limit", "4", "--feature-file", "always"]) == 2
    assert "only 0 MiB are free" in capsys.readouterr().err


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_an_interrupted_report_leaves_no_folder(setting, tmp_path, monkeypatch):
    model, dataset, results = setting
    monkeypatch.setattr(dissect_report, "top_image_overlays", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_report(model, dataset, results, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_report_leaves_the_earlier_one_as_it_was(setting, tmp_path, monkeypatch):
    model, dataset, results = setting
    out = tmp_path / "out"
    write_report(model, dataset, results, out, images_per_unit=1)
    (out / "0-tally.csv").write_text("earlier tally\n")
    earlier_files = sorted(path.name for path in out.iterdir())
    monkeypatch.setattr(dissect_report, "top_image_overlays", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_report(model, dataset, results, out, images_per_unit=1)
    assert (out / "0-tally.csv").read_text() == "earlier tally\n"
    assert sorted(path.name for path in out.iterdir()) == earlier_files
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_new_report_replaces_an_earlier_one_as_a_whole(setting, tmp_path):
    model, dataset, results = setting
    out = tmp_path / "out"
    write_report(model, dataset, results, out, images_per_unit=1)
    (out / "stale.html").write_text("from an earlier dissection")
    index = write_report(model, dataset, results, out, images_per_unit=1)
    assert index == out / "index.html" and index.is_file()
    assert not (out / "stale.html").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_file_or_a_folder_that_is_not_a_report_is_refused(setting, tmp_path):
    model, dataset, results = setting
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds files but no report"):
        write_report(model, dataset, results, notes)
    assert [path.name for path in notes.iterdir()] == ["todo.txt"]
    with pytest.raises(FileExistsError, match="is a file; give a folder"):
        write_report(model, dataset, results, notes / "todo.txt")
    (tmp_path / "empty").mkdir()
    assert write_report(model, dataset, results, tmp_path / "empty", images_per_unit=1).is_file()
