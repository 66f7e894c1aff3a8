"""anetrain: train, fine-tune and run transformers on the Apple Neural Engine, and the same
MIL kernels on any CPU.

``anetrain.load(path).eval(tokens)`` is the mean loss of token rows;
``anetrain.mil.compile(text, device="cpu").run(**inputs)`` runs a MIL kernel on numpy arrays.
"""

from ._native import AnetrainError, Model, __version__, load
from . import mil

__all__ = ["AnetrainError", "Model", "load", "mil", "__version__"]
