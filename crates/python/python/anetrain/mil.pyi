from os import PathLike
from typing import Dict, List, Literal, Mapping, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

Device = Literal["auto", "cpu", "cpu-f16", "ane", "reference"]

class Kernel:
    """A compiled MIL program with its own input and output buffers."""

    @property
    def inputs(self) -> List[Tuple[str, str, List[int]]]:
        """(name, dtype, shape) of each input, in signature order."""
    @property
    def outputs(self) -> List[Tuple[str, str, List[int]]]:
        """(name, dtype, shape) of each output, in return order."""
    @property
    def device(self) -> str:
        """The device it was compiled for, e.g. ``cpu (f32)``."""
    def run(self, **inputs: npt.ArrayLike) -> Dict[str, npt.NDArray[np.float32]]:
        """Writes the given inputs (float32 or float16 arrays of the declared shapes; inputs
        not given keep their previous values), runs, and returns every output as float32."""

def compile(
    text: str,
    weights: Optional[Union[str, PathLike[str], Mapping[str, bytes]]] = None,
    device: Device = "cpu",
) -> Kernel:
    """Compiles the ``main`` function of MIL ``text``. ``weights`` is the directory that
    BLOBFILE paths ``@model_path/...`` are relative to, or a dict from each BLOBFILE path (as
    the MIL writes it) to the file's bytes."""
