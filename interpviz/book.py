"""The course as HTML: execute every chapter notebook headless, with a watchdog for a kernel that stops answering.

Now and then the Jupyter kernel leaves a cell's request unanswered: the kernel sits idle and the client waits
for a reply that never comes (seen a few times over more than a hundred runs here, with ipykernel 7.4). Every
cell of the course keeps a CPU busy, so a kernel that has used (almost) no CPU for ``stall_seconds`` is taken
as stalled: the watchdog stops it, and the notebook is run once more from the start.
"""

from __future__ import annotations

import contextlib
import html
import re
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import nbformat
    import psutil

STALL_SECONDS = 180.0
IDLE_CPU_SHARE = 0.01


class KernelStalled(RuntimeError):
    """The kernel used no CPU for ``stall_seconds`` while a notebook ran."""


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


def learning_goals(path: Path) -> list[str]:
    """The bullet points of a notebook's "## Learning goals" cell, without the bullets; [] when it has none."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("## Learning goals"):
            return [line.strip()[2:].strip() for line in cell.source.splitlines() if line.strip().startswith(("- ", "* "))]
    return []


def _inline_code(text: str) -> str:
    """Markdown's `code` spans as HTML <code> elements."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def index_page(entries: list[tuple[str, str, float, list[str]]]) -> str:
    """The book's index.html: per chapter its page, title, run time and learning goals (to hand out to a class)."""
    items = []
    for name, title, seconds, goals in entries:
        goal_list = "".join(f"<li>{_inline_code(html.escape(goal))}</li>" for goal in goals)
        items.append(
            f'<li><a href="{html.escape(name)}">{html.escape(title)}</a> <small>(ran in {seconds:.0f} s)</small>'
            + (f"<p>After this chapter you can:</p><ul>{goal_list}</ul>" if goals else "") + "</li>"
        )
    body = "\n".join(items)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>interpviz course</title></head>"
        "<body><h1>interpviz: interpreting learned features</h1>"
        "<p>Each chapter lists its learning goals; the exercises and their (collapsed) solutions are in the pages. "
        "Instructors: docs/teaching.md in the repository has lesson plans and a definitions sheet.</p>"
        f"<ol>\n{body}\n</ol></body></html>\n"
    )


def kernel_cpu_seconds(kernel: "psutil.Process") -> float:
    """CPU time used so far by a kernel process and its children."""
    import psutil

    processes = [kernel] + kernel.children(recursive=True)
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@contextlib.contextmanager
def stall_watchdog(stall_seconds: float, poll_seconds: float = 1.0) -> Iterator[threading.Event]:
    """Kill a kernel started in this block that uses under 1% of a CPU for ``stall_seconds``; the event says it did."""
    import psutil

    stalled, stop = threading.Event(), threading.Event()
    already_there = {process.pid for process in psutil.Process().children()}

    def watch() -> None:
        window: dict[int, tuple[float, float]] = {}
        while not stop.wait(poll_seconds):
            for kernel in psutil.Process().children():
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    if kernel.pid in already_there or "ipykernel_launcher" not in " ".join(kernel.cmdline()):
                        continue
                    now, cpu = time.monotonic(), kernel_cpu_seconds(kernel)
                    started, cpu_then = window.setdefault(kernel.pid, (now, cpu))
                    if now - started < stall_seconds:
                        continue
                    if cpu - cpu_then < IDLE_CPU_SHARE * (now - started):
                        stalled.set()
                        kernel.kill()
                    window[kernel.pid] = (now, cpu)

    thread = threading.Thread(target=watch, name="interpviz-book-watchdog", daemon=True)
    thread.start()
    try:
        yield stalled
    finally:
        stop.set()
        thread.join()


def execute_notebook(path: Path, timeout: int, stall_seconds: float) -> "nbformat.NotebookNode":
    """The notebook at ``path``, executed in its own folder; KernelStalled when the watchdog had to stop it."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.read(path, as_version=4)
    preprocessor = ExecutePreprocessor(timeout=timeout, kernel_name="python3", store_widget_state=True)
    with stall_watchdog(stall_seconds) as stalled:
        try:
            preprocessor.preprocess(notebook, {"metadata": {"path": str(path.parent)}})
        except Exception as error:
            if stalled.is_set():
                raise KernelStalled(f"{path.name}: the kernel used no CPU for {stall_seconds:.0f} s") from error
            raise
    return notebook


def build_book(notebooks: Path, out: Path, timeout: int = 1800, stall_seconds: float = STALL_SECONDS) -> int:
    """Execute every ``NN_*.ipynb`` headless, write one HTML page each and an index.html linking them with their goals."""
    try:
        from nbconvert import HTMLExporter
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
        try:
            notebook = execute_notebook(path, timeout, stall_seconds)
        except KernelStalled as stall:
            print(f"  {stall} (a request it never answered); running {path.name} again", flush=True)
            try:
                notebook = execute_notebook(path, timeout, stall_seconds)
            except KernelStalled as second_stall:
                print(f"interpviz book: error: {second_stall}, twice in a row; giving up", file=sys.stderr)
                return 1
        body, _ = HTMLExporter().from_notebook_node(notebook)
        page = out / f"{path.stem}.html"
        page.write_text(body, encoding="utf-8")
        seconds = time.time() - started
        print(f"  wrote {page} in {seconds:.0f} s")
        entries.append((page.name, notebook_title(path), seconds, learning_goals(path)))
    (out / "index.html").write_text(index_page(entries), encoding="utf-8")
    print(f"book index: {out / 'index.html'}")
    return 0
