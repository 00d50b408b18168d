"""Parity with the official descript-audio-codec 1.0.0, through fixtures it generated.

The fixtures (tests/fixtures/reference, made by scripts/generate_reference_fixtures.py) hold reduced-width
models with the released configs' shapes and perturbed random weights, in the official key layout with weight
norm as g/v, plus the official outputs. Each test goes through the real conversion path: an official-format
`.pth` is written and loaded with `load_official_checkpoint` (or `dac convert`).
"""

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_dac import DacModel
from modeling_dac.cli import main as dac_main
from modeling_dac.conversion import load_official_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
NAMES = ["dac_44khz", "dac_44khz_16kbps", "dac_24khz"]
AUDIO_TOLERANCE = 1e-4


def write_official_checkpoint(name: str, path: Path, drop_latent_dim: bool = False) -> Path:
    kwargs = dict(json.loads((FIXTURES / f"{name}.json").read_text())["kwargs"])
    if drop_latent_dim:
        kwargs.pop("latent_dim")
    state_dict = load_file(FIXTURES / f"{name}_state_dict.safetensors")
    torch.save({"state_dict": state_dict, "metadata": {"kwargs": kwargs}}, path)
    return path


@pytest.fixture(scope="module", params=NAMES)
def official(request, tmp_path_factory):
    name = request.param
    checkpoint = write_official_checkpoint(name, tmp_path_factory.mktemp(name) / "weights.pth")
    return name, load_official_checkpoint(checkpoint), load_file(FIXTURES / f"{name}_io.safetensors")


def assert_audio_close(ours: torch.Tensor, reference: torch.Tensor):
    span = reference.shape[-1]
    assert ours.shape[-1] >= span
    assert (ours[..., :span] - reference).abs().max().item() <= AUDIO_TOLERANCE


@torch.no_grad()
def test_encode_matches_official(official):
    _, model, reference = official
    encoded = model.encode(reference["input_values"])
    torch.testing.assert_close(model.encoder(reference["input_values"]), reference["latents"], rtol=1e-5, atol=1e-5)
    assert torch.equal(encoded.audio_codes, reference["audio_codes"])
    torch.testing.assert_close(encoded.projected_latents, reference["projected_latents"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        encoded.quantized_representation, reference["quantized_representation"], rtol=1e-5, atol=1e-5
    )
    torch.testing.assert_close(encoded.commitment_loss, reference["commitment_loss"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(encoded.codebook_loss, reference["codebook_loss"], rtol=1e-5, atol=1e-7)
    four = model.encode(reference["input_values"], n_quantizers=4)
    assert torch.equal(four.audio_codes, reference["audio_codes_4"])
    torch.testing.assert_close(
        four.quantized_representation, reference["quantized_representation_4"], rtol=1e-5, atol=1e-5
    )


@torch.no_grad()
def test_decode_matches_official_and_returns_frames_times_hop(official):
    _, model, reference = official
    frames = reference["audio_codes"].shape[-1]
    decoded = model.decode(reference["quantized_representation"]).audio_values
    assert decoded.shape[-1] == frames * model.config.hop_length
    assert_audio_close(decoded, reference["audio_values"])
    from_codes = model.decode(audio_codes=reference["audio_codes"][:, :3]).audio_values
    assert from_codes.shape[-1] == frames * model.config.hop_length
    assert_audio_close(from_codes, reference["audio_values_3_codebooks"])


@torch.no_grad()
def test_forward_on_unpadded_input_matches_official(official):
    _, model, reference = official
    output = model(reference["forward_input_values"])
    assert output.audio_values.shape[-1] == reference["forward_input_values"].shape[-1]
    assert torch.equal(output.audio_codes, reference["forward_audio_codes"])
    assert_audio_close(output.audio_values, reference["forward_audio_values"])


def test_parity_fixture_is_not_trivial(official):
    # Perturbed weights: the codes use many entries and the audio is far from silence.
    _, _, reference = official
    assert reference["audio_codes"].unique().numel() > 20
    assert reference["audio_values"].abs().max() > 1e-2


def test_pre_1_0_metadata_without_latent_dim_converts(tmp_path):
    checkpoint = write_official_checkpoint("dac_44khz", tmp_path / "old.pth", drop_latent_dim=True)
    model = load_official_checkpoint(checkpoint)
    assert model.config.hidden_size == 8 * 2**4


def test_dac_convert_writes_a_loadable_directory(tmp_path, capsys):
    checkpoint = write_official_checkpoint("dac_24khz", tmp_path / "weights.pth")
    assert dac_main(["convert", str(checkpoint), str(tmp_path / "converted")]) == 0
    assert "24000 Hz" in capsys.readouterr().out
    files = {path.name for path in (tmp_path / "converted").iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= files
    model = DacModel.from_pretrained(tmp_path / "converted").eval()
    reference = load_file(FIXTURES / "dac_24khz_io.safetensors")
    with torch.no_grad():
        assert torch.equal(model.encode(reference["input_values"]).audio_codes, reference["audio_codes"])


def test_dac_convert_replaces_an_output_only_with_overwrite_and_whole(tmp_path, capsys, monkeypatch):
    from modeling_dac import feature_extraction_dac

    output = tmp_path / "converted"
    assert dac_main(["convert", str(write_official_checkpoint("dac_24khz", tmp_path / "24.pth")), str(output)]) == 0
    before = {path.name: path.read_bytes() for path in output.iterdir()}
    checkpoint_44 = write_official_checkpoint("dac_44khz", tmp_path / "44.pth")
    assert dac_main(["convert", str(checkpoint_44), str(output)]) == 1
    assert "is not empty; pass overwrite=True (--overwrite)" in capsys.readouterr().err

    def interrupted(*args, **kwargs):  # the model is written, the feature extractor's file never is
        raise KeyboardInterrupt

    monkeypatch.setattr(feature_extraction_dac.DacFeatureExtractor, "save_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dac_main(["convert", str(checkpoint_44), str(output), "--overwrite"])
    assert {path.name: path.read_bytes() for path in output.iterdir()} == before  # the old conversion, untouched
    assert sorted(path.name for path in tmp_path.iterdir()) == ["24.pth", "44.pth", "converted"]
    monkeypatch.undo()
    assert dac_main(["convert", str(checkpoint_44), str(output), "--overwrite"]) == 0
    assert DacModel.from_pretrained(output).config.sampling_rate == 44100
    (tmp_path / "file").write_text("not a directory")
    assert dac_main(["convert", str(checkpoint_44), str(tmp_path / "file")]) == 1
    assert "is an existing file" in capsys.readouterr().err
    assert dac_main(["convert", str(checkpoint_44), f"{tmp_path / 'slash'}/"]) == 0  # staged beside `slash`
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert dac_main(["convert", str(checkpoint_44), "."]) == 1
    assert "is the current directory or holds it, which cannot be replaced" in capsys.readouterr().err


def test_dac_convert_overwrite_never_deletes_what_is_not_a_saved_model(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    checkpoint = write_official_checkpoint("dac_24khz", project / "weights.pth")
    (project / "notes.txt").write_text("mine")
    assert dac_main(["convert", str(checkpoint), str(project), "--overwrite"]) == 1
    assert "holds notes.txt, weights.pth, which is not a saved model's" in capsys.readouterr().err
    assert sorted(path.name for path in project.iterdir()) == ["notes.txt", "weights.pth"]

    (project / "notes.txt").unlink()
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert dac_main(["convert", str(checkpoint), str(tmp_path), "--overwrite"]) == 1  # holds the project
    assert "which is not a saved model's" in capsys.readouterr().err
    empty_parent = tmp_path / "empty"
    (empty_parent / "here").mkdir(parents=True)
    monkeypatch.chdir(empty_parent / "here")
    # Not empty (it holds the current directory) and not a model: refused before anything is replaced.
    assert dac_main(["convert", str(checkpoint), "..", "--overwrite"]) == 1
    assert (empty_parent / "here").is_dir()


def test_not_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth is not a PyTorch checkpoint"):
        load_official_checkpoint(garbage)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="state_dict"):
        load_official_checkpoint(tmp_path / "other.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("notes.txt", "a zip archive, but not torch.save's")
    with pytest.raises(ValueError, match="other.zip is a zip archive but not a readable PyTorch checkpoint: "):
        load_official_checkpoint(tmp_path / "other.zip")
    # Text bytes read as torch's older pickle format fail with KeyError: 101, which is not passed on.
    (tmp_path / "notaudio.wav").write_text("hello")
    assert dac_main(["convert", str(tmp_path / "notaudio.wav"), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        f"dac convert: error: {tmp_path / 'notaudio.wav'} is not a PyTorch checkpoint (or is truncated): torch.save "
        "writes a zip archive, and this file is neither one nor a checkpoint in PyTorch's older format."
    )


def test_a_pickled_object_is_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"state_dict": {}, "metadata": {"kwargs": {}}, "payload": Exploit()}, tmp_path / "evil.pth")
    refused = r"weights_only=True refused it \(Unsupported global: GLOBAL \w+ was not an allowed global by default\)\."
    with pytest.raises(ValueError, match=refused):
        load_official_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


def test_mismatched_state_dict_names_the_keys(tmp_path):
    kwargs = json.loads((FIXTURES / "dac_44khz.json").read_text())["kwargs"]
    state_dict = load_file(FIXTURES / "dac_44khz_state_dict.safetensors")
    state_dict["encoder.block.99.bias"] = torch.zeros(1)
    del state_dict["decoder.model.0.bias"]
    torch.save({"state_dict": state_dict, "metadata": {"kwargs": kwargs}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"encoder\.block\.99\.bias.*decoder\.conv1\.bias"):
        load_official_checkpoint(tmp_path / "bad.pth")


def test_metadata_disagreeing_with_the_tensor_shapes_names_them(tmp_path, capsys):
    kwargs = {**json.loads((FIXTURES / "dac_44khz.json").read_text())["kwargs"], "codebook_size": 512}
    state_dict = load_file(FIXTURES / "dac_44khz_state_dict.safetensors")  # 1024 entries per codebook
    torch.save({"state_dict": state_dict, "metadata": {"kwargs": kwargs}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"wrong shape \['quantizer\.quantizers\.0\.codebook\.weight \(1024, 8\)"):
        load_official_checkpoint(tmp_path / "bad.pth")
    assert dac_main(["convert", str(tmp_path / "bad.pth"), str(tmp_path / "out")]) == 1
    assert "wrong shape" in capsys.readouterr().err
