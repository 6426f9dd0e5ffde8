"""A small CNN family trained on the synthetic concept images: the subjects of the dissection experiments.

Five conv blocks (conv, optional batch norm, ReLU), named ``conv1`` .. ``conv5``, with 2x2 max pooling
after the first four, then global average pooling and one linear layer. Widths are
(w, 2w, 4w, 4w, 8w) for a base width w. The network takes RGB images with values in [0, 1] at any size
and works at 112 px: a 224 px concept image is shrunk by 2 inside the model, so dissection reads it as is.

Training images are drawn fresh by the concept generator (``interpviz.concepts.draw_example``) with a
different seed from the dissection set, so the units are dissected on images they were not trained on.
Tasks, all read from the generator's ground truth:

- ``texture_scene``: which of the 12 textures or 54 scenes the image shows (66 classes). A scene is an
  arrangement (row, column, grid, ...) of two kinds of objects, so the network has to recognise the
  objects and where they stand; the background colour says nothing;
- ``shapes``: which of the 18 object kinds are in the image (18 yes/no outputs; texture images have none);
- ``all``: both at once (84 outputs). Accuracy counts an image right only when every answer is right.

Trained networks are cached in the cache folder under a name made from their settings, so a notebook
trains each one once (with a progress bar) and loads it afterwards. Training runs on ``settings.default_device()``
(CUDA when there is a GPU) unless told otherwise; the cache holds CPU tensors and is loaded onto the device
asked for. Functions that take a network run it on its own device.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from interpviz import concepts, settings
from interpviz.checkpoints import load_checkpoint
from interpviz.models.zoo import LoadedModel, wrap
from interpviz.rotation import fold_into_linear, with_rotated_output

WORKING_SIZE = 112
SCENE_CLASSES = len(concepts.TEXTURES) + len(concepts.SCENES)
TASK_OUTPUTS = {"texture_scene": SCENE_CLASSES, "shapes": len(concepts.OBJECTS),
                "all": SCENE_CLASSES + len(concepts.OBJECTS)}
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


class SmallCNN(nn.Module):
    """conv1..conv5 (conv, [batch norm], ReLU) with max pooling between, global average pool, linear."""

    def __init__(self, outputs: int, width: int = 16, batch_norm: bool = True):
        super().__init__()
        self.width, self.batch_norm = width, batch_norm
        channels = [3, width, 2 * width, 4 * width, 4 * width, 8 * width]
        for index, name in enumerate(LAYERS):
            block = [nn.Conv2d(channels[index], channels[index + 1], 3, padding=1, bias=not batch_norm)]
            if batch_norm:
                block.append(nn.BatchNorm2d(channels[index + 1]))
            block.append(nn.ReLU())
            setattr(self, name, nn.Sequential(*block))
        self.classifier = nn.Linear(channels[-1], outputs)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """conv5's output for images in [0, 1] of any size (resized to 112 px)."""
        if images.shape[-2:] != (WORKING_SIZE, WORKING_SIZE):
            images = F.interpolate(images, size=(WORKING_SIZE, WORKING_SIZE), mode="bilinear",
                                   align_corners=False, antialias=True)
        x = (images - 0.5) / 0.25
        for name in LAYERS[:-1]:
            x = F.max_pool2d(getattr(self, name)(x), 2)
        return self.conv5(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images).mean(dim=(2, 3)))


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides a trained network; its cache file is named from these values."""

    task: str = "all"
    width: int = 16
    batch_norm: bool = True
    seed: int = 0
    iterations: int = 1000
    batch_size: int = 32
    lr: float = 3e-3
    train_images: int = 4000

    def __post_init__(self):
        if self.task not in TASK_OUTPUTS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {sorted(TASK_OUTPUTS)}")
        if self.width < 1 or self.iterations < 0 or self.batch_size < 1 or self.train_images < 2:
            raise ValueError(f"invalid training settings: {self}")

    def key(self) -> str:
        """The cache name: these settings and the concept generator's version (its tasks change with it)."""
        norm = "bn" if self.batch_norm else "nobn"
        return (f"smallcnn_v{concepts.GENERATOR_VERSION}_{self.task}_w{self.width}_{norm}_seed{self.seed}"
                f"_it{self.iterations}_b{self.batch_size}_lr{self.lr:g}_n{self.train_images}")


@dataclass
class TaskData:
    """Training images at 112 px (uint8, N x 3 x 112 x 112) with both tasks' targets."""

    images: torch.Tensor
    texture_scene: torch.Tensor
    shapes: torch.Tensor

    def head(self, count: int) -> TaskData:
        """The first ``count`` images and their targets."""
        return TaskData(self.images[:count], self.texture_scene[:count], self.shapes[:count])

    def targets(self, task: str, indices: torch.Tensor) -> torch.Tensor:
        if task == "texture_scene":
            return self.texture_scene[indices]
        if task == "shapes":
            return self.shapes[indices]
        return torch.cat([F.one_hot(self.texture_scene[indices], SCENE_CLASSES).float(), self.shapes[indices]], dim=1)


def task_labels(truth: dict, labels: concepts.ConceptLabels) -> tuple[int, np.ndarray]:
    """(texture class 0..11 or scene class 12..65, multi-hot of the 18 object kinds) from one image's ground truth."""
    if "scene" in truth:
        texture_or_scene = len(concepts.TEXTURES) + list(concepts.SCENES).index(labels.names[truth["scene"][0] - 1][0])
    else:
        texture_or_scene = list(concepts.TEXTURES).index(labels.names[truth["texture"][0] - 1][0])
    shapes = np.zeros(len(concepts.OBJECTS), np.float32)
    present = np.unique(truth["object"]) if "object" in truth else []
    for number in present:
        if number:
            shapes[list(concepts.OBJECTS).index(labels.names[number - 1][0])] = 1
    return texture_or_scene, shapes


def task_data(count: int = 4000, seed: int = 1, progress: bool = True) -> TaskData:
    """``count`` freshly drawn concept images (224 px, averaged down to 112) and their task targets; cached."""
    path = settings.cache_dir() / f"smallcnn_data_v{concepts.GENERATOR_VERSION}_n{count}_seed{seed}.npz"
    if path.is_file():
        saved = np.load(path)
        return TaskData(torch.from_numpy(saved["images"]), torch.from_numpy(saved["texture_scene"]),
                        torch.from_numpy(saved["shapes"]))
    rng = np.random.default_rng(seed)
    labels = concepts.concept_labels()
    images = np.zeros((count, 3, WORKING_SIZE, WORKING_SIZE), np.uint8)
    texture_scene = np.zeros(count, np.int64)
    shapes = np.zeros((count, len(concepts.OBJECTS)), np.float32)
    for index in tqdm(range(count), desc="drawing training images", disable=not progress):
        image, truth = concepts.draw_example(2 * WORKING_SIZE, rng, labels)
        halved = image.reshape(WORKING_SIZE, 2, WORKING_SIZE, 2, 3).mean(axis=(1, 3))
        images[index] = np.round(halved).astype(np.uint8).transpose(2, 0, 1)
        texture_scene[index], shapes[index] = task_labels(truth, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, texture_scene=texture_scene, shapes=shapes)
    return TaskData(torch.from_numpy(images), torch.from_numpy(texture_scene), torch.from_numpy(shapes))


def task_loss(task: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for the 66 classes; for the 18 objects, binary cross-entropy summed over them (so each
    yes/no answer weighs like the class answer); their sum for ``all``. Averaged over the batch."""
    if task == "texture_scene":
        return F.cross_entropy(logits, targets)
    if task == "shapes":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(dim=1).mean()
    return task_loss("texture_scene", logits[:, :SCENE_CLASSES], targets[:, :SCENE_CLASSES].argmax(dim=1)) + task_loss(
        "shapes", logits[:, SCENE_CLASSES:], targets[:, SCENE_CLASSES:])


def task_correct(task: str, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per image: True when every answer of the task is right."""
    if task == "texture_scene":
        return logits.argmax(dim=1) == targets
    if task == "shapes":
        return ((logits > 0).float() == targets).all(dim=1)
    return task_correct("texture_scene", logits[:, :SCENE_CLASSES], targets[:, :SCENE_CLASSES].argmax(dim=1)) & task_correct(
        "shapes", logits[:, SCENE_CLASSES:], targets[:, SCENE_CLASSES:])


TASK_PARTS = {"texture_scene": ("texture_scene",), "shapes": ("shapes",), "all": ("texture_scene", "shapes", "all")}


@torch.no_grad()
def accuracy(model: nn.Module, data: TaskData, task: str, batch_size: int = 200) -> dict[str, float]:
    """Share of images answered right, per part of the task (for ``all``: each part, and both at once), on the
    model's device."""
    device = settings.model_device(model)
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(TASK_PARTS[task], 0)
    for start in range(0, len(data.images), batch_size):
        indices = torch.arange(start, min(start + batch_size, len(data.images)))
        logits = model(data.images[indices].to(device).float() / 255)
        outputs = {task: logits} if task != "all" else {"texture_scene": logits[:, :SCENE_CLASSES],
                                                        "shapes": logits[:, SCENE_CLASSES:], "all": logits}
        for part in correct:
            correct[part] += int(task_correct(part, outputs[part], data.targets(part, indices).to(device)).sum())
    model.train(was_training)
    return {part: count / len(data.images) for part, count in correct.items()}


@dataclass
class TrainedCNN:
    """A trained network, its settings, its weights at the checkpoint iterations (on the CPU), and its record."""

    model: SmallCNN
    config: TrainingConfig
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)
    validation_accuracy: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def at(self, iteration: int) -> SmallCNN:
        """A new network with the weights saved at ``iteration`` (eval mode), on the device of ``model``."""
        if iteration not in self.checkpoints:
            raise KeyError(f"no checkpoint at iteration {iteration}; saved: {sorted(self.checkpoints)}")
        model = SmallCNN(TASK_OUTPUTS[self.config.task], self.config.width, self.config.batch_norm)
        model.load_state_dict(self.checkpoints[iteration])
        return model.to(settings.model_device(self.model)).eval()


def checkpoint_iterations(iterations: int) -> list[int]:
    """0, then roughly doubling steps up to ``iterations``: where training is saved for dissection over time."""
    marks = {0, iterations}
    step = max(iterations // 64, 1)
    while step < iterations:
        marks.add(step)
        step *= 2
    return sorted(marks)


@settings.repeatable_kernels()
def _fit(model: SmallCNN, config: TrainingConfig, data: TaskData, progress: bool, description: str) -> TrainedCNN:
    device = settings.model_device(model)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=max(config.iterations, 1),
                                                    pct_start=0.15)
    marks = checkpoint_iterations(config.iterations)
    trained = TrainedCNN(model, config)
    started = time.perf_counter()
    model.train()
    for iteration in tqdm(range(config.iterations + 1), desc=description, disable=not progress):
        if iteration in marks:
            trained.checkpoints[iteration] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if iteration == config.iterations:
            break
        indices = torch.randint(len(data.images), (config.batch_size,), generator=generator)
        images = data.images[indices].to(device).float() / 255
        flip = (torch.rand(config.batch_size, generator=generator) < 0.5).to(device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        loss = task_loss(config.task, model(images), data.targets(config.task, indices).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if iteration % 25 == 0:
            trained.history.append((iteration, loss.item()))
    model.eval()
    trained.checkpoints = settings.to_cpu(trained.checkpoints)
    trained.seconds = time.perf_counter() - started
    return trained


def _cache_path(key: str) -> Path:
    return settings.cache_dir() / "smallcnn" / f"{key}.pt"


def _save(trained: TrainedCNN, path: Path, base: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(trained.config), "checkpoints": trained.checkpoints, "history": trained.history,
                "validation_accuracy": trained.validation_accuracy, "seconds": trained.seconds, "base": base}, path)


def _load(path: Path, device: torch.device) -> TrainedCNN:
    saved = load_checkpoint(path, "It is a trained network in interpviz's cache: delete the file and it is "
                                  "retrained on next use.")
    config = TrainingConfig(**saved["config"])
    trained = TrainedCNN(SmallCNN(TASK_OUTPUTS[config.task], config.width, config.batch_norm), config,
                         {int(k): v for k, v in saved["checkpoints"].items()}, [tuple(h) for h in saved["history"]],
                         saved["validation_accuracy"], saved["seconds"])
    trained.model.load_state_dict(trained.checkpoints[max(trained.checkpoints)])
    trained.model.to(device).eval()
    return trained


def validation_data() -> TaskData:
    """500 held-out images for accuracy (another generator seed than training and dissection)."""
    return task_data(500, seed=2, progress=False)


def train(config: TrainingConfig = TrainingConfig(), progress: bool = True, use_cache: bool = True,
          device: torch.device | str | None = None) -> TrainedCNN:
    """Train a SmallCNN on ``config.task`` with checkpoints (see ``checkpoint_iterations``); cached by settings.

    It trains, or is loaded from the cache, on ``device`` (default: ``settings.default_device()``).
    """
    device = settings.resolve_device(device)
    path = _cache_path(config.key())
    if use_cache and path.is_file():
        return _load(path, device)
    torch.manual_seed(config.seed)
    model = SmallCNN(TASK_OUTPUTS[config.task], config.width, config.batch_norm).to(device)
    data = task_data(config.train_images, seed=1, progress=progress)
    trained = _fit(model, config, data, progress, f"training {config.key()}")
    trained.validation_accuracy = accuracy(trained.model, validation_data(), config.task)
    if use_cache:
        _save(trained, path)
    return trained


def fine_tune(base: TrainedCNN, task: str, iterations: int, lr: float = 1e-3, progress: bool = True,
              use_cache: bool = True, device: torch.device | str | None = None) -> TrainedCNN:
    """A copy of ``base`` with a new output layer for ``task``, all layers trained ``iterations`` more steps,
    on ``device`` (default: ``settings.default_device()``)."""
    device = settings.resolve_device(device)
    config = replace(base.config, task=task, iterations=iterations, lr=lr)
    key = f"{base.config.key()}__finetuned_{config.key()}"
    path = _cache_path(key)
    if use_cache and path.is_file():
        return _load(path, device)
    model = copy.deepcopy(base.model).to(device)
    torch.manual_seed(config.seed)
    model.classifier = nn.Linear(model.classifier.in_features, TASK_OUTPUTS[task]).to(device)
    data = task_data(config.train_images, seed=1, progress=progress)
    trained = _fit(model, config, data, progress, f"fine-tuning to {task}")
    trained.validation_accuracy = accuracy(trained.model, validation_data(), task)
    if use_cache:
        _save(trained, path, base=base.config.key())
    return trained


def random_network(config: TrainingConfig = TrainingConfig(), device: torch.device | str | None = None) -> SmallCNN:
    """The untrained network of ``config`` (its seed's initial weights), in eval mode on ``device`` (default:
    ``settings.default_device()``): the random baseline."""
    torch.manual_seed(config.seed)
    network = SmallCNN(TASK_OUTPUTS[config.task], config.width, config.batch_norm)
    return network.to(settings.resolve_device(device)).eval()


def as_loaded(model: SmallCNN, name: str = "smallcnn") -> LoadedModel:
    """The network as an interpviz model (it reads [0, 1] images), for ``dissect`` and the widgets; its mode
    is left alone (``dissect`` works on an eval-mode copy)."""
    return wrap(model, name=name)


def rotated(model: SmallCNN, rotation: torch.Tensor) -> SmallCNN:
    """A copy whose conv5 outputs R x instead of x, with R^T folded into the classifier: the same function.

    Only conv5 can be rotated this way: its output reaches the classifier through average pooling, which
    is linear; the max pooling after the earlier blocks does not commute with a rotation.
    """
    channels = model.classifier.in_features
    if rotation.shape != (channels, channels):
        raise ValueError(f"conv5 has {channels} channels; the rotation is {tuple(rotation.shape)}")
    turned = with_rotated_output(model, "conv5", rotation)
    turned.classifier = fold_into_linear(model.classifier, rotation)
    return turned.eval()
