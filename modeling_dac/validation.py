"""Argument checks shared by the package's public functions, so that each refuses bad input with the same message."""

import numbers

__all__ = ["check_positive_integer", "is_integer"]


def is_integer(value) -> bool:
    """A Python or numpy integer: not a bool, and not a whole float (which would turn ids and lengths into floats)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_integer(value, name: str, unit: str = "", whole_floats: bool = False) -> int:
    """
    ``value`` as a Python int, or a `ValueError` naming ``name`` (and the ``unit``, e.g. ``"in Hz"``). With
    ``whole_floats``, a float of whole value (16000.0, as JSON or arithmetic may give a sample rate) is taken too.
    """
    is_float = isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral))
    if whole_floats and is_float and float(value).is_integer():
        value = int(value)
    if not is_integer(value) or value < 1:
        described = f"a positive integer {unit}".rstrip()
        raise ValueError(f"`{name}` must be {described}, got {value!r}.")
    return int(value)
