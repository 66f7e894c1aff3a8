from os import PathLike
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from . import mil as mil

__version__: str

Device = Literal["auto", "cpu", "cpu-f16", "ane", "reference"]
Path = Union[str, PathLike[str]]

class AnetrainError(Exception):
    """An error reported by anetrain; the message names the problem and the fix."""

class Stream(Iterator[Union[str, int]]):
    """The pieces of a generation as they are produced; dropping it stops the generation."""

    def __iter__(self) -> "Stream": ...
    def __next__(self) -> Union[str, int]: ...

class Model:
    """A loaded model: config, weights and the tokenizer it carries."""

    @property
    def config(self) -> Dict[str, Any]:
        """The configuration (Hugging Face ``config.json`` fields)."""
    def eval(self, tokens: npt.ArrayLike, *, device: Device = "auto") -> float:
        """The mean loss over ``tokens``, a 2-D integer array of rows: each row's inputs are
        ``row[:-1]`` and its targets ``row[1:]``."""
    def logits(self, tokens: Sequence[int]) -> npt.NDArray[np.float32]:
        """The plain-Rust reference model's next-token logits after each position of
        ``tokens``, shape ``(len(tokens), vocab_size)``."""
    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        device: Device = "auto",
        stream: bool = False,
    ) -> Any:
        """Continues ``prompt`` (text, encoded after the tokenizer's BOS, or token ids).
        Returns the completion's text (a list of ids when the model has no tokenizer), or with
        ``stream=True`` a ``Stream`` of its pieces. Temperature 0 is greedy."""
    def export(self, out: Path, *, format: Literal["hf", "llama2c"] = "hf") -> None:
        """Writes the model as a Hugging Face directory (``hf``) or a llama2.c ``.bin``;
        refuses an ``out`` that already holds a model."""

class Trainer:
    """A training run: weights, optimizer state and data position."""

    def __init__(
        self,
        model: Union[Model, Path],
        data: Optional[str] = None,
        out: Optional[Path] = None,
        **options: Any,
    ) -> None:
        """Starts a run of ``model`` (copied) on ``data`` (``synthetic[:TOKENS]``, a .bin shard
        or directory, or a text file; default synthetic). ``out`` is the run directory (locked
        while the trainer lives; run.json, metrics.jsonl and the due checkpoints go there).
        ``options`` are the ``anetrain train`` settings: steps, batch, seq, accum, lr, warmup,
        optimizer, weight_decay, optimizer_state (``"fp32"`` or ``"bf16"``), clip, seed, sampling, save_every, eval_every, eval_batches,
        keep_last, max_skipped_steps, tokenizer, val_data, val_fraction, device; for a LoRA run
        on the frozen model at the path ``model``: lora_rank, lora_alpha, lora_targets
        (``"q_proj,v_proj"`` or a list), lora_layers, adapter (a PEFT or mlx-lm directory to
        continue)."""
    @staticmethod
    def resume(dir: Path, data: Optional[str] = None, **options: Any) -> "Trainer":
        """Continues the run in ``dir`` from its latest intact checkpoint as the uninterrupted
        run would have gone on; ``options`` may change steps, save_every, eval_every,
        eval_batches, keep_last, max_skipped_steps and device."""
    def step(self) -> Dict[str, Any]:
        """One optimizer step; its metrics (step, loss, lr, grad_norm, ...)."""
    def train(
        self, steps: int, callback: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None
    ) -> List[Dict[str, Any]]:
        """Up to ``steps`` steps, stopping at the run's total or when ``callback`` returns
        True; Ctrl-C raises KeyboardInterrupt after the current step."""
    def evaluate(self) -> Dict[str, Any]:
        """The validation loss of the current weights: ``loss``, ``perplexity``, ``tokens``."""
    def save(self, dir: Optional[Path] = None) -> str:
        """Saves a checkpoint into the run directory ``dir`` (default ``out``), with the
        tokenizer; returns the checkpoint's path."""
    @property
    def current_step(self) -> int:
        """Steps completed."""
    @property
    def options(self) -> Dict[str, Any]:
        """The run's settings."""

def load(path: Path, seed: int = 0) -> Model:
    """Loads a run directory (its latest checkpoint), a checkpoint, a Hugging Face directory, a
    llama2.c ``.bin``, or a preset name (random weights from ``seed``)."""
