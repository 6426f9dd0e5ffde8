"""The small models of chapters 05, 07 and 08 on one device: what training and reading them costs there.

Workloads: training a width-16 small CNN (chapters 07 and 08, its validation accuracy included), training the
credit MLP (chapter 05), and the char-LSTM's cell states and bits per character on held-out code (chapter 05).
Data is drawn before the timing starts. Each line gives the seconds and, on a GPU, the peak memory PyTorch
allocated during that workload.

Run: .venv/bin/python benchmarks/small_models.py [--device cpu|cuda] [--iterations 100] [--train-images 512]
     [--characters 6000]
"""

import argparse
import time

import torch

from interpviz import settings, smallcnn, tabular, text


def timed(device: torch.device, work) -> tuple[float, float]:
    """Seconds ``work()`` takes (waiting for the GPU to finish) and the peak MiB allocated on the GPU (nan on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter() - started, torch.cuda.max_memory_allocated() / 2**20
    return time.perf_counter() - started, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: interpviz's default device)")
    parser.add_argument("--iterations", type=int, default=100, help="training steps of the small CNN")
    parser.add_argument("--train-images", type=int, default=512, help="images the small CNN trains on")
    parser.add_argument("--characters", type=int, default=6000, help="held-out characters read by the char-LSTM")
    arguments = parser.parse_args()
    device = settings.resolve_device(arguments.device)
    config = smallcnn.TrainingConfig(width=16, iterations=arguments.iterations, train_images=arguments.train_images)
    smallcnn.task_data(config.train_images, seed=1, progress=False)
    smallcnn.validation_data()
    credit = tabular.credit_default_data()
    lstm = text.load_model(device=device)
    held_out = text.stdlib_corpus().text("validation")[: arguments.characters]
    workloads = {
        f"small CNN, width 16: train {config.iterations} steps": lambda: smallcnn.train(
            config, progress=False, use_cache=False, device=device),
        "credit MLP: train 400 epochs": lambda: tabular.train_mlp(credit, device=device),
        f"char-LSTM: cell states of {len(held_out)} characters": lambda: text.cell_states(lstm, held_out),
        f"char-LSTM: bits per character on {len(held_out)} characters": lambda: text.bits_per_character(lstm, held_out),
    }
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'seconds':>8} {'GPU MiB':>8}  workload")
    for name, work in workloads.items():
        seconds, gpu_mib = timed(device, work)
        print(f"{seconds:>8.2f} {gpu_mib:>8.1f}  {name}")


if __name__ == "__main__":
    main()
