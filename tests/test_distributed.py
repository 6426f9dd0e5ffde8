"""Two processes on the CPU (gloo; started with torch.multiprocessing, or torchrun for the command) give what
one process gives."""

import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from interpviz import cli, distributed, models
from interpviz.atlas import AtlasSettings, write_atlas
from interpviz.broden import BrodenDataset
from interpviz.concepts import generate
from interpviz.data import patch_set
from interpviz.dissect import DissectionSettings, dissect

ATLAS_SETTINGS = AtlasSettings(size=32, steps=4, batch=2, examples=2)
LAYERS = ["1", "2"]
EXACT = DissectionSettings(exact=True, batch_size=5)
HISTOGRAM = DissectionSettings(exact=False, batch_size=5)
TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_group(rank: int, world: int, port: int) -> None:
    """What torchrun does for a process: its environment, then the process group; one thread, like torchrun."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), INTERPVIZ_DEVICE="cpu")
    torch.set_num_threads(1)
    distributed.start(TIMEOUT_SECONDS)


def run_ranks(function, world: int, *arguments) -> None:
    """Run ``function(rank, world, port, *arguments)`` in ``world`` fresh processes; raises if one fails."""
    mp.spawn(function, args=(world, free_port(), *arguments), nprocs=world, join=True)


def tiny_model():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, stride=2, padding=1),
                           nn.ReLU()).eval()
    return models.wrap(module, name="tiny", input_size=32)


def tiny_patches():
    return patch_set(size=32, per_photo_and_scale=1, scales=(0.5,), photos=["astronaut", "coffee", "chelsea"])


def dissection_model():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1)).eval()
    return models.wrap(module, name="tiny")


@pytest.fixture(scope="module")
def concept_set(tmp_path_factory):
    """24 synthetic images: 5 batches of 5, so rank 0 has 3 batches and rank 1 has 2 (and an empty one)."""
    return generate(tmp_path_factory.mktemp("broden") / "set", count=24, size=32, seed=1, progress=False)


def summary(results) -> dict[str, dict[str, torch.Tensor]]:
    fields = ("thresholds", "threshold_error", "iou", "intersection", "unit_area", "concept_area", "top_values",
              "above_minimum", "mask_fraction")
    return {layer: {field: getattr(result, field) for field in fields} for layer, result in results.items()}


def dissection_rank(rank: int, world: int, port: int, root: str, folder: str) -> None:
    join_group(rank, world, port)
    try:
        dataset = BrodenDataset(root)
        found = {name: summary(dissect(dissection_model(), dataset, LAYERS, settings, progress=False))
                 for name, settings in (("exact", EXACT), ("histogram", HISTOGRAM))}
        torch.save(found, Path(folder) / f"rank{rank}.pt")
    finally:
        distributed.stop()


@pytest.fixture(scope="module")
def two_processes(concept_set, tmp_path_factory):
    """What each of two processes found, dissecting the concept set together in exact and histogram mode."""
    folder = tmp_path_factory.mktemp("ranks")
    run_ranks(dissection_rank, 2, str(concept_set), str(folder))
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(2)]


def one_process(concept_set, settings):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return summary(dissect(dissection_model(), BrodenDataset(concept_set), LAYERS, settings, progress=False))
    finally:
        torch.set_num_threads(threads)


def test_two_processes_find_exactly_the_single_process_thresholds_and_ious(two_processes, concept_set):
    single = one_process(concept_set, EXACT)
    for rank, found in enumerate(two_processes):
        for layer in LAYERS:
            for field, expected in single[layer].items():
                assert torch.equal(found["exact"][layer][field], expected), (rank, layer, field)
    assert (single["2"]["iou"] > 0).any()


def test_histogram_thresholds_of_two_processes_are_within_their_reported_error(two_processes, concept_set):
    exact = one_process(concept_set, EXACT)
    for found in two_processes:
        assert all(torch.equal(found["histogram"][layer][field], two_processes[0]["histogram"][layer][field])
                   for layer in LAYERS for field in found["histogram"][layer])
        for layer in LAYERS:
            thresholds, error = found["histogram"][layer]["thresholds"], found["histogram"][layer]["threshold_error"]
            finite = exact[layer]["thresholds"].isfinite()
            assert finite.any()
            gap = (thresholds - exact[layer]["thresholds"]).abs()[finite]
            assert (gap <= error[finite] * 1.0001 + 1e-6).all(), (layer, gap, error)


def atlas_rank(rank: int, world: int, port: int, out: str) -> None:
    join_group(rank, world, port)
    try:
        write_atlas(tiny_model(), None, out, ATLAS_SETTINGS, patches=tiny_patches(), progress=False)
    finally:
        distributed.stop()


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_the_sharded_atlas_equals_the_single_process_atlas(tmp_path):
    run_ranks(atlas_rank, 2, str(tmp_path / "two"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        write_atlas(tiny_model(), None, tmp_path / "one", ATLAS_SETTINGS, patches=tiny_patches(), progress=False)
    finally:
        torch.set_num_threads(threads)
    single, sharded = files(tmp_path / "one"), files(tmp_path / "two")
    assert len(single) == 2 + 2 + (4 + 5) * 5  # atlas.json, index, 2 layer pages, 5 files per channel
    assert sorted(sharded) == sorted(single)
    different = [name for name in single if single[name] != sharded[name]]
    assert different == []


def failing_rank(rank: int, world: int, port: int, folder: str) -> None:
    """Rank 1 raises before its work; rank 0 works and must fail too. Each writes down how it ended."""
    join_group(rank, world, port)
    try:
        if rank == 1:
            raise RuntimeError("planted failure of rank 1")
        write_atlas(tiny_model(), None, Path(folder) / "atlas", ATLAS_SETTINGS, patches=tiny_patches(), progress=False)
    except BaseException as error:
        (Path(folder) / f"rank{rank}.txt").write_text("".join(traceback.format_exception_only(type(error), error)))
        raise
    finally:
        distributed.stop()


def test_a_failing_rank_takes_the_job_down(tmp_path):
    context = mp.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=failing_rank, args=(rank, 2, port, str(tmp_path))) for rank in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [process.exitcode != 0 for process in processes] == [True, True]
    assert "planted failure" in (tmp_path / "rank1.txt").read_text()
    survivor = (tmp_path / "rank0.txt").read_text()
    assert "RankLostError: rank 0 of 2" in survivor and "process-group timeout" in survivor


def test_torchrun_dissect_writes_the_single_process_tally(tmp_path, concept_set, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_DEVICE", "cpu")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "interpviz",
               "dissect", "efficientnet_lite0", "--layers", "stem", "--dataset", str(concept_set), "--limit", "8",
               "--batch-size", "2", "--exact"]
    finished = subprocess.run([*command, "--out", str(tmp_path / "two")], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "(2 processes)" in finished.stdout
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(command[command.index("dissect"):] + ["--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "two" / "stem-tally.csv").read_text() == (tmp_path / "one" / "stem-tally.csv").read_text()
