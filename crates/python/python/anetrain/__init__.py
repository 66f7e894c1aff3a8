"""anetrain: train, fine-tune and run transformers on the Apple Neural Engine, and the same
MIL kernels on any CPU.

``anetrain.load(path)`` gives a model that evaluates token rows (``.eval``), generates
(``.generate``, streamed with ``stream=True``) and exports (``.export``);
``anetrain.Trainer(model, data=...)`` trains it step by step and saves checkpoints;
``anetrain.mil.compile(text, device="cpu").run(**inputs)`` runs a MIL kernel on numpy arrays.
"""

from ._native import AnetrainError, Model, Stream, Trainer, __version__, load
from . import mil

__all__ = ["AnetrainError", "Model", "Stream", "Trainer", "load", "mil", "__version__"]
