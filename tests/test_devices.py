"""Device handling: every function that takes a model runs it on the model's device, training uses the chosen one.

A CPU-only machine cannot run a second real device, so most tests put the model on PyTorch's ``meta`` device
(tensors with shapes but no numbers) and record the device of every tensor that reaches any module. A function
that forgets to move its inputs hands a module CPU tensors and the test fails. A meta model cannot give numbers
back, so the call may stop where it reads results (``call_on_meta``); the tests at the end need a GPU.
"""

import pytest
import torch
from torch.nn.modules.module import register_module_forward_pre_hook

from interpviz import experiments, settings, smallcnn, tabular, text
from interpviz.rotation import random_rotation

META = torch.device("meta")
TINY = smallcnn.TrainingConfig(width=2, iterations=3, batch_size=2, train_images=2)
CODE = "def f(x):\n    return [x, 'a']  # note\n" * 6
READING_META_RESULTS = ("Cannot copy out of meta tensor", "cannot be called on meta tensors")

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


@pytest.fixture
def module_input_devices():
    """The device type of every tensor handed to any module's forward while the test runs."""
    devices: list[str] = []

    def record(_module, inputs):
        devices.extend(tensor.device.type for tensor in _tensors(inputs))

    handle = register_module_forward_pre_hook(record)
    yield devices
    handle.remove()


@pytest.fixture
def meta_by_default(monkeypatch):
    """``settings.default_device()`` answers the meta device, as it answers CUDA on a machine with a GPU."""
    monkeypatch.setattr(settings, "default_device", lambda: META)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPVIZ_CACHE", str(tmp_path))
    return tmp_path


def call_on_meta(function, *args, **kwargs):
    """Call ``function``; on a meta model it may fail only where it reads numbers back (then None is returned)."""
    try:
        return function(*args, **kwargs)
    except (RuntimeError, NotImplementedError) as error:
        if not any(message in str(error) for message in READING_META_RESULTS):
            raise
        return None


def assert_all_on_meta(devices: list[str]) -> None:
    assert devices, "no module was called"
    assert set(devices) == {"meta"}, f"modules received tensors on {sorted(set(devices))}"


def assert_module_on(module: torch.nn.Module, device_type: str) -> None:
    places = {tensor.device.type for tensor in [*module.parameters(), *module.buffers()]}
    assert places == {device_type}


# settings


def test_the_device_variable_picks_the_device(monkeypatch):
    monkeypatch.setenv(settings.DEVICE_VARIABLE, "meta")
    assert settings.default_device() == META
    assert settings.resolve_device(None) == META
    assert settings.resolve_device("cpu") == torch.device("cpu")


def test_a_device_variable_that_names_no_device_is_an_error(monkeypatch):
    monkeypatch.setenv(settings.DEVICE_VARIABLE, "graphics card")
    with pytest.raises(ValueError, match="INTERPVIZ_DEVICE='graphics card' is not a device"):
        settings.default_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_asking_for_a_gpu_that_is_not_there_is_an_error(monkeypatch):
    monkeypatch.setenv(settings.DEVICE_VARIABLE, "cuda")
    with pytest.raises(RuntimeError, match="INTERPVIZ_DEVICE='cuda' asks for a GPU"):
        settings.default_device()


def test_describe_device_is_one_line_naming_the_device(monkeypatch):
    monkeypatch.setenv(settings.DEVICE_VARIABLE, "cpu")
    line = settings.describe_device()
    assert line.startswith("device: cpu (") and "INTERPVIZ_DEVICE" in line and "\n" not in line


def test_to_cpu_copies_nested_tensors_and_keeps_the_rest():
    weight = torch.ones(2, device=META)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        settings.to_cpu({"layer": [weight]})
    original = torch.zeros(2)
    copied = settings.to_cpu({"layer": [original, ("name", 3)]})
    copied["layer"][0] += 1
    assert original.sum() == 0 and copied["layer"][1] == ("name", 3)


def test_repeatable_kernels_restores_the_cudnn_flags():
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    with settings.repeatable_kernels():
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == before


# functions that take a model run it on the model's device


def test_accuracy_runs_on_the_models_device(tmp_cache, module_input_devices):
    data = smallcnn.task_data(4, seed=3, progress=False)
    model = smallcnn.SmallCNN(smallcnn.TASK_OUTPUTS["all"], width=2).to(META)
    call_on_meta(smallcnn.accuracy, model, data, "all")
    assert_all_on_meta(module_input_devices)


def test_pooled_features_run_on_the_models_device_and_come_back_to_the_cpu(tmp_cache, module_input_devices):
    data = smallcnn.task_data(4, seed=3, progress=False)
    model = smallcnn.SmallCNN(smallcnn.TASK_OUTPUTS["all"], width=2).to(META)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        experiments.pooled_features(model, data, batch_size=2)
    assert_all_on_meta(module_input_devices)


def test_a_rotated_network_stays_on_the_models_device():
    model = smallcnn.SmallCNN(smallcnn.TASK_OUTPUTS["all"], width=2).to(META)
    rotation = random_rotation(model.classifier.in_features, seed=0)
    assert_module_on(smallcnn.rotated(model, rotation), "meta")
    assert_module_on(experiments.rotated_network(model, rotation).module, "meta")


def test_unit_activations_run_on_the_models_device_and_come_back_to_the_cpu(module_input_devices):
    data = tabular.credit_default_data(count=20)
    model = tabular.CreditMLP().to(META)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        tabular.unit_activations(model, data, "layers.1")
    assert_all_on_meta(module_input_devices)


def test_the_preferred_input_search_runs_on_the_models_device(monkeypatch, module_input_devices):
    data = tabular.credit_default_data(count=20)
    model = tabular.CreditMLP().to(META)
    # A meta model has no activations to start from: the data's activations (on the CPU, as unit_activations
    # returns them) stand in, so that the search itself runs.
    monkeypatch.setattr(tabular, "unit_activations", lambda model, data, layer: torch.rand(len(data.default), 16))
    call_on_meta(tabular.preferred_input, model, data, "layers.1", unit=0, steps=2)
    assert_all_on_meta(module_input_devices)


def test_cell_states_run_on_the_models_device_and_come_back_to_the_cpu(module_input_devices):
    model = text.CharLSTM(hidden=8, embedding=4).to(META)
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        text.cell_states(model, CODE[:40])
    assert_all_on_meta(module_input_devices)


@pytest.mark.parametrize("use", [lambda model: text.bits_per_character(model, CODE, chunk=50),
                                 lambda model: text.sample(model, "def ", length=3)],
                         ids=["bits_per_character", "sample"])
def test_reading_and_writing_text_run_on_the_models_device(use, module_input_devices):
    model = text.CharLSTM(hidden=8, embedding=4).to(META)
    call_on_meta(use, model)
    assert_all_on_meta(module_input_devices)


# training uses settings.default_device() (CUDA when there is a GPU) unless told otherwise


def test_small_cnns_train_on_the_default_device(tmp_cache, meta_by_default, module_input_devices):
    call_on_meta(smallcnn.train, TINY, progress=False, use_cache=False)
    assert_all_on_meta(module_input_devices)


def test_fine_tuning_runs_on_the_default_device(tmp_cache, meta_by_default, module_input_devices):
    base = smallcnn.TrainedCNN(smallcnn.SmallCNN(smallcnn.TASK_OUTPUTS[TINY.task], TINY.width), TINY)
    call_on_meta(smallcnn.fine_tune, base, "shapes", iterations=2, progress=False, use_cache=False)
    assert_all_on_meta(module_input_devices)


def test_the_credit_mlp_trains_on_the_default_device(meta_by_default, module_input_devices):
    call_on_meta(tabular.train_mlp, tabular.credit_default_data(count=20), epochs=2)
    assert_all_on_meta(module_input_devices)


def test_the_char_lstm_trains_on_the_default_device(meta_by_default, module_input_devices):
    state = call_on_meta(text.train, [CODE], minutes=0.05, hidden=8, streams=2, window=8, progress=False)
    assert state is None or next(state.model.parameters()).device == META
    assert_all_on_meta(module_input_devices)


def test_a_random_network_is_made_on_the_default_device(meta_by_default):
    assert_module_on(smallcnn.random_network(TINY), "meta")


# saved weights are CPU tensors, loaded onto the device asked for


def test_cached_networks_load_onto_the_device_asked_for(tmp_cache):
    trained = smallcnn.train(TINY, progress=False, device="cpu")
    loaded = smallcnn.train(TINY, progress=False, device=META)
    assert_module_on(loaded.model, "meta")
    assert_module_on(loaded.at(0), "meta")
    assert {tensor.device.type for weights in loaded.checkpoints.values() for tensor in weights.values()} == {"cpu"}
    assert loaded.checkpoints.keys() == trained.checkpoints.keys()


def test_the_char_lstm_loads_onto_the_device_asked_for_and_by_default(meta_by_default):
    assert_module_on(text.load_model(device="cpu"), "cpu")
    assert_module_on(text.load_model(), "meta")


def test_char_lstm_checkpoints_are_written_from_the_cpu(tmp_path):
    model = text.CharLSTM(hidden=8, embedding=4).to(META)
    state = text.TrainingState(model, torch.optim.Adam(model.parameters()))
    with pytest.raises(NotImplementedError, match="Cannot copy out of meta tensor"):
        text.save_checkpoint(state, tmp_path / "lstm.pt")


# on a GPU (benchmarks/gpu_check.sh runs these)


@needs_cuda
def test_describe_device_names_the_gpu():
    assert torch.cuda.get_device_name() in settings.describe_device()


@needs_cuda
def test_small_cnns_train_repeatably_on_the_gpu_and_save_cpu_weights(tmp_cache):
    config = smallcnn.TrainingConfig(width=4, iterations=20, batch_size=8, train_images=32)
    first = smallcnn.train(config, progress=False, use_cache=False, device="cuda")
    again = smallcnn.train(config, progress=False, use_cache=False, device="cuda")
    assert_module_on(first.model, "cuda")
    for iteration, weights in first.checkpoints.items():
        for name, tensor in weights.items():
            assert tensor.device.type == "cpu"
            assert torch.equal(tensor, again.checkpoints[iteration][name]), (iteration, name)
    validation = smallcnn.task_data(16, seed=2, progress=False)
    on_cpu = experiments.pooled_features(first.model.cpu(), validation)
    on_gpu = experiments.pooled_features(first.model.cuda(), validation)
    assert on_gpu.device.type == "cpu"
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-4)
    rotation = random_rotation(first.model.classifier.in_features, seed=0)
    images = validation.images.cuda().float() / 255
    torch.testing.assert_close(smallcnn.rotated(first.model, rotation)(images), first.model(images), rtol=1e-3,
                               atol=1e-4)


@needs_cuda
def test_the_credit_mlp_trains_repeatably_on_the_gpu():
    data = tabular.credit_default_data(count=500)
    model, scores = tabular.train_mlp(data, epochs=30, device="cuda")
    again, scores_again = tabular.train_mlp(data, epochs=30, device="cuda")
    assert scores == scores_again
    for weight, weight_again in zip(model.parameters(), again.parameters()):
        assert weight.device.type == "cuda" and torch.equal(weight, weight_again)
    activations = tabular.unit_activations(model, data, "layers.1")
    assert activations.device.type == "cpu"
    preferred = tabular.preferred_input(model, data, "layers.1", int(activations.mean(dim=0).argmax()), steps=20)
    assert preferred.activation >= preferred.best_row_activation - 1e-4


@needs_cuda
def test_the_char_lstm_gives_the_same_answers_on_the_gpu(tmp_path):
    on_cpu, on_gpu = text.load_model(device="cpu"), text.load_model(device="cuda")
    states_cpu, states_gpu = text.cell_states(on_cpu, CODE), text.cell_states(on_gpu, CODE)
    for kind, values in states_gpu.items():
        assert values.device.type == "cpu"
        torch.testing.assert_close(values, states_cpu[kind], rtol=1e-3, atol=1e-4)
    assert text.bits_per_character(on_gpu, CODE) == pytest.approx(text.bits_per_character(on_cpu, CODE), rel=1e-3)
    assert text.sample(on_gpu, "def ", length=40, seed=3) == text.sample(on_gpu, "def ", length=40, seed=3)
    state = text.train([CODE], minutes=0.02, hidden=8, streams=2, window=8, progress=False, device="cuda")
    text.save_checkpoint(state, tmp_path / "lstm.pt")
    saved = torch.load(tmp_path / "lstm.pt", weights_only=True)
    assert {tensor.device.type for tensor in saved["model"].values()} == {"cpu"}
    assert_module_on(text.load_model(tmp_path / "lstm.pt", device="cuda"), "cuda")


def test_the_denoiser_trains_and_loads_on_the_chosen_device(monkeypatch):
    from interpviz import data
    from interpviz.optvis import prior

    seen = []
    original = prior.DenoisingAutoencoder.forward

    def recording_forward(self, images):
        seen.append((images.device.type, next(self.parameters()).device.type))
        return original(self, images)

    monkeypatch.setattr(prior.DenoisingAutoencoder, "forward", recording_forward)
    monkeypatch.setattr(settings, "default_device", lambda: torch.device("cpu"))
    patches = data.patch_set(size=32, per_photo_and_scale=1)
    with pytest.raises(NotImplementedError, match="meta"):  # a meta tensor has no numbers to bring back
        prior.train_denoiser(patches, steps=2, batch_size=4, progress=False, device="meta")
    assert seen == [("meta", "meta"), ("meta", "meta")], "training batches go to the model's device"
    model, _ = prior.train_denoiser(patches, steps=1, batch_size=4, progress=False, device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert next(prior.load_denoiser().parameters()).device.type == "cpu", "it follows settings.default_device()"
