"""MIL kernels: compile MIL text on a device and run it on numpy arrays."""

from ._native import Kernel, compile

__all__ = ["Kernel", "compile"]
