from types import SimpleNamespace

import numpy as np
import pytest
import torch

from interpviz import text

SNIPPET = '''x = call("a (b", [1,
    2])  # say "hi" at http://example.org/x
y = """long
string"""
'''


def test_features_from_tokenize():
    features = text.character_features(SNIPPET)
    string_start = SNIPPET.index('"a (b"')
    inside = slice(string_start, string_start + len('"a (b"'))
    assert features["in_string"][inside].all() and features["in_short_string"][inside].all()
    bracket_in_string = SNIPPET.index("(b")
    call_open = SNIPPET.index("(")
    assert features["bracket_depth"][call_open] == 1
    assert features["bracket_depth"][bracket_in_string] == 2 - 1, "a bracket inside a string does not count"
    list_close = SNIPPET.index("])")
    assert features["bracket_depth"][SNIPPET.index("2])")] == 2, "nested brackets carry across lines"
    assert features["bracket_depth"][list_close + 1] == 1 and features["bracket_depth"][list_close + 2] == 0
    comment = SNIPPET.index("# say")
    assert features["in_comment"][comment:SNIPPET.index("\ny =")].all()
    assert not features["in_string"][SNIPPET.index('"hi"')], "quotes inside a comment are not a string"
    url = SNIPPET.index("http://")
    assert features["in_url"][url : url + len("http://example.org/x")].all() and not features["in_url"][url - 1]
    long_string = SNIPPET.index('"""long')
    assert features["in_string"][long_string] and not features["in_short_string"][long_string]
    second_line = SNIPPET.index("    2])")
    assert features["indentation"][second_line + 5] == 0, "a continuation line belongs to its statement"
    assert features["column"][second_line + 5] == 5
    assert features["end_of_line"].sum() == SNIPPET.count("\n")
    assert features["end_of_line"][SNIPPET.index("\n")] == 1


def test_indentation_follows_the_block_structure():
    source = "def f(x):\n    if x:\n\n        return [1,\n                2]\n    # note\n    return 0\n"
    indentation = text.character_features(source)["indentation"]
    expected = {"def f": 0, "if x": 4, "\n\n": 4, "return [": 8, "2]": 8, "# note": 8, "return 0": 4}
    for piece, value in expected.items():
        assert indentation[source.index(piece) + 1] == value, piece
    assert indentation[source.index("    if x")] == 4, "the leading spaces belong to their line"


def test_untokenizable_source_is_an_error():
    with pytest.raises(ValueError, match="does not tokenize"):
        text.character_features('x = """never closed\n')


def test_encoding_errors_are_clear():
    with pytest.raises(ValueError, match="empty"):
        text.encode("")
    with pytest.raises(ValueError, match="'é' at position 3 is outside the vocabulary"):
        text.encode("abcé")
    assert text.decode(text.encode("def f():\n")) == "def f():\n"


def planted_string_lstm(hidden=8, seed=0):
    """An LSTM whose cell 0 flips sign at every double quote: positive inside "...", negative outside.

    The other cells have random input weights but no memory (forget gate shut, no recurrent weights), so
    they see only the current character."""
    torch.manual_seed(seed)
    model = text.CharLSTM(hidden=hidden, layers=1, embedding=len(text.VOCABULARY))
    quote = text.VOCABULARY.index('"')
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(len(text.VOCABULARY)))
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(model.lstm, name).mul_(0.3)
        w_ih, w_hh, b_ih, b_hh = (getattr(model.lstm, n) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"))
        i, f, g, o = 0, hidden, 2 * hidden, 3 * hidden
        b_ih[f + 1 : 2 * hidden] = -10
        w_hh.zero_()
        for row in (i, f, g, o):
            w_ih[row].zero_(); w_hh[row].zero_(); b_ih[row] = 0; b_hh[row] = 0
        b_ih[i], w_ih[i, quote] = -20, 40
        b_ih[f], w_ih[f, quote] = 10, -20
        b_ih[g], w_hh[g, 0] = 1, -10
        b_ih[o] = 10
    return model.eval()


def test_planted_string_cell_is_found_first():
    source = 'ab cd "ab cd" ab cd "ab" cd\nab "cd ab cd" cd\n' * 6
    model = planted_string_lstm()
    states = text.cell_states(model, source)
    report = text.search_cells(states, {"in_string": text.character_features(source)["in_string"]}, top=5)
    best = report["in_string"]["best"][0]
    assert best.cell == 0 and best.measure == "AUC" and best.score > 0.85
    others = [max(s.score, 1 - s.score) for s in report["in_string"]["best"] if s.cell != 0]
    assert max(others) < best.score - 0.05


def test_cell_states_match_the_lstm_module():
    model = text.CharLSTM(hidden=16, layers=2, embedding=8).eval()
    source = "for i in range(3):\n    print(i)\n"
    output, _ = model.lstm(model.embedding(text.encode(source))[None])
    states = text.cell_states(model, source)
    assert torch.allclose(states["h"], output[0], atol=1e-5)
    assert torch.allclose(states["tanh(c)"], torch.tanh(states["c"]))


def test_auc_and_correlation():
    values = torch.tensor([[0.1, 5.0], [0.2, 4.0], [0.9, 3.0], [0.8, 2.0]])
    labels = np.array([0, 0, 1, 1])
    assert torch.allclose(text.auc_per_cell(values, labels), torch.tensor([1.0, 0.0]))
    r = text.correlation_per_cell(values, np.array([1.0, 2.0, 3.0, 4.0]))
    assert r[1] == pytest.approx(-1.0) and 0.8 < r[0] < 1


@pytest.fixture
def steady_clock(monkeypatch):
    """text.train's clock advances 10 ms per reading, so time budgets and schedules do not depend on the load."""
    readings = iter(range(10**9))
    monkeypatch.setattr(text, "time", SimpleNamespace(time=lambda: 1000.0 + 0.01 * next(readings)))


def test_checkpoint_round_trip_and_wrong_shape(tmp_path, steady_clock):
    state = text.train(["def f(x):\n    return x\n" * 40], minutes=0.02, hidden=8, streams=2, window=10,
                       checkpoint=tmp_path / "lstm.pt", progress=False)
    assert state.step > 0
    loaded = text.load_model(tmp_path / "lstm.pt")
    codes = text.encode("x = 1\n")[None]
    assert torch.allclose(loaded(codes)[0], state.model(codes)[0])
    saved = torch.load(tmp_path / "lstm.pt", weights_only=True)
    saved["hidden"] = 16
    torch.save(saved, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="not a char-LSTM checkpoint"):
        text.load_model(tmp_path / "wrong.pt")
    with pytest.raises(FileNotFoundError, match="interpviz train-text"):
        text.load_model(tmp_path / "missing.pt")


def test_training_resumes_where_it_stopped(tmp_path, steady_clock):
    corpus = ["while True:\n    pass\n" * 30, "x = 1\n" * 30]
    first = text.train(corpus, minutes=0.01, hidden=8, streams=2, window=10, checkpoint=tmp_path / "c.pt", progress=False)
    resumed = text.train(corpus, minutes=0.02, hidden=8, streams=2, window=10, checkpoint=tmp_path / "c.pt",
                         resume=True, progress=False)
    assert resumed.step > first.step


def test_final_lr_anneals_over_the_run_and_constant_lr_stays(tmp_path, steady_clock):
    corpus = ["for i in range(3):\n    print(i)\n" * 40]
    constant = text.train(corpus, minutes=0.01, hidden=8, streams=2, window=10, lr=1e-2, progress=False)
    assert constant.optimizer.param_groups[0]["lr"] == 1e-2
    annealed = text.train(corpus, minutes=0.01, hidden=8, streams=2, window=10, lr=1e-2, final_lr=1e-4,
                          progress=False)
    assert annealed.step > 1 and annealed.optimizer.param_groups[0]["lr"] < 1e-3


def test_corpus_split_is_by_file_and_deterministic(tmp_path):
    for name in ("a.py", "b.py", "test/skip.py", "c.py", "u.py"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("x = '\u00e9'\n" if name == "u.py" else f"\tname = '{name}'\n")
    corpus = text.stdlib_corpus(tmp_path, validation_share=2)
    names = sorted(name for name, _ in corpus.train + corpus.validation)
    assert names == ["a.py", "b.py", "c.py"]
    assert "\t" not in corpus.text() and "        name" in corpus.text() + corpus.text("validation")
    assert text.stdlib_corpus(tmp_path, validation_share=2) == corpus


def test_html_and_snippets():
    page = text.colour_text_html("a<b\n", np.array([1.0, -1.0, 0.0, 0.5]), title="cell 3")
    assert "&lt;" in page and "rgb(" in page and "cell 3" in page and "&#8629;<br>" in page
    snippets = text.top_snippets("abcdefghij" * 10, np.arange(100.0), count=2, context=5)
    assert [position for position, _ in snippets] == [99, 93]


def test_coloured_text_stays_readable_and_is_centred_on_zero():
    import re

    page = text.colour_text_html("abcde", np.array([-4.0, -1.0, 0.0, 1.0, 4.0]))
    body = page.split('font-family:monospace')[1]
    colours = [tuple(int(part) for part in match) for match in re.findall(r"rgb\((\d+),(\d+),(\d+)\)", body)]
    luminance = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b in colours]
    assert min(luminance) > 100, "black characters must stay readable on the strongest colour"
    assert colours[2][0] > 240 and colours[2][1] > 240 and colours[2][2] > 240, "zero is (nearly) white"
    assert colours[4][0] > colours[4][2] and colours[0][2] > colours[0][0], "positive red, negative blue"
