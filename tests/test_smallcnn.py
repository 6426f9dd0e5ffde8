"""The small CNN family, its training and caching, the rotated copy, and the experiment helpers."""

import numpy as np
import pytest
import torch

from interpviz import concepts, experiments, smallcnn
from interpviz.concepts import synthetic_dataset
from interpviz.rotation import random_rotation

TINY = smallcnn.TrainingConfig(width=4, iterations=6, batch_size=8, train_images=48)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def random_and_trained():
    """A width-8 network trained for 200 steps and its own initial weights, dissected at conv5 on 128 images."""
    config = smallcnn.TrainingConfig(width=8, iterations=200, train_images=512)
    trained = smallcnn.train(config, progress=False, use_cache=False)
    networks = {"random": smallcnn.random_network(config), "trained": trained.model}
    results = experiments.dissect_networks(networks, synthetic_dataset(progress=False), ["conv5"], limit=128,
                                           progress=False)
    return trained, {name: layers["conv5"] for name, layers in results.items()}


def test_task_labels_follow_the_ground_truth():
    rng, labels = np.random.default_rng(5), concepts.concept_labels()
    kinds = set()
    for _ in range(40):
        _, truth = concepts.draw_example(64, rng, labels)
        texture_or_scene, shapes = smallcnn.task_labels(truth, labels)
        if "scene" not in truth:
            kinds.add("texture")
            assert texture_or_scene == list(concepts.TEXTURES).index(labels.names[truth["texture"][0] - 1][0])
            assert shapes.sum() == 0
        else:
            kinds.add("scene")
            scene = list(concepts.SCENES).index(labels.names[truth["scene"][0] - 1][0])
            assert texture_or_scene - len(concepts.TEXTURES) == scene
            present = {labels.names[n - 1][0] for n in np.unique(truth["object"]) if n}
            assert {list(concepts.OBJECTS)[i] for i in np.flatnonzero(shapes)} == present
    assert kinds == {"texture", "scene"}


def test_network_shapes_and_sizes():
    model = smallcnn.SmallCNN(21, width=4).eval()
    small, large = torch.rand(2, 3, 112, 112), torch.rand(2, 3, 224, 224)
    assert model.features(small).shape == (2, 32, 7, 7)
    assert model(large).shape == (2, 21)
    assert [name for name, _ in model.named_children()] == [*smallcnn.LAYERS, "classifier"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in smallcnn.SmallCNN(8, 4, batch_norm=False).modules())


def test_checkpoint_iterations():
    marks = smallcnn.checkpoint_iterations(1000)
    assert marks[0] == 0 and marks[-1] == 1000 and marks == sorted(set(marks)) and len(marks) >= 6
    assert smallcnn.checkpoint_iterations(1) == [0, 1]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        smallcnn.TrainingConfig(task="colour")
    with pytest.raises(ValueError, match="invalid"):
        smallcnn.TrainingConfig(width=0)


def test_training_is_reproducible_and_cached(tmp_cache):
    first = smallcnn.train(TINY, progress=False)
    path = tmp_cache / "smallcnn" / f"{TINY.key()}.pt"
    assert path.is_file()
    again = smallcnn.train(TINY, progress=False, use_cache=False)
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name]), name
    loaded = smallcnn.train(TINY, progress=False)
    assert loaded.validation_accuracy == first.validation_accuracy
    assert set(loaded.validation_accuracy) == {"texture_scene", "shapes", "all"}
    assert sorted(loaded.checkpoints) == smallcnn.checkpoint_iterations(TINY.iterations)
    assert not torch.equal(loaded.at(0).conv1[0].weight, loaded.model.conv1[0].weight)
    with pytest.raises(KeyError, match="no checkpoint"):
        loaded.at(3)


def test_fine_tuning_keeps_the_base_and_changes_the_head(tmp_cache):
    base = smallcnn.train(TINY, progress=False)
    before = {name: value.clone() for name, value in base.model.state_dict().items()}
    tuned = smallcnn.fine_tune(base, "shapes", 4, progress=False)
    assert tuned.model.classifier.out_features == len(concepts.OBJECTS) and tuned.config.task == "shapes"
    assert set(tuned.validation_accuracy) == {"shapes"}
    assert not torch.equal(tuned.model.conv5[0].weight, base.model.conv5[0].weight)
    for name, value in base.model.state_dict().items():
        assert torch.equal(value, before[name]), f"fine-tuning changed the base network's {name}"


def test_rotated_copy_computes_the_same_function_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = smallcnn.SmallCNN(21, width=4).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    rotation = random_rotation(32, seed=1)
    turned = smallcnn.rotated(model, rotation)
    images = torch.rand(3, 3, 112, 112)
    with torch.no_grad():
        assert torch.allclose(turned(images), model(images), atol=1e-5)
        assert not torch.allclose(turned.features(images), model.features(images), atol=1e-3)
        assert torch.allclose(turned.features(images), torch.einsum("ij,bjhw->bihw", rotation.float(),
                                                                      model.features(images)), atol=1e-5)
    assert len(model.conv5) == 3
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    with pytest.raises(ValueError, match="32 channels"):
        smallcnn.rotated(model, random_rotation(8))


def test_random_weights_give_fewer_detectors_than_training(random_and_trained):
    _, results = random_and_trained
    assert len(results["trained"].detectors()) > len(results["random"].detectors())
    assert results["trained"].unique_detectors() > results["random"].unique_detectors()


def test_label_changes_and_transitions_account_for_every_unit(random_and_trained):
    _, results = random_and_trained
    before, after = results["random"], results["trained"]
    changes = experiments.label_changes(before, after)
    assert [change.unit for change in changes] == list(range(before.units))
    became = sum(change.kind == "became a detector" for change in changes)
    lost = sum(change.kind == "lost its concept" for change in changes)
    assert became - lost == len(after.detectors()) - len(before.detectors())
    names, matrix = experiments.category_transitions(before, after)
    assert names[-1] == "none" and matrix.sum() == before.units
    assert matrix[:, :-1].sum() == len(after.detectors()) and matrix[:-1].sum() == len(before.detectors())
    rows = experiments.detector_table(results)
    assert [row["detectors"] for row in rows] == [len(before.detectors()), len(after.detectors())]
    shared = experiments.units_per_concept(after)
    assert sum(count for _, count in shared) == len(after.detectors())
    assert [count for _, count in shared] == sorted((count for _, count in shared), reverse=True)


def test_a_linear_probe_scores_the_same_on_rotated_features(random_and_trained):
    trained, _ = random_and_trained
    data = smallcnn.task_data(300, seed=2, progress=False)
    features = experiments.pooled_features(trained.model, data)
    labels = torch.where(data.shapes.any(dim=1), data.shapes.argmax(dim=1) + 1, 0)  # first object kind, 0: none
    rotation = random_rotation(features.shape[1], seed=0).float()
    plain = experiments.linear_probe_accuracy(features[:200], labels[:200], features[200:], labels[200:])
    turned = features @ rotation.T
    rotated = experiments.linear_probe_accuracy(turned[:200], labels[:200], turned[200:], labels[200:])
    assert plain > labels[200:].bincount().max() / 100 + 0.2
    assert abs(plain - rotated) <= 0.011


def test_experiment_explorer_recounts_and_follows_the_experiment(random_and_trained):
    from interpviz.widgets import ExperimentExplorer

    _, results = random_and_trained
    networks = {name: {"conv5": result} for name, result in results.items()}
    explorer = ExperimentExplorer({"random weights": networks, "trained only": {"trained": networks["trained"]}})
    explorer.show()
    assert list(explorer.layer.options) == ["conv5"]
    assert f"<td>{len(results['trained'].detectors())}</td>" in explorer.table.value
    explorer.iou_threshold.value = 0.3
    strict = len(results["trained"].detectors(0.3))
    assert f"<td>trained</td><td>{results['trained'].units}</td><td>{strict}</td>" in explorer.table.value
    explorer.experiment.value = "trained only"
    assert "random" not in explorer.table.value


def test_rotation_sweep_and_its_explorer(random_and_trained):
    from interpviz.widgets import RotationExplorer

    trained, results = random_and_trained
    dataset = synthetic_dataset(progress=False)
    sweep = experiments.rotation_sweep(trained.model, dataset, [0.0, 1.0], seed=0, limit=128, progress=False)
    unrotated = sweep.results[0]
    tolerance = 0.01  # Q^0 = I up to rounding at the threshold
    assert (unrotated.iou - results["trained"].iou).abs().max() < tolerance
    clear = results["trained"].clear_best(2 * tolerance)  # no IoU moved by tolerance, so these cannot flip
    unrotated_best = unrotated.best()
    assert clear, "no unit has a clear best concept, so the labels were not compared"
    assert all(unrotated_best[unit].label == label.label for unit, label in clear.items())
    assert not torch.allclose(sweep.results[1].iou, unrotated.iou, atol=1e-3)
    assert len(sweep.unique_detectors()) == len(sweep.detectors()) == len(sweep.unique_detectors_paper()) == 2
    explorer = RotationExplorer(trained.model, dataset, sweep, units=[0, 1], images_per_unit=2)
    explorer.show()
    explorer.amount.value = 1
    assert explorer.summary.value.startswith("a = 1.00")
