from os import PathLike
from typing import Any, Dict, Literal, Union

import numpy.typing as npt

from . import mil as mil

__version__: str

Device = Literal["auto", "cpu", "cpu-f16", "ane", "reference"]

class AnetrainError(Exception):
    """An error reported by anetrain; the message names the problem and the fix."""

class Model:
    """A loaded model: config, weights and the tokenizer it carries."""

    @property
    def config(self) -> Dict[str, Any]:
        """The configuration (Hugging Face ``config.json`` fields)."""
    def eval(self, tokens: npt.ArrayLike, *, device: Device = "auto") -> float:
        """The mean loss over ``tokens``, a 2-D integer array of rows: each row's inputs are
        ``row[:-1]`` and its targets ``row[1:]``."""

def load(path: Union[str, PathLike[str]], seed: int = 0) -> Model:
    """Loads a run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    llama2.c ``.bin``, or a preset name (random weights from ``seed``)."""
