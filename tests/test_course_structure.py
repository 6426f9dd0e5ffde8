"""Every chapter is ready for a class: learning goals, exercises with solutions that run, prompts, references.

The notebooks are read, not run, here: nbval runs every cell, the collapsed solution cells included, so a
solution that asserts its check is executed by the notebook tests. The conventions (docs/teaching.md):

- a Markdown cell "## Learning goals" with three to five bullet points;
- at least two Markdown cells "### Exercise ...", each followed, before the next exercise, by a code cell to
  fill in and a solution: a code cell collapsed in JupyterLab (metadata jupyter.source_hidden) that starts with
  "# Solution" and asserts something (usually a ``check_...`` from interpviz.exercises);
- at least one "Predict, then run" prompt, a "## Check your understanding" list and a "## References" list
  with links.
"""

import re
from pathlib import Path

import nbformat
import pytest

from interpviz import book

ROOT = Path(__file__).parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LINK = re.compile(r"https?://[^\s)>]+")


def markdown(notebook) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]


def section(notebook, heading: str) -> str:
    """The text of the Markdown cell holding ``heading``, from the heading to the next heading of its level."""
    level = heading.split(" ")[0]
    for source in markdown(notebook):
        if heading in source:
            text = source[source.index(heading) + len(heading):]
            following = re.search(rf"^{level} ", text, flags=re.MULTILINE)
            return text[: following.start()] if following else text
    return ""


def is_solution(cell) -> bool:
    return (cell.cell_type == "code" and cell.metadata.get("jupyter", {}).get("source_hidden") is True
            and cell.source.lstrip().startswith("# Solution"))


def test_there_are_nine_chapters():
    assert [path.name[:2] for path in CHAPTERS] == [f"{n:02d}" for n in range(1, 10)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_has_learning_goals(path):
    goals = book.learning_goals(path)
    assert 3 <= len(goals) <= 5, f"{path.name}: {len(goals)} learning goals, want 3 to 5 under '## Learning goals'"
    assert all(len(goal) > 20 for goal in goals)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_has_exercises_each_with_a_runnable_solution(path):
    notebook = nbformat.read(path, as_version=4)
    starts = [i for i, cell in enumerate(notebook.cells)
              if cell.cell_type == "markdown" and cell.source.lstrip().startswith("### Exercise")]
    assert len(starts) >= 2, f"{path.name}: {len(starts)} exercises, want at least 2"
    for number, start in enumerate(starts):
        end = starts[number + 1] if number + 1 < len(starts) else len(notebook.cells)
        block = notebook.cells[start + 1 : end]
        title = notebook.cells[start].source.splitlines()[0]
        solutions = [cell for cell in block if is_solution(cell)]
        assert solutions, f"{path.name}, {title}: no collapsed '# Solution' cell before the next exercise"
        blanks = [cell for cell in block if cell.cell_type == "code" and not is_solution(cell)]
        assert blanks and block.index(blanks[0]) < block.index(solutions[0]), \
            f"{path.name}, {title}: the cell to fill in must come before the solution"
        for solution in solutions:
            assert "assert" in solution.source, f"{path.name}, {title}: the solution checks nothing"
            assert "NBVAL_SKIP" not in solution.source, f"{path.name}, {title}: nbval would not run the solution"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.name)
def test_chapter_has_prompts_questions_and_references(path):
    notebook = nbformat.read(path, as_version=4)
    assert any("**Predict, then run.**" in source for source in markdown(notebook)), f"{path.name}: no prompt"
    questions = re.findall(r"^\d+\. ", section(notebook, "## Check your understanding"), flags=re.MULTILINE)
    assert len(questions) >= 3, f"{path.name}: {len(questions)} check-your-understanding questions, want 3 or more"
    references = section(notebook, "## References")
    assert len(LINK.findall(references)) >= 2, f"{path.name}: the references need links"


def test_learning_goals_reads_the_bullets_and_the_index_lists_them(tmp_path):
    cells = [nbformat.v4.new_markdown_cell("# 01 A chapter"),
             nbformat.v4.new_markdown_cell("## Learning goals\n\nAfter this chapter you can:\n\n- compute an IoU\n"
                                           "- say why <b> is escaped\n- call `render`\n\nMore text.")]
    path = tmp_path / "01_a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    goals = book.learning_goals(path)
    assert goals == ["compute an IoU", "say why <b> is escaped", "call `render`"]
    page = book.index_page([("01_a.html", "01 A chapter", 3.0, goals), ("02_b.html", "02 B", 1.0, [])])
    assert '<a href="01_a.html">01 A chapter</a>' in page
    assert "<li>compute an IoU</li>" in page and "&lt;b&gt;" in page and "<li>call <code>render</code></li>" in page
    assert page.count("After this chapter you can") == 1


def test_learning_goals_of_a_chapter_without_them_is_empty(tmp_path):
    path = tmp_path / "01_a.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 A\n\n- not a goal")]), path)
    assert book.learning_goals(path) == []
