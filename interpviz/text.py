"""Interpretable cells in a character-level LSTM trained on Python source code (Karpathy et al. 2015).

The corpus is the running interpreter's own standard library (on every machine). Ground-truth features
for every character come from Python's ``tokenize``: inside a string literal, inside a one-line string,
inside a comment, bracket depth, column, indentation of the logical line, end of line, inside a URL. The cell
search ranks LSTM cells by how well their activation (c, tanh(c) or h) tracks each feature.

Training and loading put the LSTM on ``settings.default_device()`` unless told otherwise; checkpoints hold CPU
tensors. The functions that take the LSTM run it on its own device and return cell states on the CPU.
"""

from __future__ import annotations

import hashlib
import io
import math
import sysconfig
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from interpviz import settings
from interpviz.checkpoints import load_checkpoint

VOCABULARY = "\n" + "".join(chr(code) for code in range(32, 127))
EXCLUDED_PARTS = {"test", "tests", "idle_test", "site-packages", "lib2to3", "__pycache__", "turtledemo"}
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "data" / "char_lstm.pt"
SHIPPED_CHECKPOINT_FIX = ("It ships with interpviz: restore it with 'git checkout -- data/char_lstm.pt' in the "
                          "interpviz folder, or train a new one with 'interpviz train-text'.")


def encode(text: str) -> torch.Tensor:
    """Character codes (indices into VOCABULARY); a character outside it is an error naming it."""
    if not text:
        raise ValueError("the text is empty")
    lookup = {char: index for index, char in enumerate(VOCABULARY)}
    try:
        return torch.tensor([lookup[char] for char in text], dtype=torch.long)
    except KeyError as error:
        position = text.index(error.args[0])
        raise ValueError(f"character {error.args[0]!r} at position {position} is outside the vocabulary "
                         "(newline and printable ASCII; expand tabs first)") from None


def decode(codes: torch.Tensor | list[int]) -> str:
    """Text from character codes."""
    return "".join(VOCABULARY[int(code)] for code in codes)


@dataclass
class Corpus:
    """Source files of the standard library, split into training and validation by file."""

    train: list[tuple[str, str]]
    validation: list[tuple[str, str]]

    def text(self, split: str = "train") -> str:
        """All files of a split joined into one string."""
        files = self.train if split == "train" else self.validation
        return "".join(source for _, source in files)


def stdlib_corpus(root: str | Path | None = None, validation_share: int = 10) -> Corpus:
    """The interpreter's stdlib .py files: no tests or site-packages, ASCII only, tabs expanded, split by file."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    train, validation = [], []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if EXCLUDED_PARTS & set(relative.parts):
            continue
        try:
            source = path.read_text(encoding="ascii").expandtabs(8)
        except (UnicodeDecodeError, OSError):
            continue
        source = "".join(char for char in source if char == "\n" or " " <= char <= "~")
        digest = int(hashlib.sha1(str(relative).encode()).hexdigest(), 16)
        (validation if digest % validation_share == 0 else train).append((str(relative), source))
    if not train:
        raise FileNotFoundError(f"no Python source files found under {str(root)!r}")
    return Corpus(train, validation)


FEATURES = ("in_string", "in_short_string", "in_comment", "bracket_depth", "column", "indentation",
            "end_of_line", "in_url")
BINARY_FEATURES = ("in_string", "in_short_string", "in_comment", "end_of_line", "in_url")


NOT_CODE_TOKENS = {tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT,
                   tokenize.ENCODING, tokenize.ENDMARKER}


def character_features(source: str) -> dict[str, np.ndarray]:
    """Per-character ground truth from ``tokenize``; raises ValueError if the source does not tokenize.

    ``indentation`` is the indentation of the logical line a character belongs to (the column of its first
    token), from the first character of that line up to the next logical line: continuation lines inside
    brackets and the lines of a docstring share their statement's value, and blank and comment-only lines
    keep the value of the code above them, as the block structure does.
    """
    lines = source.splitlines(keepends=True)
    starts = np.cumsum([0] + [len(line) for line in lines])
    size = len(source)
    features = {name: np.zeros(size, np.float32) for name in FEATURES}

    def offset(row: int, col: int) -> int:
        return int(starts[row - 1]) + col

    depth_changes = np.zeros(size + 1, np.float32)
    indentation_changes: list[tuple[int, int]] = [(0, 0)]
    starts_logical_line = True
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError) as error:
        raise ValueError(f"source does not tokenize: {error}") from error
    for token in tokens:
        begin, end = offset(*token.start), offset(*token.end)
        if token.type == tokenize.NEWLINE:
            starts_logical_line = True
        elif token.type not in NOT_CODE_TOKENS and starts_logical_line:
            indentation_changes.append((offset(token.start[0], 0), token.start[1]))
            starts_logical_line = False
        if token.type == tokenize.STRING:
            features["in_string"][begin:end] = 1
            if token.start[0] == token.end[0]:
                features["in_short_string"][begin:end] = 1
            _mark_urls(source, begin, end, features["in_url"])
        elif token.type == tokenize.COMMENT:
            features["in_comment"][begin:end] = 1
            _mark_urls(source, begin, end, features["in_url"])
        elif token.type == tokenize.OP and token.string in "([{":
            depth_changes[begin] += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth_changes[begin + 1] -= 1
    features["bracket_depth"] = np.cumsum(depth_changes)[:size]
    for (begin, value), (end, _) in zip(indentation_changes, indentation_changes[1:] + [(size, 0)]):
        features["indentation"][begin:end] = value
    for row, line in enumerate(lines):
        begin = int(starts[row])
        columns = np.arange(len(line), dtype=np.float32)
        features["column"][begin : begin + len(line)] = columns
        if line.endswith("\n"):
            features["end_of_line"][begin + len(line) - 1] = 1
    return features


def _mark_urls(source: str, begin: int, end: int, marks: np.ndarray) -> None:
    text = source[begin:end]
    position = 0
    while True:
        found = min((i for i in (text.find("http://", position), text.find("https://", position)) if i >= 0), default=-1)
        if found < 0:
            return
        stop = found
        while stop < len(text) and not text[stop].isspace() and text[stop] not in "\"'<>)":
            stop += 1
        marks[begin + found : begin + stop] = 1
        position = stop


class CharLSTM(nn.Module):
    """Embedding, one or more LSTM layers, and a linear read-out over the vocabulary."""

    def __init__(self, hidden: int = 256, layers: int = 1, embedding: int = 64, dropout: float = 0.1):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.embedding = nn.Embedding(len(VOCABULARY), embedding)
        self.lstm = nn.LSTM(embedding, hidden, num_layers=layers, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(hidden, len(VOCABULARY))

    def forward(self, codes: torch.Tensor, state=None):
        output, state = self.lstm(self.embedding(codes), state)
        return self.readout(self.dropout(output)), state


@torch.no_grad()
def cell_states(model: CharLSTM, text: str, layer: int = -1) -> dict[str, torch.Tensor]:
    """Cell state c, tanh(c) and hidden state h of one LSTM layer after every character: (len(text), hidden),
    computed on the model's device and returned on the CPU."""
    device = settings.model_device(model)
    codes = encode(text).to(device)
    inputs = model.embedding(codes)
    weights = [getattr(model.lstm, f"{name}_l{index}") for index in range(model.layers)
               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    layer = layer % model.layers
    for index in range(layer + 1):
        w_ih, w_hh, b_ih, b_hh = weights[4 * index : 4 * index + 4]
        projected = inputs @ w_ih.T + b_ih + b_hh
        h = torch.zeros(model.hidden, device=device)
        c = torch.zeros(model.hidden, device=device)
        hs, cs = [], []
        for step in range(len(codes)):
            gates = projected[step] + w_hh @ h
            i, f, g, o = gates.chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
        inputs = torch.stack(hs)
    cells = torch.stack(cs)
    return {"c": cells.cpu(), "tanh(c)": torch.tanh(cells).cpu(), "h": inputs.cpu()}


def bits_per_character(model: CharLSTM, text: str, chunk: int = 2000) -> float:
    """Cross-entropy in bits per character on ``text``, carrying the state across chunks (on the model's device)."""
    codes = encode(text).to(settings.model_device(model))
    state, total = None, 0.0
    with torch.no_grad():
        for start in range(0, len(codes) - 1, chunk):
            inputs = codes[start : start + chunk][None]
            targets = codes[start + 1 : start + chunk + 1][None]
            inputs = inputs[:, : targets.shape[1]]
            logits, state = model(inputs, state)
            total += F.cross_entropy(logits[0], targets[0], reduction="sum").item()
    return total / (len(codes) - 1) / math.log(2)


@dataclass
class TrainingState:
    """What a checkpoint keeps to resume training: weights, optimizer, step count, elapsed time, loss history.

    A resumed run continues the step count and the time budget; the file order starts again from epoch 0.
    """

    model: CharLSTM
    optimizer: torch.optim.Optimizer
    step: int = 0
    seconds: float = 0.0
    history: list[tuple[int, float]] = field(default_factory=list)


def save_checkpoint(state: TrainingState, path: str | Path) -> None:
    """Save plain state dicts (CPU tensors, whatever the device) and numbers (loadable with weights_only=True)."""
    torch.save({"hidden": state.model.hidden, "layers": state.model.layers,
                "embedding": state.model.embedding.embedding_dim, "model": settings.to_cpu(state.model.state_dict()),
                "optimizer": settings.to_cpu(state.optimizer.state_dict()), "step": state.step,
                "seconds": state.seconds, "history": state.history}, path)


def load_model(path: str | Path | None = None, device: torch.device | str | None = None) -> CharLSTM:
    """A trained CharLSTM from a checkpoint (default: the one shipped in data/char_lstm.pt), in eval mode on
    ``device`` (default: ``settings.default_device()``)."""
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"char-LSTM checkpoint {str(path)!r} not found; train one with 'interpviz train-text'")
    how_to_fix = f"Train a new one with 'interpviz train-text -o {path}'."
    checkpoint = load_checkpoint(path, SHIPPED_CHECKPOINT_FIX if path.resolve() == SHIPPED_CHECKPOINT else how_to_fix)
    try:
        model = CharLSTM(checkpoint["hidden"], checkpoint["layers"], checkpoint["embedding"])
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as error:
        raise ValueError(f"{str(path)!r} is not a char-LSTM checkpoint of this version: {error}") from error
    return model.to(settings.resolve_device(device)).eval()


def train(files: list[str], minutes: float, hidden: int = 256, layers: int = 1, streams: int = 32, window: int = 100,
          lr: float = 2e-3, final_lr: float | None = None, seed: int = 0, checkpoint: str | Path | None = None,
          every_minutes: float = 2.0, resume: bool = False, progress: bool = True,
          device: torch.device | str | None = None) -> TrainingState:
    """Train statefully for ``minutes`` on ``device`` (default: ``settings.default_device()``): each epoch shuffles
    the files, joins them and cuts the result into ``streams`` parallel streams; the state is carried across
    consecutive windows of a stream.

    The learning rate is ``lr`` throughout, or, with ``final_lr``, follows a cosine from ``lr`` down to
    ``final_lr`` over this call's share of the time budget (so a resumed run can anneal a plateaued model).
    """
    if not files or not any(files):
        raise ValueError("no training text")
    device = settings.resolve_device(device)
    torch.manual_seed(seed)
    model = CharLSTM(hidden, layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    state = TrainingState(model, optimizer)
    if resume and checkpoint and Path(checkpoint).is_file():
        saved = load_checkpoint(checkpoint, "Delete it to train from the start, or resume from a good checkpoint.")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state.step, state.seconds, state.history = saved["step"], saved["seconds"], list(map(tuple, saved["history"]))
    started, last_save = time.time() - state.seconds, time.time()
    schedule_start, schedule_seconds = time.time(), max(minutes * 60 - state.seconds, 1e-9)
    bar = tqdm(desc="training char-LSTM", unit="step", disable=not progress)
    model.train()
    epoch = 0
    while time.time() - started < minutes * 60:
        order = np.random.default_rng(seed + epoch).permutation(len(files))
        codes = encode("".join(files[i] for i in order))
        length = len(codes) // streams
        if length <= window:
            raise ValueError(f"the text is too short for {streams} streams of windows of {window} characters")
        data = codes[: length * streams].view(streams, length)
        recurrent = None
        for position in range(0, length - window - 1, window):
            if time.time() - started >= minutes * 60:
                break
            if final_lr is not None:
                progress_share = min((time.time() - schedule_start) / schedule_seconds, 1.0)
                for group in optimizer.param_groups:
                    group["lr"] = final_lr + (lr - final_lr) * 0.5 * (1 + math.cos(math.pi * progress_share))
            inputs = data[:, position : position + window].to(device)
            targets = data[:, position + 1 : position + window + 1].to(device)
            logits, recurrent = model(inputs, recurrent)
            recurrent = tuple(part.detach() for part in recurrent)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            state.step += 1
            if state.step % 50 == 0:
                state.history.append((state.step, loss.item() / math.log(2)))
                bar.set_postfix(epoch=epoch, bits_per_char=f"{state.history[-1][1]:.3f}")
            bar.update(1)
            state.seconds = time.time() - started
            if checkpoint and time.time() - last_save > every_minutes * 60:
                save_checkpoint(state, checkpoint)
                last_save = time.time()
        epoch += 1
    bar.close()
    model.eval()
    if checkpoint:
        save_checkpoint(state, checkpoint)
    return state


def sample(model: CharLSTM, prompt: str, length: int = 300, temperature: float = 0.7, seed: int = 0) -> str:
    """Continue ``prompt`` by sampling ``length`` characters at ``temperature`` (the model runs on its device; the
    draws come from a CPU generator seeded with ``seed``)."""
    device = settings.model_device(model)
    generator = torch.Generator().manual_seed(seed)
    codes = encode(prompt).to(device)
    with torch.no_grad():
        logits, state = model(codes[None])
        produced = []
        last = logits[0, -1]
        for _ in range(length):
            probabilities = F.softmax(last / temperature, dim=0).cpu()
            code = int(torch.multinomial(probabilities, 1, generator=generator))
            produced.append(code)
            logits, state = model(torch.tensor([[code]], device=device), state)
            last = logits[0, -1]
    return prompt + decode(produced)


def auc_per_cell(values: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """ROC AUC of every column of ``values`` (N, cells) for binary ``labels``, via the rank-sum formula."""
    positive = torch.from_numpy(labels.astype(bool))
    count_positive, count_negative = int(positive.sum()), int((~positive).sum())
    if count_positive == 0 or count_negative == 0:
        return torch.full((values.shape[1],), float("nan"))
    ranks = values.argsort(dim=0).argsort(dim=0).double() + 1
    rank_sum = ranks[positive].sum(dim=0)
    return ((rank_sum - count_positive * (count_positive + 1) / 2) / (count_positive * count_negative)).float()


def correlation_per_cell(values: torch.Tensor, target: np.ndarray) -> torch.Tensor:
    """Pearson correlation of every column of ``values`` (N, cells) with ``target``."""
    x = values.double() - values.double().mean(dim=0)
    y = torch.from_numpy(target.astype(np.float64))
    y = y - y.mean()
    denominator = x.norm(dim=0) * y.norm()
    return torch.where(denominator > 0, (x * y[:, None]).sum(dim=0) / denominator, torch.zeros_like(denominator)).float()


@dataclass(frozen=True)
class CellScore:
    """How well one cell's activation (of one kind: c, tanh(c), h) tracks one feature."""

    feature: str
    cell: int
    activation: str
    score: float
    measure: str


def search_cells(states: dict[str, torch.Tensor], features: dict[str, np.ndarray], top: int = 3,
                 auc_threshold: float = 0.8, correlation_threshold: float = 0.5) -> dict[str, dict]:
    """For each feature: the best cells (AUC for binary features, |Pearson r| otherwise) and how many pass.

    AUC is symmetric here: a cell that is *low* inside strings separates them as well as one that is high,
    so max(AUC, 1 - AUC) is ranked.
    """
    report = {}
    for name, target in features.items():
        binary = name in BINARY_FEATURES
        scored = []
        passing = {}
        for kind, values in states.items():
            if binary:
                raw = auc_per_cell(values, target)
                strength = torch.maximum(raw, 1 - raw)
                passing[kind] = int((strength > auc_threshold).sum())
            else:
                raw = correlation_per_cell(values, target)
                strength = raw.abs()
                passing[kind] = int((strength > correlation_threshold).sum())
            for cell in strength.nan_to_num(0).topk(min(top, len(strength))).indices.tolist():
                scored.append(CellScore(name, cell, kind, float(raw[cell]), "AUC" if binary else "r"))
        scored.sort(key=lambda s: -(max(s.score, 1 - s.score) if binary else abs(s.score)))
        report[name] = {"best": scored[:top], "passing": passing}
    return report


TEXT_COLOUR_REACH = 0.28
"""How far from white the text background goes at the largest activation (0.5 would be the colour map's
darkest end, where black characters become unreadable)."""


def colour_text_html(text: str, activation: np.ndarray | torch.Tensor, title: str = "") -> str:
    """Text as HTML spans coloured by activation (blue negative, white zero, red positive), with a legend.

    The diverging map is centred on zero and its saturation is bounded, so every character stays readable.
    """
    import matplotlib

    values = np.asarray(activation, dtype=np.float64)
    scale = max(float(np.abs(values).max()), 1e-8)
    colour_map = matplotlib.colormaps["RdBu_r"]

    def rgb(position: np.ndarray | float) -> np.ndarray:
        return (255 * np.asarray(colour_map(0.5 + TEXT_COLOUR_REACH * np.asarray(position)))[..., :3]).astype(int)

    spans = []
    for char, (red, green, blue) in zip(text, rgb(values / scale)):
        shown = {"<": "&lt;", ">": "&gt;", "&": "&amp;", " ": "&nbsp;", "\n": "&#8629;<br>"}.get(char, char)
        spans.append(f'<span style="background:rgb({red},{green},{blue})">{shown}</span>')
    low, high = (",".join(str(part) for part in rgb(end)) for end in (-1.0, 1.0))
    legend = (f'<div style="font-size:80%">{title} <span style="background:rgb({low})">&nbsp;'
              f'{-scale:.2f}&nbsp;</span><span style="background:white">&nbsp;0&nbsp;</span>'
              f'<span style="background:rgb({high})">&nbsp;{scale:.2f}&nbsp;</span></div>')
    return f'{legend}<div style="font-family:monospace;line-height:1.3">{"".join(spans)}</div>'


def top_snippets(text: str, activation: np.ndarray | torch.Tensor, count: int = 5, context: int = 30) -> list[tuple[int, str]]:
    """The ``count`` positions where a cell is most active, each with ``context`` characters either side."""
    values = torch.as_tensor(np.asarray(activation))
    chosen: list[int] = []
    for position in values.argsort(descending=True).tolist():
        if all(abs(position - other) > context for other in chosen):
            chosen.append(position)
        if len(chosen) == count:
            break
    return [(position, text[max(0, position - context) : position + context + 1]) for position in chosen]
