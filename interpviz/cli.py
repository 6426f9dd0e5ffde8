"""Command line: ``doctor`` (what works offline), ``render`` and ``grid`` (feature visualizations), ``dissect``,
``atlas``, ``book``, ... ``dissect`` and ``atlas`` also run under ``torchrun`` (``torchrun --nproc_per_node=N -m
interpviz ...``): the processes share the work and rank 0 writes the report or the atlas's index."""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, NoReturn

import torch

from interpviz.book import STALL_SECONDS, build_book


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that a bad argument gives one line on stderr (exit status 2), not the usage too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, convert: Callable[[str], float], is_allowed: Callable[[float], bool], allowed: str) -> float:
    """``text`` converted with ``convert`` if ``is_allowed`` accepts it; else an error saying what is allowed."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not is_allowed(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1: sizes, steps, counts."""
    return _number(text, int, lambda value: value >= 1, "a whole number of at least 1")


def seed_number(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1."""
    return _number(text, int, lambda value: 0 <= value < 2**32, f"a whole number from 0 to {2**32 - 1}")


def positive_float(text: str) -> float:
    """A finite number greater than 0: minutes, seconds, learning rates."""
    return _number(text, float, lambda value: 0 < value < math.inf, "a number greater than 0")


def non_negative_float(text: str) -> float:
    """A finite number of at least 0."""
    return _number(text, float, lambda value: 0 <= value < math.inf, "a number of at least 0")


def fraction(text: str) -> float:
    """A number from 0 to 1, both included (an IoU threshold)."""
    return _number(text, float, lambda value: 0 <= value <= 1, "a number from 0 to 1")


def open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a quantile)."""
    return _number(text, float, lambda value: 0 < value < 1, "a number between 0 and 1 (both excluded)")


def _check_writable_folder(folder: Path) -> None:
    """Raise ArgumentTypeError unless ``folder`` exists and this user may write in it."""
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write in folder {str(folder)!r}")


def _output_file(text: str, suffixes: tuple[str, ...], example: str) -> Path:
    """A file to write: not a folder, ending in one of ``suffixes``, in a writable folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name, e.g. {str(path / example)!r}")
    if path.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{text!r} does not end in {' or '.join(suffixes)}; "
                                         f"give a file name such as {example!r}")
    _check_writable_folder(path.parent)
    return path


def image_file(text: str) -> Path:
    """A PNG or JPEG file to write, in a folder that exists."""
    return _output_file(text, (".png", ".jpg", ".jpeg"), "unit.png")


def checkpoint_file(text: str) -> Path:
    """A PyTorch checkpoint file to write (.pt or .pth), in a folder that exists."""
    return _output_file(text, (".pt", ".pth"), "model.pt")


def output_folder(text: str) -> Path:
    """A folder to write into: new or existing, not a file, in a writable folder that exists."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder")
    _check_writable_folder(path.absolute().parent)
    return path


def report_folder(text: str) -> Path:
    """A folder for the dissection report: new, empty, or an earlier report (replaced once the new one is complete)."""
    from interpviz.dissect_report import check_report_folder

    path = output_folder(text)
    try:
        check_report_folder(path)
    except FileExistsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return path


def dataset_choice(text: str) -> str:
    """``synthetic`` or a Broden folder that exists."""
    if text != "synthetic" and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be 'synthetic' or a Broden folder; there is no folder {text!r}")
    return text


def doctor() -> int:
    """Print which models have weights available here, the device, and the cache folders."""
    from interpviz import settings
    from interpviz.models.zoo import ZOO, WeightsNotFoundError, efficientnet_lite0_weights_path, torchvision_weights_file
    from interpviz.speed import GLIBC_MEMORY_REUSE

    print(f"torch {torch.__version__}, device {settings.default_device()}, fast mode {settings.fast_mode()}")
    print(f"generated data folder: {settings.cache_dir()}")
    print(f"torch hub cache: {Path(torch.hub.get_dir()) / 'checkpoints'}")
    temporary = Path(tempfile.gettempdir())
    print(f"dissection feature files: {temporary} ({shutil.disk_usage(temporary).free / 2**30:.1f} GiB free; "
          f"TMPDIR moves them)")
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
    if platform.libc_ver()[0] == "glibc" and settings.default_device().type == "cpu":
        if os.environ.get("GLIBC_TUNABLES", "") == GLIBC_MEMORY_REUSE:
            print("glibc memory reuse: on (GLIBC_TUNABLES as make sets it)")
        else:
            print(f"glibc memory reuse: off. Dissection on a CPU runs about 1.5x faster when Python starts with "
                  f"GLIBC_TUNABLES={GLIBC_MEMORY_REUSE} (make sets it; see benchmarks/README.md)")
    trained = sorted((settings.cache_dir() / "smallcnn").glob("*.pt"))
    print(f"small CNNs trained and cached: {len(trained)} (chapters 07 and 08 train missing ones on first use)")
    for path in trained:
        print(f"  {path.stem}")
    return 0


def parse_channels(text: str) -> list[int]:
    """Parse a channel list such as ``0-15`` or ``1,3,8-10`` into ``[1, 3, 8, 9, 10]``."""
    channels: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            start = int(first)
            stop = int(last) if last else start
            if stop < start:
                raise ValueError
            channels.extend(range(start, stop + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad channel list {text!r}; write e.g. 0-15 or 1,3,8-10") from None
    return channels


def parse_unit(text: str) -> tuple[str, int]:
    """Parse ``LAYER:CHANNEL`` (e.g. ``blocks.6:3``)."""
    layer, _, channel = text.rpartition(":")
    if not layer or not channel.isdigit():
        raise argparse.ArgumentTypeError(f"bad unit {text!r}; write LAYER:CHANNEL, e.g. blocks.6:3")
    return layer, int(channel)


def render_command(arguments: argparse.Namespace) -> int:
    """Render one channel (or its negation) and save it as a PNG."""
    from interpviz import models
    from interpviz.optvis import channel_objective, render

    model = models.load(arguments.model)
    layer, channel = arguments.unit
    model.layer(layer).check_channel(channel)
    objective = channel_objective(layer, channel)
    result = render(model, -objective if arguments.negative else objective, size=arguments.size,
                    steps=arguments.steps, seed=arguments.seed)
    result.pil[0].save(arguments.output)
    print(f"{objective.description}{' (negated)' if arguments.negative else ''}: "
          f"final value {float(result.final_scores[0]):.3f}; wrote {arguments.output}")
    return 0


def grid_command(arguments: argparse.Namespace) -> int:
    """Render several channels of one layer as one batch and save them tiled in one PNG."""
    from interpviz import models
    from interpviz.images import tile
    from interpviz.optvis import recipes

    model = models.load(arguments.model)
    result = recipes.channel_grid(model, arguments.layer, arguments.channels, size=arguments.size,
                                  steps=arguments.steps, seed=arguments.seed)
    tile(result.images, columns=arguments.columns).save(arguments.output)
    print(f"{len(arguments.channels)} channels of {arguments.layer}; wrote {arguments.output}")
    return 0


def train_prior_command(arguments: argparse.Namespace) -> int:
    """Train the denoising-autoencoder image prior on the bundled photos' patches and save it."""
    from interpviz import data
    from interpviz.optvis.prior import save_denoiser, train_denoiser

    patches = data.patch_set(size=64, per_photo_and_scale=arguments.patches_per_scale, seed=arguments.seed + 1)
    model, report = train_denoiser(patches, steps=arguments.steps, seed=arguments.seed)
    save_denoiser(model, arguments.output)
    print(f"trained on {len(patches)} patches of 64 px for {report.steps} steps in {report.seconds:.0f} s; "
          f"held-out MSE: noisy input {report.validation_mse_noisy_input:.5f}, "
          f"reconstruction {report.validation_mse_reconstruction:.5f}; wrote {arguments.output}")
    return 0


def dissect_command(arguments: argparse.Namespace) -> int:
    """Dissect layers of a zoo model on the synthetic concept set or a Broden folder, and write the report.

    Under torchrun the processes share the images and rank 0 writes the report.
    """
    from interpviz import distributed, models
    from interpviz.broden import BrodenDataset
    from interpviz.concepts import synthetic_dataset
    from interpviz.dissect import DissectionSettings, dissect
    from interpviz.dissect_report import write_report

    settings = DissectionSettings(quantile=arguments.quantile, iou_threshold=arguments.iou_threshold,
                                  exact=arguments.exact, direction="negative" if arguments.negative else "positive",
                                  batch_size=arguments.batch_size, feature_file=arguments.feature_file)
    with distributed.process_group(arguments.timeout):
        with distributed.rank_zero_first():
            model = models.load(arguments.model, pretrained=not arguments.random_weights, device=distributed.device())
            dataset = synthetic_dataset() if arguments.dataset == "synthetic" else BrodenDataset(arguments.dataset)
        results = dissect(model, dataset, arguments.layers, settings, limit=arguments.limit,
                          progress=distributed.is_main())
        if distributed.is_main():
            index = write_report(model, dataset, results, arguments.out)
            for layer, result in results.items():
                print(f"{layer}: {len(result.detectors())} detectors of {result.units} units, "
                      f"{result.unique_detectors()} unique concepts; {result.detectors_by_category()}")
            print(f"report: {index}" + (f" ({distributed.world_size()} processes)" if distributed.is_active() else ""))
    return 0


def atlas_command(arguments: argparse.Namespace) -> int:
    """Render every channel of some layers into a browsable HTML atlas; under torchrun the ranks share the channels."""
    from interpviz import distributed, models
    from interpviz.atlas import AtlasSettings, write_atlas

    settings = AtlasSettings(size=arguments.size, steps=arguments.steps, seed=arguments.seed,
                             batch=arguments.batch, examples=arguments.examples)
    with distributed.process_group(arguments.timeout):
        with distributed.rank_zero_first():
            model = models.load(arguments.model, pretrained=not arguments.random_weights, device=distributed.device())
        index = write_atlas(model, arguments.layers, arguments.out, settings, progress=distributed.is_main())
        if distributed.is_main():
            print(f"atlas of {model.name}: open {index}")
    return 0


def fetch_broden_command(arguments: argparse.Namespace) -> int:
    """Download and unpack the real Broden dataset (needs a network); a folder it created is removed if that fails."""
    from interpviz import settings
    from interpviz.broden import fetch_broden

    destination = arguments.destination
    if settings.offline():
        raise ConnectionError(f"{settings.OFFLINE_VARIABLE} is set, so nothing is downloaded; unset it, or fetch "
                              f"Broden on a machine with internet and unpack it into {destination}")
    created = not destination.exists()
    try:
        print(f"Broden unpacked in {fetch_broden(destination, arguments.resolution)}")
    except BaseException:
        if created:
            shutil.rmtree(destination, ignore_errors=True)
        raise
    return 0


def parse_layers(text: str) -> list[str]:
    """Parse ``L1,L2`` into a list of layer names."""
    layers = [layer.strip() for layer in text.split(",") if layer.strip()]
    if not layers:
        raise argparse.ArgumentTypeError("give at least one layer, e.g. --layers blocks.4,blocks.12")
    return layers


def train_text_command(arguments: argparse.Namespace) -> int:
    """Train the character-level LSTM on the standard library's source, resumably, and report its quality."""
    from interpviz import text

    corpus = text.stdlib_corpus()
    print(f"corpus: {len(corpus.train)} training files ({len(corpus.text()):,} characters), "
          f"{len(corpus.validation)} validation files")
    state = text.train([source for _, source in corpus.train], minutes=arguments.minutes, hidden=arguments.hidden, layers=arguments.layers,
                       lr=arguments.lr, final_lr=arguments.final_lr, seed=arguments.seed, checkpoint=arguments.output, resume=arguments.resume)
    validation = corpus.text("validation")[: arguments.validation_chars]
    bits = text.bits_per_character(state.model, validation)
    print(f"{state.step} steps in {state.seconds / 60:.1f} min; validation {bits:.3f} bits/char on "
          f"{len(validation):,} characters; wrote {arguments.output}")
    return 0


def _add_timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=positive_float, default=1800.0,
                        help="under torchrun: seconds a process waits for the others at each collective operation "
                             "before the job stops (default 1800)")


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=positive_int, default=128, help="image size in pixels (default 128)")
    parser.add_argument("--steps", type=positive_int, default=256, help="optimization steps (default 256)")
    parser.add_argument("--seed", type=seed_number, default=0, help="random seed (default 0)")
    parser.add_argument("-o", "--output", type=image_file, required=True, help="PNG (or JPEG) file to write")


def build_parser() -> ArgumentParser:
    """The ``interpviz`` command's parser: every argument is checked here, before any work starts."""
    parser = ArgumentParser(prog="interpviz", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="report which weights and data are available offline")
    book = commands.add_parser("book", help="execute the notebooks and write HTML pages plus index.html")
    book.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    book.add_argument("--out", type=Path, default=Path("build/book"))
    book.add_argument("--stall-seconds", type=positive_float, default=STALL_SECONDS,
                      help="rerun a notebook whose kernel used no CPU this long (default %(default).0f)")
    render_parser = commands.add_parser("render", help="feature visualization of one channel, saved as PNG")
    render_parser.add_argument("model", help="zoo model, e.g. efficientnet_lite0")
    render_parser.add_argument("unit", type=parse_unit, help="LAYER:CHANNEL, e.g. blocks.6:3")
    render_parser.add_argument("--negative", action="store_true", help="minimize the channel instead")
    _add_render_options(render_parser)
    grid_parser = commands.add_parser("grid", help="feature visualizations of many channels, tiled in one PNG")
    grid_parser.add_argument("model", help="zoo model, e.g. efficientnet_lite0")
    grid_parser.add_argument("layer", help="layer name, e.g. blocks.6")
    grid_parser.add_argument("--channels", type=parse_channels, default=list(range(16)), help="e.g. 0-15 or 1,3,8-10")
    grid_parser.add_argument("--columns", type=positive_int, default=8, help="images per row (default 8)")
    _add_render_options(grid_parser)
    prior_parser = commands.add_parser("train-prior", help="train the denoising-autoencoder image prior")
    prior_parser.add_argument("--steps", type=positive_int, default=4000, help="training steps (default 4000)")
    prior_parser.add_argument("--patches-per-scale", type=positive_int, default=40, help="patches per photo and scale")
    prior_parser.add_argument("--seed", type=seed_number, default=0)
    prior_parser.add_argument("-o", "--output", type=checkpoint_file, default="data/denoiser.pt")
    dissect_parser = commands.add_parser("dissect", help="Network Dissection of layers, with an HTML report")
    dissect_parser.add_argument("model", help="zoo model, e.g. efficientnet_lite0")
    dissect_parser.add_argument("--layers", type=parse_layers, required=True, help="e.g. blocks.4,blocks.12")
    dissect_parser.add_argument("--dataset", type=dataset_choice, default="synthetic",
                                help="'synthetic' (default) or a Broden folder")
    dissect_parser.add_argument("--out", type=report_folder, required=True,
                                help="folder for tally.csv files and HTML: new, empty, or an earlier report, "
                                     "which is replaced once the new one is complete")
    dissect_parser.add_argument("--quantile", type=open_fraction, default=0.005)
    dissect_parser.add_argument("--iou-threshold", type=fraction, default=0.04)
    dissect_parser.add_argument("--exact", action="store_true", help="exact thresholds (more memory)")
    dissect_parser.add_argument("--negative", action="store_true", help="dissect the bottom quantile instead")
    dissect_parser.add_argument("--random-weights", action="store_true", help="the random-weights baseline")
    dissect_parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N images")
    dissect_parser.add_argument("--batch-size", type=positive_int, default=None,
                                help="images per batch (default: 32 on a GPU; on a CPU, as many as keep tensors under 32 MiB)")
    dissect_parser.add_argument("--feature-file", choices=["auto", "always", "never"], default="auto",
                                help="keep layer outputs in a file under TMPDIR so the model runs once "
                                     "(default: when they take under 4 GiB and half the free disk)")
    _add_timeout_option(dissect_parser)
    atlas_parser = commands.add_parser("atlas", help="every channel of some layers, rendered into an HTML atlas")
    atlas_parser.add_argument("model", help="zoo model, e.g. efficientnet_lite0")
    atlas_parser.add_argument("--layers", type=parse_layers, default=None,
                              help="e.g. blocks.4,head (default: the model's privileged unit layers)")
    atlas_parser.add_argument("--out", type=output_folder, required=True,
                              help="folder of the atlas: new, or an unfinished atlas to resume (finished channels "
                                   "are skipped)")
    atlas_parser.add_argument("--size", type=positive_int, default=128, help="image size in pixels (default 128)")
    atlas_parser.add_argument("--steps", type=positive_int, default=256, help="optimization steps (default 256)")
    atlas_parser.add_argument("--seed", type=seed_number, default=0, help="random seed (default 0)")
    atlas_parser.add_argument("--batch", type=positive_int, default=16,
                              help="channels rendered together in one batch (default 16)")
    atlas_parser.add_argument("--examples", type=positive_int, default=8,
                              help="dataset examples per channel (default 8)")
    atlas_parser.add_argument("--random-weights", action="store_true", help="the random-weights baseline")
    _add_timeout_option(atlas_parser)
    fetch_parser = commands.add_parser("fetch-broden", help="download the real Broden dataset (needs internet)")
    fetch_parser.add_argument("destination", type=output_folder)
    fetch_parser.add_argument("--resolution", type=int, default=224, choices=[224, 227, 384])
    text_parser = commands.add_parser("train-text", help="train the char-LSTM on the stdlib source (resumable)")
    text_parser.add_argument("--minutes", type=positive_float, default=12.0, help="wall-clock training time (default 12)")
    text_parser.add_argument("--hidden", type=positive_int, default=256)
    text_parser.add_argument("--layers", type=positive_int, default=1)
    text_parser.add_argument("--seed", type=seed_number, default=0)
    text_parser.add_argument("--lr", type=positive_float, default=2e-3, help="Adam learning rate (default 2e-3)")
    text_parser.add_argument("--final-lr", type=non_negative_float, default=None,
                             help="anneal the learning rate from --lr to this value with a cosine over this run")
    text_parser.add_argument("--resume", action="store_true", help="continue from the checkpoint at --output")
    text_parser.add_argument("--validation-chars", type=positive_int, default=300_000)
    text_parser.add_argument("-o", "--output", type=checkpoint_file, default="data/char_lstm.pt")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``interpviz``: 0 on success; 2 and one line on stderr for a bad argument or error; 130 on Ctrl-C."""
    arguments = build_parser().parse_args(argv)
    commands_by_name = {
        "doctor": lambda: doctor(),
        "book": lambda: build_book(arguments.notebooks, arguments.out, stall_seconds=arguments.stall_seconds),
        "render": lambda: render_command(arguments),
        "grid": lambda: grid_command(arguments),
        "train-prior": lambda: train_prior_command(arguments),
        "dissect": lambda: dissect_command(arguments),
        "atlas": lambda: atlas_command(arguments),
        "train-text": lambda: train_text_command(arguments),
        "fetch-broden": lambda: fetch_broden_command(arguments),
    }
    try:
        return commands_by_name[arguments.command]()
    except (ValueError, IndexError, OSError) as error:
        print(f"interpviz {arguments.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interpviz {arguments.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
