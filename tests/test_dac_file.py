"""Tests of the .dac container: layout and round trips, config checks, atomic writes, official files, and a
reader that turns truncated, corrupt and hostile files into DacFileError without running code or allocating
what a header claims."""

import builtins
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import pickle
import re
import struct
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from modeling_dac.configuration_dac import DacConfig
from modeling_dac.dac_file import (
    FINGERPRINT_FIELDS,
    FORMAT_NAME,
    DacFile,
    DacFileError,
    DacFileMetadata,
    config_fingerprint,
)

REPO = Path(__file__).resolve().parent.parent
OFFICIAL_FIXTURES = REPO / "tests" / "fixtures" / "official_dac"
_spec = importlib.util.spec_from_file_location(
    "official_fixture", REPO / "scripts" / "make_official_dac_file_fixture.py"
)
official_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official_fixture)

# A small architecture (hop 6, 4 codebooks of 64 entries): nothing here runs a model.
TINY_CONFIG = {
    "encoder_hidden_size": 4,
    "downsampling_ratios": [2, 3],
    "decoder_hidden_size": 16,
    "upsampling_ratios": [3, 2],
    "hidden_size": 8,
    "n_codebooks": 4,
    "codebook_size": 64,
    "codebook_dim": 2,
    "sampling_rate": 16000,
}
FUZZ_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tiny_config(**changes):
    return {**TINY_CONFIG, **changes}


def random_codes(channels=2, n_codebooks=3, frames=5, codebook_size=64, seed=0):
    return np.random.default_rng(seed).integers(0, codebook_size, (channels, n_codebooks, frames))


def make_dac_file(codes=None, config=None, **kwargs):
    kwargs = {"sample_rate": 22050, "original_length": 40, "loudness": -18.5, **kwargs}
    return DacFile.from_codes(random_codes() if codes is None else codes, config or TINY_CONFIG, **kwargs)


def np_save_bytes(obj) -> bytes:
    """What np.save writes for `obj`; a dict becomes a pickled 0-d object array, as in an official file."""
    buffer = io.BytesIO()
    np.save(buffer, obj)
    return buffer.getvalue()


def npy_object_file(pickled: bytes) -> bytes:
    """A .npy header for a 0-d object array followed by `pickled`, as np.save lays out an official file."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    return header.getvalue() + pickled


def safetensors_file(codes, metadata_json, *, format_name=FORMAT_NAME, other_tensors=None):
    header = {"format": format_name, "dac_metadata": metadata_json}
    return safetensors.numpy.save({"codes": codes, **(other_tensors or {})}, metadata=header)


def valid_metadata_json(**changes):
    return json.dumps({**make_dac_file().metadata.to_dict(), **changes})


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("dac_file_fuzz")


def load_bytes(directory: Path, data: bytes) -> DacFile:
    path = directory / "candidate.dac"
    path.write_bytes(data)
    return DacFile.load(path)


def assert_rejected(directory: Path, data: bytes, match: str | None = None) -> DacFileError:
    with pytest.raises(DacFileError) as info:
        load_bytes(directory, data)
    assert str(directory / "candidate.dac") in str(info.value)
    if match is not None:
        assert re.search(match, str(info.value)), str(info.value)
    return info.value


def assert_loads_or_rejected(directory: Path, data: bytes) -> None:
    """The reader's contract for arbitrary bytes: a DacFile that satisfies its invariants, or DacFileError."""
    try:
        dac_file = load_bytes(directory, data)
    except DacFileError:
        return
    metadata = dac_file.metadata
    assert dac_file.codes.dtype == np.int64
    assert dac_file.codes.shape[:2] == (metadata.channels, metadata.n_codebooks)
    assert dac_file.codes.size == 0 or 0 <= dac_file.codes.min() <= dac_file.codes.max() < (
        metadata.codebook_size or 2**16
    )
    assert DacFileMetadata.from_dict(metadata.to_dict()) == metadata


# --- our format -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (2, 4, 0)])
def test_round_trip_keeps_codes_and_metadata(tmp_path, shape):
    dac_file = make_dac_file(random_codes(*shape), model_name="tiny", chunk_length=3, extra={"window": [1.5, 2]})
    path = dac_file.save(tmp_path / "clip.dac")
    loaded = DacFile.load(path)
    assert path == tmp_path / "clip.dac"
    assert loaded.codes.dtype == np.int64
    np.testing.assert_array_equal(loaded.codes, dac_file.codes)
    assert loaded.metadata == dac_file.metadata
    assert loaded.metadata.extra == {"window": [1.5, 2]}


def test_file_is_the_documented_safetensors_layout(tmp_path):
    dac_file = make_dac_file(random_codes(2, 3, 5))
    data = dac_file.save(tmp_path / "clip.dac").read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    assert header["codes"] == {"dtype": "U16", "shape": [2, 3, 5], "data_offsets": [0, 60]}
    assert header["__metadata__"]["format"] == "modeling_dac.dac"
    assert json.loads(header["__metadata__"]["dac_metadata"]) == dac_file.metadata.to_dict()
    assert data[8 + header_length :] == dac_file.codes.astype("<u2").tobytes()
    with safe_open(tmp_path / "clip.dac", framework="numpy") as handle:  # any safetensors reader opens it
        np.testing.assert_array_equal(handle.get_tensor("codes"), dac_file.codes)


def test_codebooks_above_65536_entries_are_stored_as_int32(tmp_path):
    config = tiny_config(codebook_size=2**17)
    codes = random_codes(codebook_size=2**17)
    codes[0, 0, 0] = 2**17 - 1
    path = make_dac_file(codes, config).save(tmp_path / "big.dac")
    with safe_open(path, framework="numpy") as handle:
        assert handle.get_tensor("codes").dtype == np.int32
    np.testing.assert_array_equal(DacFile.load(path).codes, codes)


def test_codes_are_an_independent_int64_copy():
    codes = random_codes().astype(np.uint16)
    dac_file = make_dac_file(codes)
    codes[:] = 0
    assert dac_file.codes.dtype == np.int64 and dac_file.codes.any()


def test_from_codes_takes_a_dac_config_and_a_torch_tensor():
    config = DacConfig(sampling_rate=24000, downsampling_ratios=[2, 4, 5, 8], n_codebooks=32)
    config.name_or_path = "descript/dac_24khz"
    codes = torch.randint(0, 1024, (1, 32, 7))
    metadata = DacFile.from_codes(codes, config, sample_rate=48000, original_length=4480).metadata
    assert (metadata.hop_length, metadata.model_sampling_rate, metadata.codebook_size) == (320, 24000, 1024)
    assert metadata.model_name == "descript/dac_24khz"
    assert metadata.config_fingerprint == config_fingerprint(config)
    assert metadata.loudness is None and metadata.chunk_length is None and metadata.padding is True


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.zeros((3, 5), dtype=np.int64), "shape"),
        (np.zeros((1, 5, 5), dtype=np.int64), "codebooks"),  # the tiny model has 4
        (np.full((1, 2, 5), 64), r"\[0, 64\)"),
        (np.full((1, 2, 5), -1), r"\[0, 64\)"),
        (np.zeros((1, 2, 5), dtype=np.float32), "integers"),
    ],
)
def test_from_codes_rejects_invalid_codes(codes, message):
    with pytest.raises(ValueError, match=message):
        make_dac_file(codes)


# --- metadata ---------------------------------------------------------------------------------------------


def test_metadata_dict_round_trip_and_field_checks():
    metadata = make_dac_file().metadata
    assert DacFileMetadata.from_dict(metadata.to_dict()) == metadata
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        DacFileMetadata.from_dict({**metadata.to_dict(), "colour": "red"})
    partial = metadata.to_dict()
    del partial["sample_rate"]
    with pytest.raises(ValueError, match=r"lacks required fields \['sample_rate'\]"):
        DacFileMetadata.from_dict(partial)
    with pytest.raises(ValueError, match="JSON object"):
        DacFileMetadata.from_dict([1, 2])


@pytest.mark.parametrize(
    "field_name, value, message",
    [
        ("sample_rate", 0, "sample_rate"),
        ("sample_rate", 44100.0, "sample_rate"),
        ("original_length", -1, "original_length"),
        ("channels", True, "channels"),
        ("n_codebooks", "9", "n_codebooks"),
        ("codebook_size", 1, "codebook_size"),
        ("codebook_size", 2**31 + 1, "codebook_size"),
        ("hop_length", None, "hop_length"),
        ("chunk_length", 0, "chunk_length"),
        ("loudness", float("nan"), "loudness"),
        ("loudness", 1e308, r"loudness` must be a number of LUFS in \[-200, 200\]"),
        ("sample_rate", 10**9, "`sample_rate` must be <= 1536000"),
        ("model_sampling_rate", 10**9, "`model_sampling_rate` must be <= 1536000"),
        ("loudness", "loud", "loudness"),
        ("padding", 1, "padding"),
        ("config_fingerprint", "ABC", "config_fingerprint"),
        ("model_name", 3, "model_name"),
        ("extra", {"x": {1, 2}}, "extra"),
        ("extra", {1: "x"}, "extra"),
        ("format_version", 2, "format_version"),
    ],
)
def test_metadata_rejects_invalid_values(field_name, value, message):
    fields = {**make_dac_file().metadata.to_dict(), field_name: value}
    with pytest.raises(ValueError, match=message):
        DacFileMetadata(**fields)


def test_only_official_files_may_omit_the_model():
    fields = {**make_dac_file().metadata.to_dict(), "codebook_size": None, "model_sampling_rate": None}
    with pytest.raises(ValueError, match="`codebook_size`, `model_sampling_rate` must be set"):
        DacFileMetadata(**fields)
    assert DacFileMetadata(**{**fields, "hop_length": None, "official_dac_version": "1.0.0"}).codebook_size is None


# --- config fingerprint and compatibility -----------------------------------------------------------------


def test_fingerprint_of_the_44khz_config_is_the_sha256_of_its_canonical_json():
    canonical = (
        '{"codebook_dim":8,"codebook_size":1024,"decoder_hidden_size":1536,"downsampling_ratios":[2,4,8,8],'
        '"encoder_hidden_size":64,"hidden_size":1024,"n_codebooks":9,"sampling_rate":44100,'
        '"upsampling_ratios":[8,8,4,2]}'
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert config_fingerprint(DacConfig()) == expected
    # Pinned: changing the fingerprint definition would make every existing file fail check_compatible.
    assert expected == "6be0fde3524032501b44fddaec0222f9a9534a35aa967693140c019ac52b2769"


def test_fingerprint_depends_on_architecture_only():
    config = DacConfig(**TINY_CONFIG)
    as_object = type("AnyConfig", (), {**TINY_CONFIG, "downsampling_ratios": (2, 3)})()
    trained = DacConfig(**TINY_CONFIG, quantizer_dropout=0.5, commitment_loss_weight=2.0, name_or_path="x")
    fingerprints = {config_fingerprint(c) for c in (TINY_CONFIG, config, as_object, trained)}
    assert len(fingerprints) == 1 and re.fullmatch("[0-9a-f]{64}", fingerprints.pop())


@pytest.mark.parametrize("field_name", FINGERPRINT_FIELDS)
def test_fingerprint_changes_with_every_architecture_field(field_name):
    value = TINY_CONFIG[field_name]
    changed = [*value, 1] if isinstance(value, list) else value * 2
    assert config_fingerprint(tiny_config(**{field_name: changed})) != config_fingerprint(TINY_CONFIG)


def test_fingerprint_names_a_missing_field():
    config = dict(TINY_CONFIG)
    del config["codebook_dim"]
    with pytest.raises(ValueError, match="codebook_dim"):
        config_fingerprint(config)


def test_check_compatible_accepts_the_encoding_model_and_files_with_fewer_codebooks():
    dac_file = make_dac_file(random_codes(n_codebooks=2))
    dac_file.check_compatible(TINY_CONFIG)
    dac_file.check_compatible(DacConfig(**TINY_CONFIG))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"sampling_rate": 24000}, "sampling rate: the file was encoded at 16000 Hz, the model runs at 24000 Hz"),
        ({"codebook_size": 128}, "codebook size: the file's is 64, the model's is 128"),
        ({"n_codebooks": 2}, "n_codebooks: the file uses 3 codebooks, the model has only 2"),
        (
            {"downsampling_ratios": [2, 4], "upsampling_ratios": [4, 2]},
            "hop length: the file's is 6, the model's is 8",
        ),
        ({"codebook_dim": 16}, "config fingerprint"),
    ],
)
def test_check_compatible_names_what_differs(changes, message):
    with pytest.raises(ValueError) as info:
        make_dac_file().check_compatible(tiny_config(**changes))
    assert message in str(info.value)
    assert "config fingerprint" in str(info.value)  # every one of these changes the architecture


def test_check_compatible_lists_every_difference():
    with pytest.raises(ValueError) as info:
        make_dac_file().check_compatible(tiny_config(sampling_rate=8000, codebook_size=32, n_codebooks=1))
    assert str(info.value).count("\n- ") == 4


def test_official_files_are_checked_against_the_codes_they_hold():
    dac_file = DacFile.load(OFFICIAL_FIXTURES / "official_numpy2.dac")
    dac_file.check_compatible(DacConfig())  # 9 codebooks of 1024, like the released 44 kHz model
    with pytest.raises(ValueError, match="the file holds code 1023, the model has 512 entries"):
        dac_file.check_compatible(DacConfig(codebook_size=512))
    with pytest.raises(ValueError, match="the file uses 9 codebooks, the model has only 8"):
        dac_file.check_compatible(DacConfig(n_codebooks=8))


# --- atomic writes ----------------------------------------------------------------------------------------


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(_descriptor):
        raise OSError("simulated disk failure")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="simulated"):
        make_dac_file().save(tmp_path / "clip.dac")
    assert list(tmp_path.iterdir()) == []


def test_failure_half_way_through_the_bytes_keeps_the_old_file(tmp_path, monkeypatch):
    path = make_dac_file(random_codes(seed=1)).save(tmp_path / "clip.dac")
    old_bytes = path.read_bytes()
    real_write_bytes = Path.write_bytes

    def half_write(self, data):
        real_write_bytes(self, data[: len(data) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_write)
    with pytest.raises(OSError, match="No space left"):
        make_dac_file(random_codes(seed=2)).save(path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == old_bytes


def test_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = make_dac_file(random_codes(seed=1)).save(tmp_path / "clip.dac")
    old_bytes = path.read_bytes()

    def fail(*_args):
        raise PermissionError("simulated rename failure")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        make_dac_file(random_codes(seed=2)).save(path)
    assert list(tmp_path.iterdir()) == [path]
    assert path.read_bytes() == old_bytes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a process mid-write")
def test_process_killed_mid_save_never_leaves_a_partial_dac_file(tmp_path):
    path = make_dac_file(random_codes(seed=1)).save(tmp_path / "clip.dac")
    old_bytes = path.read_bytes()
    child = os.fork()
    if child == 0:  # the child dies abruptly after writing the bytes, before the rename: no cleanup runs
        try:
            os.fsync = lambda _descriptor: os._exit(17)
            make_dac_file(random_codes(seed=2)).save(path)
        finally:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 17
    assert path.read_bytes() == old_bytes
    leftovers = [entry.name for entry in tmp_path.iterdir() if entry != path]
    assert len(leftovers) == 1 and re.fullmatch(r"\.clip\.dac\.[0-9a-f]{32}\.tmp", leftovers[0])
    assert list(tmp_path.glob("*.dac")) == [path]
    np.testing.assert_array_equal(DacFile.load(path).codes, random_codes(seed=1))


def test_saved_file_gets_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = make_dac_file().save(tmp_path / "clip.dac")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = make_dac_file().save(tmp_path / "clip.dac")
    path.chmod(0o600)
    make_dac_file().save(path)
    assert path.stat().st_mode & 0o777 == 0o600


# --- official descript-audio-codec files ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["official_numpy1.dac", "official_numpy2.dac"])
def test_official_fixture_loads_with_its_values(name):
    dac_file = DacFile.load(OFFICIAL_FIXTURES / name)
    expected = np.empty((2, 9, 21), dtype=np.int64)
    for channel in range(2):
        for codebook in range(9):
            for frame in range(21):
                expected[channel, codebook, frame] = (channel * 300 + codebook * 97 + frame * 13) % 1024
    np.testing.assert_array_equal(dac_file.codes, expected)
    assert dac_file.metadata == DacFileMetadata(
        sample_rate=48000,
        original_length=9000,
        channels=2,
        n_codebooks=9,
        codebook_size=None,
        hop_length=None,
        model_sampling_rate=None,
        loudness=-23.25,
        chunk_length=7,
        padding=False,
        official_dac_version="1.0.0",
    )


def test_official_fixtures_are_what_the_script_writes(tmp_path):
    artifacts = official_fixture.fixture_artifacts()
    numpy1 = official_fixture.official_dac_bytes(artifacts, numpy1_layout=True)
    assert numpy1 == (OFFICIAL_FIXTURES / "official_numpy1.dac").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in numpy1
    # The numpy 2 layout depends on the installed numpy's pickling, so compare what the files hold.
    regenerated = load_bytes(tmp_path, official_fixture.official_dac_bytes(artifacts))
    committed = DacFile.load(OFFICIAL_FIXTURES / "official_numpy2.dac")
    np.testing.assert_array_equal(regenerated.codes, committed.codes)
    assert regenerated.metadata == committed.metadata


def official_artifacts(**changes):
    artifacts = official_fixture.official_dac_artifacts(
        np.arange(18).reshape(2, 9, 1),
        input_db=np.array([-30.5]),
        original_length=700,
        sample_rate=16000,
        chunk_length=1,
        channels=2,
        padding=True,
    )
    artifacts["metadata"].update(changes)
    return artifacts


def test_official_file_converts_to_the_safe_format(tmp_path):
    official = DacFile.load(OFFICIAL_FIXTURES / "official_numpy1.dac")
    path = official.save(tmp_path / "converted.dac")
    assert not path.read_bytes().startswith(b"\x93NUMPY")
    converted = DacFile.load(path)
    np.testing.assert_array_equal(converted.codes, official.codes)
    assert converted.metadata == official.metadata


@pytest.mark.parametrize("numpy1_layout", [False, True])
def test_official_metadata_may_hold_numpy_scalars(tmp_path, numpy1_layout):
    artifacts = official_artifacts(original_length=np.int64(700), sample_rate=np.int32(16000), padding=np.bool_(True))
    dac_file = load_bytes(tmp_path, official_fixture.official_dac_bytes(artifacts, numpy1_layout=numpy1_layout))
    metadata = dac_file.metadata
    assert (metadata.original_length, metadata.sample_rate, metadata.padding) == (700, 16000, True)
    assert type(metadata.original_length) is int and metadata.loudness == -30.5 and metadata.chunk_length == 1


def _without(key):
    artifacts = official_artifacts()
    del artifacts["metadata"][key]
    return artifacts


@pytest.mark.parametrize(
    "artifacts, message",
    [
        (official_artifacts(channels=1), "2 rows for 1 channels: files holding a batch"),
        (official_artifacts(dac_version="2.0.0"), "unsupported official dac_version '2.0.0'"),
        (_without("chunk_length"), "exactly the keys"),
        (official_artifacts(colour="red"), "exactly the keys"),
        (official_artifacts(input_db=np.array([-20.0, -21.0], dtype=np.float32)), "`input_db` must hold one number"),
        (official_artifacts(input_db=np.array([np.nan], dtype=np.float32)), "loudness"),
        (official_artifacts(padding="yes"), "padding"),
        (official_artifacts(channels=2.0), "channels"),
        ({**official_artifacts(), "codes": np.zeros((2, 9), dtype=np.uint16)}, r"shape \(batch \* channels"),
        ({**official_artifacts(), "codes": np.zeros((2, 9, 1), dtype=np.float32)}, "integers"),
        ({**official_artifacts(), "codes": -np.ones((2, 9, 1), dtype=np.int64)}, r"\[0, 65536\)"),
        ({**official_artifacts(), "extra": 1}, "exactly the keys 'codes' and 'metadata'"),
        ([1, 2, 3], "not a pickled dict"),
        (np.arange(3), "not an official .dac file"),
    ],
)
def test_invalid_official_files_are_rejected(scratch, artifacts, message):
    assert_rejected(scratch, np_save_bytes(artifacts), message)


# --- hostile files ----------------------------------------------------------------------------------------

RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's own array reconstructor, whatever module it lives in


class Calls:
    """Unpickling this object calls `function(*args)`."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


class ArrayWithState:
    """Pickles as numpy does an array, with a forged state (shape, dtype, data) and reconstructor shape."""

    def __init__(self, shape, dtype, data, reconstruct_shape=(0,)):
        self.shape, self.dtype, self.data, self.reconstruct_shape = shape, dtype, data, reconstruct_shape

    def __reduce__(self):
        return RECONSTRUCT, (np.ndarray, self.reconstruct_shape, b"b"), (1, self.shape, self.dtype, False, self.data)


class DtypeWithState:
    """Pickles as numpy does a dtype, with a forged state (e.g. an object dtype without its object flag)."""

    def __init__(self, code, state):
        self.code, self.state = code, state

    def __reduce__(self):
        return np.dtype, (self.code, False, True), self.state


def code_payloads(marker: Path):
    touch = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": Calls(os.system, f"touch '{marker}'"),
        "builtins.exec": Calls(builtins.exec, touch),
        "builtins.eval": Calls(builtins.eval, touch),
        "builtins.open": Calls(builtins.open, str(marker), "w"),
        "subprocess.call": Calls(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("name", ["os.system", "builtins.exec", "builtins.eval", "builtins.open", "subprocess.call"])
@pytest.mark.parametrize("place", ["codes", "metadata", "top level"])
def test_pickled_code_never_runs(tmp_path, name, place):
    def official_with(payload):
        artifacts = official_artifacts()
        if place == "top level":
            return np_save_bytes(payload)
        if place == "codes":
            artifacts["codes"] = payload
        else:
            artifacts["metadata"]["dac_version"] = payload
        return np_save_bytes(artifacts)

    # The payload is live: numpy's own loader runs it (on a marker of its own, in the test's directory).
    live_marker = tmp_path / "created_by_np_load"
    (tmp_path / "live.dac").write_bytes(official_with(code_payloads(live_marker)[name]))
    np.load(tmp_path / "live.dac", allow_pickle=True)
    assert live_marker.exists()

    marker = tmp_path / "created_by_dac_file"
    error = assert_rejected(tmp_path, official_with(code_payloads(marker)[name]), "not allowed")
    assert not marker.exists()
    assert name.split(".")[-1] in str(error) or "opcode" in str(error)


def test_bare_pickle_is_not_a_dac_file(tmp_path):
    marker = tmp_path / "marker"
    assert_rejected(tmp_path, pickle.dumps(code_payloads(marker)["os.system"]), "not a .dac file")
    assert not marker.exists()


HUGE = 10**9
MEMORY_BOMBS = {
    # numpy sizes an object array's buffer from the declared shape before it counts the items (and crashes).
    "object array declared larger than its items": ArrayWithState((HUGE,), np.dtype(object), [1]),
    "uint16 array declared larger than its bytes": ArrayWithState((HUGE,), np.dtype(np.uint16), b"\0" * 4),
    "reconstructor asked for a huge array": ArrayWithState((0,), np.dtype(np.uint16), b"", reconstruct_shape=(HUGE,)),
    "numpy.ndarray called with a huge shape": Calls(np.ndarray, (HUGE,)),
    # An object dtype whose state drops the object flag would make numpy read these bytes as pointers.
    "object dtype without its object flag": ArrayWithState(
        (1,), DtypeWithState("O8", (3, "|", None, None, None, -1, -1, 0)), b"\x41" * 8
    ),
    "uint16 dtype claiming to hold objects": ArrayWithState(
        (1,), DtypeWithState("u2", (3, "<", None, None, None, -1, -1, 63)), [1]
    ),
    "dtype with a huge subarray": ArrayWithState(
        (1,), DtypeWithState("u2", (3, "<", (np.dtype("u1"), (HUGE,)), None, None, -1, -1, 0)), b"\0\0"
    ),
    "void dtype": ArrayWithState((1,), np.dtype("V16"), b"\0" * 16),
    "array subclass": Calls(RECONSTRUCT, np.memmap, (0,), b"b"),
    "other numpy function": Calls(np.frombuffer, b"\0\0"),
}


def _raw_bomb_files():
    huge_bytes = b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"abc."  # BINBYTES8 declaring a terabyte
    # NEWOBJ: numpy.ndarray.__new__(numpy.ndarray, (10**9,)), which bypasses REDUCE
    new_object = b"\x80\x02cnumpy\nndarray\nJ" + struct.pack("<i", HUGE) + b"\x85\x85\x81."
    huge_npy_header = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{"
    huge_tensor = json.dumps(
        {"__metadata__": {"format": FORMAT_NAME, "dac_metadata": "{}"},
         "codes": {"dtype": "U16", "shape": [1, 9, 2**40], "data_offsets": [0, 2]}}
    ).encode()  # fmt: skip
    return {
        "pickle bytes declaring a terabyte": npy_object_file(huge_bytes),
        "NEWOBJ of a huge numpy.ndarray": npy_object_file(new_object),
        ".npy header declaring 4 GB": huge_npy_header,
        "safetensors header declaring 2**62 bytes": struct.pack("<Q", 2**62) + b"{}",
        "safetensors tensor declaring 2**41 elements": struct.pack("<Q", len(huge_tensor)) + huge_tensor + b"\0\0",
    }


@pytest.mark.parametrize("name", [*MEMORY_BOMBS, *_raw_bomb_files()])
def test_hostile_arrays_and_sizes_fail_without_allocating(scratch, name):
    if name in MEMORY_BOMBS:
        # Refused while unpickling, not only by the structure checks that follow.
        data, stage = np_save_bytes({"codes": MEMORY_BOMBS[name], "metadata": {}}), "cannot be read safely"
    else:
        data, stage = _raw_bomb_files()[name], None
    tracemalloc.start()
    try:
        assert_rejected(scratch, data, stage)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{name}: {peak / 2**20:.0f} MiB allocated"


@pytest.mark.parametrize(
    "pickled, message",
    [
        (pickle.dumps({"codes": 1}, protocol=0), "opcode"),  # protocol 0 text opcodes are not in an official file
        (pickle.dumps(np.asarray({"codes": 1}), protocol=4) + b"extra", "5 bytes follow the end of the pickle"),
        (b"\x80\x04\x95", "corrupt pickle"),
        (b"\x80\x04]" + b"Na" * 6000 + b".", "more than 10000 opcodes"),
        (pickle.dumps(np.asarray({"codes": 1}), protocol=4)[:-1], "corrupt pickle"),
    ],
)
def test_malformed_pickles_are_rejected(scratch, pickled, message):
    assert_rejected(scratch, npy_object_file(pickled), re.escape(message))


# --- corrupt files of our format --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (safetensors_file(random_codes().astype(np.uint16), "[1, 2]"), "must be a JSON object, got list"),
        (safetensors_file(random_codes().astype(np.uint16), '"text"'), "must be a JSON object, got str"),
        (safetensors_file(random_codes().astype(np.uint16), "null"), "must be a JSON object, got NoneType"),
        (safetensors_file(random_codes().astype(np.uint16), "{not json"), "Expecting property name"),
        (safetensors_file(random_codes().astype(np.uint16), "[" * 100_000 + "]" * 100_000), "nested too deeply"),
        (safetensors_file(random_codes().astype(np.uint16), valid_metadata_json(loudness=float("nan"))), "NaN"),
        (safetensors_file(random_codes().astype(np.uint16), '{"channels": 1, "channels": 2}'), "repeats keys"),
        (safetensors_file(random_codes().astype(np.uint16), " " * 2**20 + "{}"), "characters long"),
        (safetensors_file(random_codes().astype(np.uint16), valid_metadata_json(sample_rate=None)), "sample_rate"),
        (safetensors_file(random_codes().astype(np.uint16), valid_metadata_json(format_version=2)), "format_version"),
        (safetensors_file(random_codes().astype(np.uint16), valid_metadata_json(surprise=1)), "unknown fields"),
        (safetensors_file(random_codes().astype(np.uint16), "{}"), "lacks required fields"),
        (safetensors_file(random_codes().astype(np.uint16), "{}", format_name="pt"), "not a modeling_dac.dac one"),
        (safetensors.numpy.save({"codes": random_codes().astype(np.uint16)}), "not a modeling_dac.dac one"),
        (safetensors_file(random_codes().astype(np.int64), valid_metadata_json()), "stored as int64"),
        (safetensors_file(random_codes().astype(np.int32), valid_metadata_json()), "stored as int32"),
        (safetensors_file(random_codes().astype(np.float32), valid_metadata_json()), "stored as float32"),
        (safetensors_file(random_codes()[0].astype(np.uint16), valid_metadata_json()), "shape"),
        (safetensors_file(random_codes()[None].astype(np.uint16), valid_metadata_json()), "shape"),
        (safetensors_file(random_codes(channels=3).astype(np.uint16), valid_metadata_json()), "3 channels|2 channels"),
        (safetensors_file(np.full((2, 3, 5), 64, np.uint16), valid_metadata_json()), r"\[0, 64\)"),
        (
            safetensors_file(
                random_codes().astype(np.uint16), valid_metadata_json(), other_tensors={"x": np.zeros(1)}
            ),
            "exactly one tensor",
        ),
        (
            safetensors.numpy.save({"audio": np.zeros(1)}, metadata={"format": FORMAT_NAME, "dac_metadata": "{}"}),
            "exactly one tensor",
        ),
        (b"", "not a .dac file"),
        (b"\x93NUMPY", "corrupt .npy header"),
    ],
)
def test_corrupt_files_are_rejected_with_the_reason(scratch, data, message):
    assert_rejected(scratch, data, message)


def test_error_names_the_file_and_is_a_value_error(tmp_path):
    path = tmp_path / "broken name.dac"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=re.escape(str(path))):
        DacFile.load(path)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        DacFile.load(tmp_path / "absent.dac")


# --- fuzzing ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    ours = make_dac_file(random_codes(2, 3, 6)).save(tmp_path_factory.mktemp("valid") / "ours.dac").read_bytes()
    return {"ours": ours, "official": (OFFICIAL_FIXTURES / "official_numpy1.dac").read_bytes()}


@pytest.mark.parametrize("kind", ["ours", "official"])
def test_every_truncation_is_rejected(scratch, valid_files, kind):
    data = valid_files[kind]
    for length in range(len(data)):
        with pytest.raises(DacFileError):
            load_bytes(scratch, data[:length])


@FUZZ_SETTINGS
@given(
    prefix=st.sampled_from(
        [b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x01\x00\x10\x00", struct.pack("<Q", 80)]
    ),
    body=st.binary(max_size=400),
)
def test_random_bytes_are_rejected(scratch, prefix, body):
    with pytest.raises(DacFileError):
        load_bytes(scratch, prefix + body)


@FUZZ_SETTINGS
@given(kind=st.sampled_from(["ours", "official"]), bits=st.lists(st.integers(min_value=0), min_size=1, max_size=6))
def test_bit_flips_give_a_valid_file_or_dac_file_error(scratch, valid_files, kind, bits):
    data = bytearray(valid_files[kind])
    for bit in bits:
        bit %= 8 * len(data)
        data[bit // 8] ^= 1 << (bit % 8)
    assert_loads_or_rejected(scratch, bytes(data))


@FUZZ_SETTINGS
@given(header_length=st.integers(min_value=0, max_value=2**64 - 1))
def test_wrong_safetensors_header_lengths_are_rejected(scratch, valid_files, header_length):
    data = valid_files["ours"]
    if header_length != struct.unpack("<Q", data[:8])[0]:
        with pytest.raises(DacFileError):
            load_bytes(scratch, struct.pack("<Q", header_length) + data[8:])


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@FUZZ_SETTINGS
@given(value=JSON_VALUES)
def test_metadata_json_that_is_not_complete_is_rejected(scratch, value):
    # Keys of at most 5 characters never include all required fields ("sample_rate", "channels", ...).
    data = safetensors_file(random_codes().astype(np.uint16), json.dumps(value))
    assert_rejected(scratch, data, "JSON object|lacks required fields|not valid JSON")


@FUZZ_SETTINGS
@given(field_name=st.sampled_from([f.name for f in dataclasses.fields(DacFileMetadata)]), value=JSON_VALUES)
def test_any_metadata_field_value_gives_a_valid_file_or_dac_file_error(scratch, field_name, value):
    assert_loads_or_rejected(
        scratch, safetensors_file(random_codes().astype(np.uint16), valid_metadata_json(**{field_name: value}))
    )


@FUZZ_SETTINGS
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32]),
    high=st.integers(1, 200),
)
def test_codes_of_any_shape_and_dtype_give_a_valid_file_or_dac_file_error(scratch, shape, dtype, high):
    codes = np.random.default_rng(0).integers(0, high, shape).astype(dtype)
    data = safetensors_file(codes, valid_metadata_json())
    valid = (
        dtype is np.uint16 and tuple(shape[:2]) == (2, 3) and len(shape) == 3 and (codes.size == 0 or codes.max() < 64)
    )
    if valid:
        np.testing.assert_array_equal(load_bytes(scratch, data).codes, codes)
    else:
        assert_rejected(scratch, data)


# --- documentation ----------------------------------------------------------------------------------------


def test_documentation_examples_run(tmp_path, monkeypatch):
    text = (REPO / "docs" / "dac_file.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "tests" / "fixtures" / "official_dac" / "official_numpy2.dac"  # the page's repo-relative path
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes((OFFICIAL_FIXTURES / "official_numpy2.dac").read_bytes())
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/dac_file.md", "exec"), namespace)
