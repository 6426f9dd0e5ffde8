import platform
import re
from pathlib import Path

import nbformat
import pytest
import torch

from interpviz import cli


def test_doctor_reports_every_model(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path))
    (tmp_path / "smallcnn").mkdir()
    (tmp_path / "smallcnn" / "smallcnn_all_w4.pt").write_bytes(b"")
    assert cli.main(["doctor"]) == 0
    printed = capsys.readouterr().out
    for name in ("efficientnet_lite0", "googlenet", "resnet18", "alexnet", "vgg16"):
        assert f"  {name}: " in printed
    assert "efficientnet_lite0: ImageNet weights at" in printed
    assert "small CNNs trained and cached: 1" in printed and "  smallcnn_all_w4\n" in printed


def test_doctor_says_where_dissection_feature_files_go(capsys, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cli.main(["doctor"])
    assert re.search(rf"dissection feature files: {re.escape(str(tmp_path))} \([0-9.]+ GiB free",
                     capsys.readouterr().out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or torch.cuda.is_available(),
                    reason="the hint is about glibc's allocator on a CPU")
def test_doctor_says_whether_glibc_keeps_freed_memory(capsys, monkeypatch):
    from interpviz.speed import GLIBC_MEMORY_REUSE

    monkeypatch.setenv("GLIBC_TUNABLES", GLIBC_MEMORY_REUSE)
    cli.main(["doctor"])
    assert "glibc memory reuse: on" in capsys.readouterr().out
    monkeypatch.delenv("GLIBC_TUNABLES")
    cli.main(["doctor"])
    assert f"glibc memory reuse: off. Dissection on a CPU runs about 1.5x faster when Python starts with GLIBC_TUNABLES={GLIBC_MEMORY_REUSE}" in capsys.readouterr().out


def test_the_makefile_exports_the_same_tunables():
    from interpviz.speed import GLIBC_MEMORY_REUSE

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"export GLIBC_TUNABLES ?= {GLIBC_MEMORY_REUSE}\n" in makefile


def test_book_executes_notebooks_and_writes_an_index(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    chapter = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# 01 A tiny chapter"), nbformat.v4.new_code_cell("print(6 * 7)")]
    )
    nbformat.write(chapter, notebooks / "01_tiny.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), notebooks / "scratch.ipynb")
    out = tmp_path / "book"
    assert cli.main(["book", "--notebooks", str(notebooks), "--out", str(out)]) == 0
    assert "42" in (out / "01_tiny.html").read_text()
    index = (out / "index.html").read_text()
    assert '<a href="01_tiny.html">01 A tiny chapter</a>' in index
    assert not (out / "scratch.html").exists()


def write_chapter(path, code):
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), nbformat.v4.new_code_cell(code)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def test_book_reruns_a_notebook_whose_kernel_stalls_and_gives_up_the_second_time(tmp_path, capsys):
    marker = tmp_path / "stalled-once"
    write_chapter(tmp_path / "once" / "01_once.ipynb",
                  f"import pathlib, time\nmarker = pathlib.Path({str(marker)!r})\nif not marker.exists():\n"
                  f"    marker.write_text('stalled')\n    time.sleep(30)\nprint('finished on the rerun')")
    assert cli.main(["book", "--notebooks", str(tmp_path / "once"), "--out", str(tmp_path / "book"),
                     "--stall-seconds", "2"]) == 0
    assert "01_once.ipynb: the kernel used no CPU for 2 s" in capsys.readouterr().out
    assert "finished on the rerun" in (tmp_path / "book" / "01_once.html").read_text()
    write_chapter(tmp_path / "always" / "01_always.ipynb", "import time\ntime.sleep(30)")
    assert cli.main(["book", "--notebooks", str(tmp_path / "always"), "--out", str(tmp_path / "book"),
                     "--stall-seconds", "2"]) == 1
    assert "01_always.ipynb: the kernel used no CPU for 2 s, twice in a row" in capsys.readouterr().err


def test_book_without_chapters_fails(tmp_path, capsys):
    assert cli.main(["book", "--notebooks", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no chapter notebooks" in capsys.readouterr().err


def test_render_writes_a_png(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "unit.png"
    assert cli.main(["render", "efficientnet_lite0", "blocks.3:2", "--size", "40", "--steps", "3", "-o", str(out)]) == 0
    assert Image.open(out).size == (40, 40)
    assert "channel blocks.3[2]" in capsys.readouterr().out


def test_grid_writes_a_tiled_png(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    arguments = ["grid", "efficientnet_lite0", "blocks.2", "--channels", "0-2,5", "--columns", "2",
                 "--size", "20", "--steps", "2", "-o", str(out)]
    assert cli.main(arguments) == 0
    assert Image.open(out).size == (2 * 20 + 2, 2 * 20 + 2)


def test_render_errors_are_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert cli.main(["render", "efficientnet_lite0", "blokcs.3:2", "-o", out]) == 2
    assert "closest valid names: blocks.3" in capsys.readouterr().err
    assert cli.main(["grid", "efficientnet_lite0", "blocks.2", "--channels", "20-30", "-o", out]) == 2
    assert "use 0 .. 23" in capsys.readouterr().err


def test_channel_and_unit_parsing():
    import argparse

    import pytest

    assert cli.parse_channels("1,3,8-10") == [1, 3, 8, 9, 10]
    assert cli.parse_unit("blocks.6:3") == ("blocks.6", 3)
    for bad in ("5-a", "3-1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.parse_channels(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="LAYER:CHANNEL"):
        cli.parse_unit("blocks.6")
