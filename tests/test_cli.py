import nbformat

from interpviz import cli


def test_doctor_reports_every_model(capsys):
    assert cli.main(["doctor"]) == 0
    printed = capsys.readouterr().out
    for name in ("efficientnet_lite0", "googlenet", "resnet18", "alexnet", "vgg16"):
        assert f"  {name}: " in printed
    assert "efficientnet_lite0: ImageNet weights at" in printed


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


def test_book_without_chapters_fails(tmp_path, capsys):
    assert cli.main(["book", "--notebooks", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no chapter notebooks" in capsys.readouterr().err
