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


@pytest.fixture
def no_work(monkeypatch):
    """Make every command fail loudly if it starts loading, training, rendering, dissecting or downloading."""
    import interpviz.broden
    import interpviz.data
    import interpviz.models
    import interpviz.text

    def started(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    for module, name in [(interpviz.models, "load"), (interpviz.text, "stdlib_corpus"), (interpviz.text, "train"),
                         (interpviz.data, "patch_set"), (interpviz.broden, "fetch_broden"), (cli, "build_book")]:
        monkeypatch.setattr(module, name, started)


RENDER = ["render", "efficientnet_lite0", "blocks.3:2", "-o", "{tmp}/unit.png"]
GRID = ["grid", "efficientnet_lite0", "blocks.2", "-o", "{tmp}/grid.png"]
DISSECT = ["dissect", "efficientnet_lite0", "--layers", "blocks.1", "--out", "{tmp}/report"]
WHOLE_NUMBER = "must be a whole number of at least 1, not"
BAD_ARGUMENTS = [
    (RENDER + ["--size", "0"], f"argument --size: {WHOLE_NUMBER} '0'"),
    (RENDER + ["--size", "2.5"], f"argument --size: {WHOLE_NUMBER} '2.5'"),
    (RENDER + ["--steps", "-1"], f"argument --steps: {WHOLE_NUMBER} '-1'"),
    (RENDER + ["--seed", "-1"], "argument --seed: must be a whole number from 0 to 4294967295, not '-1'"),
    (RENDER[:-1] + ["{tmp}/missing/unit.png"], "/missing' does not exist; create it first"),
    (RENDER[:-1] + ["{tmp}/existing"], "/existing' is a folder; give a file name"),
    (RENDER[:-1] + ["{tmp}/unit"], "/unit' does not end in .png or .jpg or .jpeg"),
    (GRID + ["--columns", "0"], f"argument --columns: {WHOLE_NUMBER} '0'"),
    (GRID + ["--size", "-5"], f"argument --size: {WHOLE_NUMBER} '-5'"),
    (DISSECT + ["--iou-threshold", "1.5"], "argument --iou-threshold: must be a number from 0 to 1, not '1.5'"),
    (DISSECT + ["--iou-threshold", "nan"], "argument --iou-threshold: must be a number from 0 to 1, not 'nan'"),
    (DISSECT + ["--quantile", "0"], "argument --quantile: must be a number between 0 and 1 (both excluded), not '0'"),
    (DISSECT + ["--limit", "0"], f"argument --limit: {WHOLE_NUMBER} '0'"),
    (DISSECT + ["--limit", "-1"], f"argument --limit: {WHOLE_NUMBER} '-1'"),
    (DISSECT + ["--batch-size", "0"], f"argument --batch-size: {WHOLE_NUMBER} '0'"),
    (DISSECT + ["--dataset", "{tmp}/missing"], "must be 'synthetic' or a Broden folder; there is no folder"),
    (DISSECT[:-1] + ["{tmp}/notes.txt"], "/notes.txt' is a file; give a folder"),
    (DISSECT[:-1] + ["{tmp}/other"], "/other' holds files but no report (no index.html)"),
    (DISSECT[:-1] + ["{tmp}/missing/report"], "/missing' does not exist; create it first"),
    (["train-prior", "--steps", "0", "-o", "{tmp}/denoiser.pt"], f"argument --steps: {WHOLE_NUMBER} '0'"),
    (["train-prior", "--patches-per-scale", "0", "-o", "{tmp}/denoiser.pt"], f"{WHOLE_NUMBER} '0'"),
    (["train-prior", "-o", "{tmp}/missing/denoiser.pt"], "/missing' does not exist; create it first"),
    (["train-prior", "-o", "{tmp}/existing"], "/existing' is a folder; give a file name"),
    (["train-prior", "-o", "{tmp}/denoiser"], "/denoiser' does not end in .pt or .pth"),
    (["train-text", "--minutes", "0", "-o", "{tmp}/lstm.pt"],
     "argument --minutes: must be a number greater than 0, not '0'"),
    (["train-text", "--minutes", "inf", "-o", "{tmp}/lstm.pt"], "must be a number greater than 0, not 'inf'"),
    (["train-text", "--minutes", "ten", "-o", "{tmp}/lstm.pt"], "must be a number greater than 0, not 'ten'"),
    (["train-text", "--hidden", "0", "-o", "{tmp}/lstm.pt"], f"argument --hidden: {WHOLE_NUMBER} '0'"),
    (["train-text", "--layers", "0", "-o", "{tmp}/lstm.pt"], f"argument --layers: {WHOLE_NUMBER} '0'"),
    (["train-text", "--lr", "-0.001", "-o", "{tmp}/lstm.pt"], "argument --lr: must be a number greater than 0"),
    (["train-text", "--final-lr", "-1", "-o", "{tmp}/lstm.pt"], "argument --final-lr: must be a number of at least 0"),
    (["train-text", "--validation-chars", "0", "-o", "{tmp}/lstm.pt"], f"{WHOLE_NUMBER} '0'"),
    (["train-text", "-o", "{tmp}/missing/lstm.pt"], "/missing' does not exist; create it first"),
    (["book", "--stall-seconds", "0"], "argument --stall-seconds: must be a number greater than 0, not '0'"),
    (["fetch-broden", "{tmp}/notes.txt"], "/notes.txt' is a file; give a folder"),
    (["fetch-broden", "{tmp}/missing/broden"], "/missing' does not exist; create it first"),
]


@pytest.mark.parametrize("arguments, message", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_stops_before_any_work_with_one_line(arguments, message, tmp_path, capsys, no_work):
    (tmp_path / "existing").mkdir()
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("")
    with pytest.raises(SystemExit) as stopped:
        cli.main([part.format(tmp=tmp_path) for part in arguments])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"interpviz {arguments[0]}: error: ") and error.count("\n") == 1
    assert message in error


def test_training_commands_check_their_default_output_folder_before_training(tmp_path, monkeypatch, capsys, no_work):
    monkeypatch.chdir(tmp_path)
    for command in ("train-prior", "train-text"):
        with pytest.raises(SystemExit) as stopped:
            cli.main([command])
        assert stopped.value.code == 2
        assert "argument -o/--output: folder 'data' does not exist; create it first" in capsys.readouterr().err


def test_the_checks_accept_the_edges_of_what_is_allowed(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "index.html").write_text("")
    parser = cli.build_parser()
    for out in ("report", "empty", "earlier"):
        arguments = parser.parse_args(["dissect", "efficientnet_lite0", "--layers", "blocks.1", "--out", str(tmp_path / out),
                                       "--iou-threshold", "1", "--quantile", "0.5", "--limit", "1"])
        assert arguments.out == tmp_path / out
        assert (arguments.iou_threshold, arguments.quantile, arguments.limit) == (1.0, 0.5, 1)
    arguments = parser.parse_args(["train-text", "--final-lr", "0", "--seed", "0", "-o", str(tmp_path / "lstm.pth")])
    assert (arguments.final_lr, arguments.output) == (0.0, tmp_path / "lstm.pth")
    assert parser.parse_args(["render", "m", "l:0", "--size", "1", "-o", str(tmp_path / "u.JPG")]).size == 1


def refuse_the_network(tried):
    def urlopen(*args, **kwargs):
        tried.append(args)
        raise OSError("network unreachable")

    return urlopen


def test_fetch_broden_offline_downloads_nothing_and_creates_no_folder(tmp_path, monkeypatch, capsys):
    import urllib.request

    tried = []
    monkeypatch.setattr(urllib.request, "urlopen", refuse_the_network(tried))
    monkeypatch.setenv("INTERPVIZ_OFFLINE", "1")
    assert cli.main(["fetch-broden", str(tmp_path / "broden")]) == 2
    assert tried == [] and not (tmp_path / "broden").exists()
    error = capsys.readouterr().err
    assert error.startswith("interpviz fetch-broden: error: INTERPVIZ_OFFLINE is set, so nothing is downloaded")
    assert error.count("\n") == 1


def test_fetch_broden_that_fails_leaves_no_folder_it_created(tmp_path, monkeypatch, capsys):
    import urllib.request

    tried = []
    monkeypatch.setattr(urllib.request, "urlopen", refuse_the_network(tried))
    monkeypatch.delenv("INTERPVIZ_OFFLINE", raising=False)
    assert cli.main(["fetch-broden", str(tmp_path / "broden")]) == 2
    assert len(tried) == 1 and not (tmp_path / "broden").exists()
    assert "could not download" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    assert cli.main(["fetch-broden", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine").is_dir()


def test_ctrl_c_gives_one_line_and_status_130(tmp_path, monkeypatch, capsys):
    import interpviz.optvis

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(interpviz.optvis, "render", interrupted)
    try:
        code = cli.main(["render", "efficientnet_lite0", "blocks.3:2", "-o", str(tmp_path / "unit.png")])
    except KeyboardInterrupt:
        code = "KeyboardInterrupt escaped main, with a traceback"
    assert code == 130
    assert capsys.readouterr().err == "interpviz render: interrupted\n"
