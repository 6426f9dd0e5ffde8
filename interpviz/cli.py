"""Command line: ``interpviz doctor`` reports what works offline; ``interpviz book`` renders the course to HTML."""

from __future__ import annotations

import argparse
import html
import sys
import time
from pathlib import Path

import torch


def doctor() -> int:
    """Print which models have weights available here, the device, and the cache folders."""
    from interpviz import settings
    from interpviz.models.zoo import ZOO, WeightsNotFoundError, efficientnet_lite0_weights_path, torchvision_weights_file

    print(f"torch {torch.__version__}, device {settings.default_device()}, fast mode {settings.fast_mode()}")
    print(f"generated data folder: {settings.cache_dir()}")
    print(f"torch hub cache: {Path(torch.hub.get_dir()) / 'checkpoints'}")
    for name in ZOO:
        if name == "efficientnet_lite0":
            try:
                print(f"  {name}: ImageNet weights at {efficientnet_lite0_weights_path()}")
            except WeightsNotFoundError as error:
                print(f"  {name}: random weights only. {error}")
            continue
        path, url = torchvision_weights_file(name)
        if path.is_file():
            print(f"  {name}: ImageNet weights at {path}")
        else:
            print(f"  {name}: random weights only until {path.name} is in {path.parent} (from {url})")
    return 0


def notebook_title(path: Path) -> str:
    """The first Markdown heading of a notebook, or its file name."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def build_book(notebooks: Path, out: Path, timeout: int = 1800) -> int:
    """Execute every ``NN_*.ipynb`` headless, write one HTML page each and an index.html linking them."""
    try:
        import nbformat
        from nbconvert import HTMLExporter
        from nbconvert.preprocessors import ExecutePreprocessor
    except ImportError:
        print("interpviz book needs nbconvert: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    paths = sorted(notebooks.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print(f"no chapter notebooks (NN_topic.ipynb) in {notebooks}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for path in paths:
        started = time.time()
        print(f"executing {path.name} ...", flush=True)
        notebook = nbformat.read(path, as_version=4)
        ExecutePreprocessor(timeout=timeout, kernel_name="python3", store_widget_state=True).preprocess(
            notebook, {"metadata": {"path": str(path.parent)}}
        )
        body, _ = HTMLExporter().from_notebook_node(notebook)
        page = out / f"{path.stem}.html"
        page.write_text(body, encoding="utf-8")
        seconds = time.time() - started
        print(f"  wrote {page} in {seconds:.0f} s")
        entries.append((page.name, notebook_title(path), seconds))
    items = "\n".join(
        f'<li><a href="{html.escape(name)}">{html.escape(title)}</a> <small>(ran in {seconds:.0f} s)</small></li>'
        for name, title, seconds in entries
    )
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>interpviz course</title></head>"
        f"<body><h1>interpviz: interpreting learned features</h1><ol>\n{items}\n</ol></body></html>\n",
        encoding="utf-8",
    )
    print(f"book index: {out / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``interpviz`` command."""
    parser = argparse.ArgumentParser(prog="interpviz", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="report which weights and data are available offline")
    book = commands.add_parser("book", help="execute the notebooks and write HTML pages plus index.html")
    book.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    book.add_argument("--out", type=Path, default=Path("build/book"))
    arguments = parser.parse_args(argv)
    if arguments.command == "doctor":
        return doctor()
    return build_book(arguments.notebooks, arguments.out)


if __name__ == "__main__":
    sys.exit(main())
