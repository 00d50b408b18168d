"""The `.dac` file: the codes of one audio clip plus everything needed to decode them, stored without pickle.

Layout. A `.dac` file written here is a safetensors file with one tensor, `codes` (channels, n_codebooks,
frames), stored as uint16 when the codebook size is at most 65536 and as int32 otherwise, and two entries in
the safetensors `__metadata__`: `"format": "modeling_dac.dac"` (the magic) and `"dac_metadata"`, a JSON
object with the fields of `DacFileMetadata` (sample rate, length and loudness of the original, the model's
sampling rate, hop length, codebook size, name and config fingerprint, ...). docs/dac_file.md has the byte
layout.

Why safetensors rather than a layout of our own: it is data only (no code path can run while loading), its
header is parsed by the audited Rust parser of the `safetensors` package, which bounds the header size and
checks the dtype, shape and byte offsets of every tensor against the file size before anything is read, so
huge declared lengths fail without allocating; any safetensors tool can inspect a `.dac` file; and the
package is already a dependency of the model code.

Official descript-audio-codec 1.0.0 `.dac` files are `np.save` of a pickled dict. They are read by parsing
the `.npy` header with numpy's literal parser, checking every pickle opcode and declared length with
`pickletools` before unpickling, and unpickling with a restricted unpickler that can only rebuild plain numpy
arrays, dtypes and scalars (through checked stand-ins, never numpy's own reconstructors), so no code from the
file runs. They load as a `DacFile` whose metadata has `official_dac_version` set and records the official
chunked encoding (`chunk_length`, `padding`); the model fields they do not record are `None`.
"""

import dataclasses
import hashlib
import io
import itertools
import json
import math
import numbers
import os
import pickle
import pickletools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from .atomic import atomic_write_path
from .validation import is_integer

__all__ = [
    "FINGERPRINT_FIELDS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DacFile",
    "DacFileError",
    "DacFileMetadata",
    "config_fingerprint",
    "is_official_container",
]

FORMAT_NAME = "modeling_dac.dac"
FORMAT_VERSION = 1
OFFICIAL_DAC_VERSIONS = ("1.0.0",)
FINGERPRINT_FIELDS = (
    "encoder_hidden_size",
    "downsampling_ratios",
    "decoder_hidden_size",
    "upsampling_ratios",
    "hidden_size",
    "n_codebooks",
    "codebook_size",
    "codebook_dim",
    "sampling_rate",
)

_METADATA_KEY = "dac_metadata"
_MAX_METADATA_CHARS = 1 << 20
_MAX_CODEBOOK_SIZE = 2**31  # codes are stored as int32 above 65536 entries
# Bounds on what decoding trusts: a rate beyond any audio format would make the decoder resample a few frames
# into gigabytes, and a loudness of 1e308 would overflow the gain. Audio in [-1, 1] measures at most about +3 LUFS
# per channel, but float audio on an integer scale (samples up to 32768) measures near +90.
_MAX_SAMPLE_RATE = 1_536_000
_LOUDNESS_RANGE = (-200.0, 200.0)
_UINT16_CODEBOOK_LIMIT = 2**16
_NPY_MAGIC = b"\x93NUMPY"
_OFFICIAL_METADATA_KEYS = frozenset(
    {"input_db", "original_length", "sample_rate", "chunk_length", "channels", "padding", "dac_version"}
)


class DacFileError(ValueError):
    """A `.dac` file is truncated, corrupt, hostile or not a `.dac` file; the message names the file."""


def _integer(
    name: str, value: Any, minimum: int, *, optional: bool = False, maximum: int | None = None
) -> int | None:
    if value is None and optional:
        return None
    if not is_integer(value):
        kind = "an integer or null" if optional else "an integer"
        raise ValueError(f"`{name}` must be {kind}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {value}.")
    return int(value)


def _optional_string(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"`{name}` must be a string or null, got {value!r}.")
    return value


@dataclass(frozen=True)
class DacFileMetadata:
    """
    What a decoder needs besides the codes. `None` marks a value the file does not record (official files
    do not record the model).

    Args:
        sample_rate (`int`): sample rate of the original audio, in Hz (decoded audio is resampled to it).
        original_length (`int`): samples per channel of the original audio (decoded audio is cut to it).
        channels (`int`): audio channels; each is encoded separately and is one row of the codes.
        n_codebooks (`int`): codebooks stored in the file (at most the model's `n_codebooks`).
        codebook_size (`int | None`): entries per codebook of the encoding model.
        hop_length (`int | None`): audio samples per code frame of the encoding model.
        model_sampling_rate (`int | None`): sample rate the encoding model runs at, in Hz.
        model_name (`str | None`): name or path of the encoding model, for information.
        config_fingerprint (`str | None`): `config_fingerprint` of the encoding model's config.
        loudness (`float | None`): loudness of the input in LUFS if it was normalised before encoding (the
            decoder restores it), `None` if it was not normalised.
        chunk_length (`int | None`): code frames per independently encoded chunk; `None` when the codes are
            one continuous stream.
        padding (`bool`): whether the encoder's convolutions were padded (official chunked files: `False`).
        official_dac_version (`str | None`): descript-audio-codec version of an official file, else `None`.
        extra (`dict`): producer-specific JSON values (e.g. encoding settings); decoders may ignore them.
        format_version (`int`): version of this metadata layout.
    """

    sample_rate: int
    original_length: int
    channels: int
    n_codebooks: int
    codebook_size: int | None
    hop_length: int | None
    model_sampling_rate: int | None
    model_name: str | None = None
    config_fingerprint: str | None = None
    loudness: float | None = None
    chunk_length: int | None = None
    padding: bool = True
    official_dac_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if isinstance(self.format_version, bool) or self.format_version != FORMAT_VERSION:
            raise ValueError(f"`format_version` {self.format_version!r} is not supported (expected {FORMAT_VERSION}).")
        checked = {
            "sample_rate": _integer("sample_rate", self.sample_rate, 1, maximum=_MAX_SAMPLE_RATE),
            "original_length": _integer("original_length", self.original_length, 0),
            "channels": _integer("channels", self.channels, 1),
            "n_codebooks": _integer("n_codebooks", self.n_codebooks, 1),
            "codebook_size": _integer("codebook_size", self.codebook_size, 2, optional=True),
            "hop_length": _integer("hop_length", self.hop_length, 1, optional=True),
            "model_sampling_rate": _integer(
                "model_sampling_rate", self.model_sampling_rate, 1, optional=True, maximum=_MAX_SAMPLE_RATE
            ),
            "chunk_length": _integer("chunk_length", self.chunk_length, 1, optional=True),
            "model_name": _optional_string("model_name", self.model_name),
            "official_dac_version": _optional_string("official_dac_version", self.official_dac_version),
            "config_fingerprint": _optional_string("config_fingerprint", self.config_fingerprint),
            "loudness": self._checked_loudness(),
            "extra": self._checked_extra(),
        }
        if checked["codebook_size"] is not None and checked["codebook_size"] > _MAX_CODEBOOK_SIZE:
            raise ValueError(f"`codebook_size` must be <= {_MAX_CODEBOOK_SIZE}, got {checked['codebook_size']}.")
        fingerprint = checked["config_fingerprint"]
        if fingerprint is not None and (len(fingerprint) != 64 or set(fingerprint) - set("0123456789abcdef")):
            raise ValueError(f"`config_fingerprint` must be 64 lowercase hex digits, got {fingerprint!r}.")
        if not isinstance(self.padding, (bool, np.bool_)):
            raise ValueError(f"`padding` must be a boolean, got {self.padding!r}.")
        checked["padding"] = bool(self.padding)
        if checked["official_dac_version"] is None:
            missing = [
                name for name in ("codebook_size", "hop_length", "model_sampling_rate") if checked[name] is None
            ]
            if missing:
                raise ValueError(
                    f"{', '.join(f'`{name}`' for name in missing)} must be set (only official files may omit them)."
                )
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def _checked_loudness(self) -> float | None:
        if self.loudness is None:
            return None
        if (
            isinstance(self.loudness, bool)
            or not isinstance(self.loudness, numbers.Real)
            or not _LOUDNESS_RANGE[0] <= self.loudness <= _LOUDNESS_RANGE[1]
        ):
            raise ValueError(
                f"`loudness` must be a number of LUFS in [{_LOUDNESS_RANGE[0]:g}, {_LOUDNESS_RANGE[1]:g}] or null, "
                f"got {self.loudness!r}."
            )
        return float(self.loudness)

    def _checked_extra(self) -> dict[str, Any]:
        if not isinstance(self.extra, dict) or not all(isinstance(key, str) for key in self.extra):
            raise ValueError(f"`extra` must be a dict with string keys, got {self.extra!r}.")
        try:
            # A JSON round trip keeps plain JSON values only, so the metadata compares equal after a save/load.
            return json.loads(json.dumps(self.extra, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as error:
            raise ValueError(f"`extra` must hold JSON values only: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        """The metadata as a JSON-ready dict (the `dac_metadata` object of the file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "DacFileMetadata":
        """Inverse of `to_dict`; unknown or missing fields raise a ValueError naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"the metadata must be a JSON object, got {type(data).__name__}.")
        names = {item.name for item in dataclasses.fields(cls)}
        required = {
            item.name
            for item in dataclasses.fields(cls)
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        }
        unknown = sorted(set(data) - names)
        missing = sorted(required - set(data))
        if unknown or missing:
            raise ValueError(f"the metadata has unknown fields {unknown} and lacks required fields {missing}.")
        return cls(**data)


def _config_value(config: Any, name: str) -> Any:
    try:
        return config[name] if isinstance(config, dict) else getattr(config, name)
    except (KeyError, AttributeError):
        raise ValueError(f"the model config has no `{name}`.") from None


def _config_ratios(config: Any, name: str) -> list[int]:
    ratios = _config_value(config, name)
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__iter__"):
        raise ValueError(f"the model config's `{name}` must be a sequence of integers, got {ratios!r}.")
    return [_integer(name, ratio, 1) for ratio in ratios]


def config_fingerprint(config: Any) -> str:
    """
    SHA-256 (64 hex digits) over the architecture-defining fields of a DAC config (`FINGERPRINT_FIELDS`).

    `config` is a `DacConfig` or any object or dict with those fields. Two configs share a fingerprint exactly
    when they build the same architecture; training-only fields and names do not enter it, nor do weights.
    """
    fields = {
        name: _config_ratios(config, name)
        if name.endswith("_ratios")
        else _integer(name, _config_value(config, name), 1)
        for name in FINGERPRINT_FIELDS
    }
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _file_codes_dtype(codebook_size: int | None) -> np.dtype:
    """How a .dac file stores codes: uint16 (as official files do) up to 65536 entries, else int32."""
    if codebook_size is None or codebook_size <= _UINT16_CODEBOOK_LIMIT:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


@dataclass(frozen=True, eq=False)
class DacFile:
    """
    The codes of one audio clip and their `DacFileMetadata`.

    Args:
        codes (`np.ndarray` of shape `(channels, n_codebooks, frames)`):
            Code indices; stored as an int64 copy (a CPU `torch.Tensor` is accepted).
        metadata (`DacFileMetadata`):
            What the decoder needs besides the codes; `channels` and `n_codebooks` must match the codes.
    """

    codes: np.ndarray
    metadata: DacFileMetadata

    def __post_init__(self):
        if not isinstance(self.metadata, DacFileMetadata):
            raise ValueError(f"`metadata` must be a DacFileMetadata, got {type(self.metadata).__name__}.")
        codes = np.asarray(self.codes)
        if codes.dtype.kind not in "iu":
            raise ValueError(f"`codes` must hold integers, got dtype {codes.dtype}.")
        object.__setattr__(self, "codes", codes.astype(np.int64))
        self._validate()

    def _validate(self) -> None:
        codes, metadata = self.codes, self.metadata
        if codes.ndim != 3:
            raise ValueError(f"`codes` must have shape (channels, n_codebooks, frames), got shape {codes.shape}.")
        if codes.shape[:2] != (metadata.channels, metadata.n_codebooks):
            raise ValueError(
                f"`codes` of shape {codes.shape} do not match the metadata's {metadata.channels} channels "
                f"and {metadata.n_codebooks} codebooks."
            )
        limit = metadata.codebook_size or _UINT16_CODEBOOK_LIMIT
        if codes.size and (codes.min() < 0 or codes.max() >= limit):
            raise ValueError(
                f"`codes` must lie in [0, {limit}) for codebook size {metadata.codebook_size}, "
                f"got values in [{codes.min()}, {codes.max()}]."
            )

    @classmethod
    def from_codes(
        cls,
        codes: Any,
        config: Any,
        *,
        sample_rate: int,
        original_length: int,
        loudness: float | None = None,
        model_name: str | None = None,
        chunk_length: int | None = None,
        padding: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> "DacFile":
        """
        Wrap codes from a model with this `config` (a `DacConfig`, or an object or dict with its fields).

        `codes` has shape (channels, n_codebooks, frames), channels folded into the model's batch axis;
        `sample_rate` and `original_length` describe the audio before resampling to the model's rate;
        `loudness` is the input loudness in LUFS if the audio was normalised before encoding. `model_name`
        defaults to the config's `name_or_path`.
        """
        codes = np.asarray(codes)
        if codes.ndim != 3:
            raise ValueError(f"`codes` must have shape (channels, n_codebooks, frames), got shape {codes.shape}.")
        if model_name is None:
            model_name = getattr(config, "name_or_path", None) or None
        metadata = DacFileMetadata(
            sample_rate=sample_rate,
            original_length=original_length,
            channels=codes.shape[0],
            n_codebooks=codes.shape[1],
            codebook_size=_config_value(config, "codebook_size"),
            hop_length=math.prod(_config_ratios(config, "downsampling_ratios")),
            model_sampling_rate=_config_value(config, "sampling_rate"),
            model_name=model_name,
            config_fingerprint=config_fingerprint(config),
            loudness=loudness,
            chunk_length=chunk_length,
            padding=padding,
            extra={} if extra is None else extra,
        )
        dac_file = cls(codes, metadata)
        dac_file.check_compatible(config)
        return dac_file

    def check_compatible(self, config: Any) -> None:
        """
        Raise a ValueError listing every way a model with `config` cannot decode these codes: a different
        sampling rate, codebook size, hop length or architecture fingerprint, fewer codebooks than the file
        uses, or codes beyond the model's codebook size. Fields the file does not record are not compared.
        """
        metadata = self.metadata
        model = {
            "sampling_rate": _integer("sampling_rate", _config_value(config, "sampling_rate"), 1),
            "codebook_size": _integer("codebook_size", _config_value(config, "codebook_size"), 2),
            "n_codebooks": _integer("n_codebooks", _config_value(config, "n_codebooks"), 1),
            "hop_length": math.prod(_config_ratios(config, "downsampling_ratios")),
        }
        problems = []
        if metadata.model_sampling_rate not in (None, model["sampling_rate"]):
            problems.append(
                f"sampling rate: the file was encoded at {metadata.model_sampling_rate} Hz, "
                f"the model runs at {model['sampling_rate']} Hz"
            )
        if metadata.codebook_size not in (None, model["codebook_size"]):
            problems.append(
                f"codebook size: the file's is {metadata.codebook_size}, the model's is {model['codebook_size']}"
            )
        elif self.codes.size and self.codes.max() >= model["codebook_size"]:
            problems.append(
                f"codebook size: the file holds code {self.codes.max()}, "
                f"the model has {model['codebook_size']} entries"
            )
        if metadata.n_codebooks > model["n_codebooks"]:
            problems.append(
                f"n_codebooks: the file uses {metadata.n_codebooks} codebooks, "
                f"the model has only {model['n_codebooks']}"
            )
        if metadata.hop_length not in (None, model["hop_length"]):
            problems.append(f"hop length: the file's is {metadata.hop_length}, the model's is {model['hop_length']}")
        if metadata.config_fingerprint is not None and metadata.config_fingerprint != config_fingerprint(config):
            problems.append(
                f"config fingerprint: the file was encoded by an architecture with fingerprint "
                f"{metadata.config_fingerprint[:12]}..., the model's is {config_fingerprint(config)[:12]}... "
                f"(fields {', '.join(FINGERPRINT_FIELDS)})"
            )
        if problems:
            name = f" ({metadata.model_name})" if metadata.model_name else ""
            raise ValueError(
                f"These codes{name} cannot be decoded with this model config:\n- " + "\n- ".join(problems)
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the file atomically (a crash leaves either the old file or the new one) and return its path."""
        self._validate()
        codes = np.ascontiguousarray(self.codes.astype(_file_codes_dtype(self.metadata.codebook_size)))
        header = {"format": FORMAT_NAME, _METADATA_KEY: json.dumps(self.metadata.to_dict(), allow_nan=False)}
        path = Path(path)
        _write_atomically(path, safetensors.numpy.save({"codes": codes}, metadata=header))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DacFile":
        """
        Read a `.dac` file of this package or an official descript-audio-codec 1.0.0 one. Raises DacFileError
        (naming the file) for anything that is not a valid `.dac` file, OSError if it cannot be read.
        """
        path = Path(path)
        reader = _read_official if is_official_container(path) else _read_safetensors
        try:
            codes, metadata = reader(path)
            return cls(codes, metadata)
        except ValueError as error:
            raise DacFileError(f"{path}: {error}") from error


def is_official_container(path: str | os.PathLike) -> bool:
    """Whether the file on disk is in the official descript-audio-codec layout (a `.npy` pickle), not ours."""
    with open(path, "rb") as file:
        return file.read(len(_NPY_MAGIC)) == _NPY_MAGIC


def _write_atomically(path: Path, data: bytes) -> None:
    with atomic_write_path(path) as temporary:
        temporary.write_bytes(data)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"the metadata JSON repeats keys {sorted({key for key in keys if keys.count(key) > 1})}.")
    return dict(pairs)


def _reject_constant(constant: str) -> None:
    raise ValueError(f"the metadata JSON holds {constant}, which is not valid JSON.")


def _read_safetensors(path: Path) -> tuple[np.ndarray, DacFileMetadata]:
    try:
        with safe_open(path, framework="numpy") as handle:
            header = handle.metadata() or {}
            names = list(handle.keys())
            codes = handle.get_tensor("codes") if names == ["codes"] else None
    except SafetensorError as error:
        raise ValueError(
            f"not a .dac file (neither a {FORMAT_NAME} safetensors file nor an official one): {error}"
        ) from error
    if header.get("format") != FORMAT_NAME or set(header) != {"format", _METADATA_KEY}:
        raise ValueError(
            f"a safetensors file, but not a {FORMAT_NAME} one: its metadata keys are {sorted(header)} "
            f"with format {header.get('format')!r}."
        )
    if codes is None:
        raise ValueError(f"expected exactly one tensor named 'codes', found {names}.")
    text = header[_METADATA_KEY]
    if len(text) > _MAX_METADATA_CHARS:
        raise ValueError(f"the metadata JSON is {len(text)} characters long, more than {_MAX_METADATA_CHARS}.")
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("the metadata JSON is nested too deeply.") from None
    metadata = DacFileMetadata.from_dict(data)
    if codes.dtype != _file_codes_dtype(metadata.codebook_size):
        raise ValueError(
            f"codes are stored as {codes.dtype}, but codebook size {metadata.codebook_size} requires "
            f"{_file_codes_dtype(metadata.codebook_size)}."
        )
    return codes, metadata


# --- official descript-audio-codec files -------------------------------------------------------------------

# The opcodes pickle protocols 2-5 use for the dicts, strings, numbers and numpy arrays of an official file.
# Object-building opcodes that bypass find_class's allowlist of callables (NEWOBJ, INST, OBJ, EXT*) or fetch
# outside data (PERSID, NEXT_BUFFER) are not among them.
_ALLOWED_PICKLE_OPCODES = frozenset(
    {
        "PROTO", "FRAME", "STOP", "MARK", "MEMOIZE", "BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET",
        "NONE", "NEWTRUE", "NEWFALSE", "BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT",
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8",
        "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_LIST", "APPEND", "APPENDS",
        "EMPTY_DICT", "SETITEM", "SETITEMS", "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD",
    }
)  # fmt: skip
# An official file's pickle has about 100 opcodes whatever its length (the codes are one bytes object); the
# cap keeps a file of many tiny opcodes from growing into far more memory than its size.
_MAX_PICKLE_OPCODES = 10_000
_DTYPE_CODES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "O8"})


class _PickleGlobal:
    """
    Base of what `find_class` hands out. Without `__dict__` or slots, a BUILD step cannot change these
    objects, and the base instance (numpy.ndarray's stand-in) is not callable, so REDUCE cannot call
    `numpy.ndarray(huge_shape)`.
    """

    __slots__ = ()


class _DtypeSpec:
    """
    Stands in for `numpy.dtype` in the pickle: keeps the type code and the byte order that BUILD sets, and
    builds a dtype from those alone. numpy's own `dtype.__setstate__` accepts arbitrary flags, fields and
    subarrays, e.g. an object dtype without its reference-counting flag, whose data numpy would then read
    as object pointers.
    """

    __slots__ = ("code", "byteorder")

    def __init__(self, code: str):
        self.code = code
        self.byteorder = "|"

    def __setstate__(self, state: Any) -> None:
        # (version 3, byte order, subarray, names, fields, elsize, alignment, flags); plain types have no
        # subarray, names or fields and -1 for elsize and alignment. The flags are numpy's to derive.
        if not (
            isinstance(state, tuple)
            and len(state) == 8
            and state[0] == 3
            and state[1] in ("<", ">", "|", "=")
            and state[2:7] == (None, None, None, -1, -1)
        ):
            raise pickle.UnpicklingError(f"unexpected numpy dtype state {state!r}.")
        self.byteorder = state[1]

    def build(self) -> np.dtype:
        dtype = np.dtype(self.code)
        return dtype.newbyteorder(self.byteorder) if self.byteorder in "<>" else dtype


class _CheckedArray(np.ndarray):
    """
    The empty array handed to the pickle's BUILD step instead of numpy's `_reconstruct` result. Its
    `__setstate__` builds the dtype from a `_DtypeSpec` and checks that the declared shape matches the data
    present in the file before numpy sees it (numpy sizes an object array's buffer from the shape before it
    counts the items, and crashes when there are fewer).
    """

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], _DtypeSpec)):
            raise pickle.UnpicklingError("unexpected numpy array state.")
        version, shape, dtype_spec, is_fortran, data = state
        dtype = dtype_spec.build()
        if not (isinstance(shape, tuple) and all(type(size) is int and size >= 0 for size in shape)):
            raise pickle.UnpicklingError(f"invalid numpy array shape {shape!r}.")
        count = math.prod(shape)
        if dtype.hasobject:
            if not (isinstance(data, list) and len(data) == count):
                raise pickle.UnpicklingError(f"numpy object array of shape {shape} does not hold {count} items.")
        elif not (isinstance(data, bytes) and len(data) == count * dtype.itemsize):
            raise pickle.UnpicklingError(f"numpy array of shape {shape} and dtype {dtype} lacks its data.")
        super().__setstate__((version, shape, dtype, is_fortran, data))


class _Reconstruct(_PickleGlobal):
    """Stands in for numpy's `_reconstruct(numpy.ndarray, (0,), b"b")`, the first step of unpickling an array."""

    __slots__ = ()

    def __call__(self, subtype: Any, shape: Any, _typecode: Any) -> _CheckedArray:
        if subtype is not _NDARRAY_CLASS or shape != (0,):
            raise pickle.UnpicklingError("only plain numpy arrays may be rebuilt.")
        return _CheckedArray((0,), np.int8)


class _Dtype(_PickleGlobal):
    """Stands in for `numpy.dtype(code, align, copy)`."""

    __slots__ = ()

    def __call__(self, code: Any, _align: Any = False, _copy: Any = True) -> _DtypeSpec:
        if not (isinstance(code, str) and code in _DTYPE_CODES):
            raise pickle.UnpicklingError(f"numpy dtype {code!r} is not allowed.")
        return _DtypeSpec(code)


class _Scalar(_PickleGlobal):
    """Stands in for numpy's `scalar(dtype, data)`; gives the Python number."""

    __slots__ = ()

    def __call__(self, dtype_spec: Any, data: Any) -> Any:
        if not isinstance(dtype_spec, _DtypeSpec):
            raise pickle.UnpicklingError("invalid numpy scalar.")
        dtype = dtype_spec.build()
        if dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise pickle.UnpicklingError("invalid numpy scalar.")
        return np.frombuffer(data, dtype=dtype)[0].item()


_NDARRAY_CLASS = _PickleGlobal()
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): _NDARRAY_CLASS,
    ("numpy", "dtype"): _Dtype(),
    ("numpy.core.multiarray", "_reconstruct"): _Reconstruct(),  # as numpy 1.x pickles
    ("numpy._core.multiarray", "_reconstruct"): _Reconstruct(),  # as numpy 2.x pickles
    ("numpy.core.multiarray", "scalar"): _Scalar(),
    ("numpy._core.multiarray", "scalar"): _Scalar(),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed.") from None


def _check_pickle_opcodes(pickled: bytes) -> None:
    """Check every opcode and declared length (pure Python, reads nothing beyond the data) before unpickling."""
    opcodes = pickletools.genops(pickled)
    for count in itertools.count(1):
        try:
            opcode, _, position = next(opcodes)
        except StopIteration:
            break
        except Exception as error:  # genops raises assorted errors on malformed data
            raise ValueError(f"corrupt pickle: {error}") from error
        if opcode.name not in _ALLOWED_PICKLE_OPCODES:
            raise ValueError(f"pickle opcode {opcode.name} at byte {position} is not allowed.")
        if count > _MAX_PICKLE_OPCODES:
            raise ValueError(
                f"the pickle has more than {_MAX_PICKLE_OPCODES} opcodes; an official file has about 100."
            )
    if position != len(pickled) - 1:
        raise ValueError(f"{len(pickled) - 1 - position} bytes follow the end of the pickle.")


def _single_number(name: str, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size != 1 or value.dtype.kind not in "iuf":
            raise ValueError(
                f"`{name}` must hold one number, got an array of shape {value.shape} and dtype {value.dtype}."
            )
        return value.reshape(()).item()
    return value.item() if isinstance(value, np.generic) else value


def _read_official(path: Path) -> tuple[np.ndarray, DacFileMetadata]:
    stream = io.BytesIO(path.read_bytes())
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}.")
    except Exception as error:  # numpy's header parser raises assorted errors on malformed headers
        raise ValueError(f"corrupt .npy header of an official .dac file: {error}") from error
    if dtype != np.dtype(object) or shape != () or fortran_order:
        raise ValueError(f"not an official .dac file: the .npy array is {dtype} of shape {shape}, not a pickled dict.")
    pickled = stream.read()
    _check_pickle_opcodes(pickled)
    try:
        container = _RestrictedUnpickler(io.BytesIO(pickled)).load()
    except Exception as error:  # any failure inside the unpickler is a malformed or hostile file
        raise ValueError(f"the official .dac payload cannot be read safely: {error}") from error
    if not (isinstance(container, np.ndarray) and container.shape == () and container.dtype == object):
        raise ValueError("the official .dac payload is not a pickled dict.")
    artifacts = container.item()
    if not (isinstance(artifacts, dict) and set(artifacts) == {"codes", "metadata"}):
        raise ValueError("the official .dac payload must be a dict with exactly the keys 'codes' and 'metadata'.")
    fields, codes = artifacts["metadata"], artifacts["codes"]
    if not (isinstance(fields, dict) and set(fields) == _OFFICIAL_METADATA_KEYS):
        found = sorted(map(str, fields)) if isinstance(fields, dict) else type(fields).__name__
        raise ValueError(
            f"the official metadata must have exactly the keys {sorted(_OFFICIAL_METADATA_KEYS)}, got {found}."
        )
    if not (isinstance(fields["dac_version"], str) and fields["dac_version"] in OFFICIAL_DAC_VERSIONS):
        raise ValueError(
            f"unsupported official dac_version {fields['dac_version']!r} (supported: {OFFICIAL_DAC_VERSIONS})."
        )
    if not (isinstance(codes, np.ndarray) and codes.ndim == 3):
        raise ValueError("the official codes must be an array of shape (batch * channels, n_codebooks, frames).")
    channels = _single_number("channels", fields["channels"])
    if codes.shape[0] != channels:
        raise ValueError(
            f"the official codes have {codes.shape[0]} rows for {channels!r} channels: files holding a batch "
            f"of several clips are not supported."
        )
    metadata = DacFileMetadata(
        sample_rate=_single_number("sample_rate", fields["sample_rate"]),
        original_length=_single_number("original_length", fields["original_length"]),
        channels=channels,
        n_codebooks=codes.shape[1],
        codebook_size=None,
        hop_length=None,
        model_sampling_rate=None,
        loudness=_single_number("input_db", fields["input_db"]),
        chunk_length=_single_number("chunk_length", fields["chunk_length"]),
        padding=fields["padding"],
        official_dac_version=fields["dac_version"],
    )
    return np.asarray(codes), metadata
