"""Concrete models, datasets and the training loop that records trajectories.

The only package that knows MNIST or Conv8. Nothing here downloads: models are random-init and
datasets are read from local files (see :mod:`zoo.data`).
"""

from zoo.errors import ZooError
from zoo.models import build, example_inputs, list_models

__all__ = ["ZooError", "build", "example_inputs", "list_models"]
