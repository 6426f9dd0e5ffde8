"""interpviz: interpret the learned features of neural networks, with a notebook course to go with it."""

from interpviz.settings import fast_mode, pick, seed_everything

__version__ = "0.1.0"

__all__ = ["fast_mode", "pick", "seed_everything", "__version__"]
