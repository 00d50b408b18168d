"""The inference fast paths compute what the reference formulas compute, and the benchmark tools measure what
they claim: in-place Snake (bit-identical), the 1x1 convolution accumulated onto the skip path (float rounding),
both leaving their inputs untouched and training unaffected; bf16 models (fp32 quantizer, dtype plumbing,
bounded error), the compiled path, FLOP counting, the layer profile, the side-by-side benchmark in its quick
mode and the FFT and Winograd convolutions the dropped-lever benchmarks time. The device-generic timing and
memory code runs here on the CPU."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from docs_examples import REPO, run_markdown_examples
from modeling_dac import DacConfig, DacModel
from modeling_dac import modeling_dac
from modeling_dac.modeling_dac import DacOutput, DacResidualUnit, DacSnake1d
from modeling_dac.windowing import convolution_layers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_fft_convolution  # noqa: E402
import check_bf16_convolutions  # noqa: E402
import bench_inference  # noqa: E402
import bench_winograd_convolution  # noqa: E402
import harness  # noqa: E402
import profile_inference  # noqa: E402

SMALL = dict(encoder_hidden_size=4, decoder_hidden_size=32, n_codebooks=4, codebook_size=64)
# For bf16 tests: oneDNN's bf16 strided convolutions with 8 or 16 input channels give wrong results on some AMX CPUs
# (benchmarks/check_bf16_convolutions.py), in one layout or the other; from width 16 on, the encoder has none.
BF16_SAFE_WIDTH = dict(encoder_hidden_size=16)


def small_model(seed: int = 0, **overrides) -> DacModel:
    torch.manual_seed(seed)
    return harness.perturb_weights(DacModel(DacConfig(**{**SMALL, **overrides})), seed).eval()


def reference_snake(hidden_states: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The official formula, operation by operation."""
    return hidden_states + (alpha + 1e-9).reciprocal() * torch.sin(alpha * hidden_states).pow(2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_snake_without_autograd_is_bit_identical_and_leaves_its_input_alone(dtype):
    torch.manual_seed(0)
    snake = DacSnake1d(16).to(dtype)
    with torch.no_grad():
        snake.alpha.uniform_(0.3, 3.0)
    hidden_states = (torch.randn(2, 16, 300) * 4).to(dtype)
    kept = hidden_states.clone()
    with torch.inference_mode():
        fast = snake(hidden_states)
    assert torch.equal(hidden_states, kept)
    assert fast.dtype == dtype
    assert torch.equal(fast, reference_snake(hidden_states, snake.alpha.detach()))


def test_snake_with_autograd_keeps_the_differentiable_formula():
    torch.manual_seed(1)
    snake = DacSnake1d(3)
    hidden_states = torch.randn(1, 3, 50, requires_grad=True)
    snake(hidden_states).sum().backward()
    alpha = snake.alpha.detach()
    # d/dx [x + sin^2(a x) / a] = 1 + sin(2 a x)
    expected = 1 + torch.sin(2 * alpha * hidden_states.detach())
    torch.testing.assert_close(hidden_states.grad, expected, rtol=1e-5, atol=1e-6)
    assert snake.alpha.grad is not None and torch.isfinite(snake.alpha.grad).all()


def test_residual_unit_fused_add_matches_and_keeps_its_input():
    torch.manual_seed(2)
    unit = DacResidualUnit(8, dilation=3)
    hidden_states = torch.randn(2, 8, 120)
    kept = hidden_states.clone()
    reference = unit(hidden_states)  # autograd on: out-of-place path
    assert reference.requires_grad
    with torch.inference_mode():
        fast = unit(hidden_states)
    assert torch.equal(hidden_states, kept)
    # The inference path adds the 1x1 product onto the input in one matrix operation: float rounding only.
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-6, atol=1e-6)


def test_residual_unit_under_bf16_autocast_keeps_an_fp32_skip_path():
    torch.manual_seed(3)
    unit = DacResidualUnit(8, dilation=1)
    hidden_states = torch.randn(1, 8, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = unit(hidden_states)
    # bf16 convolution output + fp32 input promotes to fp32, as in the official formula.
    assert output.dtype == torch.float32


def residual_units(channels: int = 6, seed: int = 7) -> tuple[DacResidualUnit, ...]:
    torch.manual_seed(seed)
    units = tuple(DacResidualUnit(channels, dilation) for dilation in (1, 3, 9))
    for unit in units:
        with torch.no_grad():
            unit.snake1.alpha.uniform_(0.3, 3.0)
            unit.snake2.alpha.uniform_(0.3, 3.0)
    return units


def tiled_units(units, hidden_states, activation=None):
    return modeling_dac._residual_units_in_time_tiles(
        units,
        lambda start, stop: hidden_states[..., start:stop].transpose(1, 2).contiguous(),  # windows channels last
        hidden_states.shape[-1],
        activation,
    ).transpose(1, 2)


class WindowCounter:
    """Counts `DacResidualUnit.forward_window` calls, so a test knows the tiled path ran."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = DacResidualUnit.forward_window

        def counted(unit, *args):
            self.calls += 1
            return original(unit, *args)

        monkeypatch.setattr(DacResidualUnit, "forward_window", counted)


# Tiles of 16 frames (below the 39-frame margin of three units) and 48, on short input: many tiles, and every
# way a tile and its margins can meet the sequence's ends.
@pytest.mark.parametrize("tile", [16, 48])
@pytest.mark.parametrize("extra", [1, 2, 38, 39, 40, 47, 48, 49, 100, 137])
def test_time_tiles_compute_the_residual_units_exactly_at_every_tile_boundary(monkeypatch, tile, extra):
    monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", tile)
    counter = WindowCounter(monkeypatch)
    units = residual_units()
    snake = DacSnake1d(6)
    hidden_states = torch.randn(2, 6, 2 * tile + extra)
    kept = hidden_states.clone()
    with torch.inference_mode():
        assert modeling_dac._runs_in_time_tiles(hidden_states, units)
        expected = snake(units[2](units[1](units[0](hidden_states))))
        tiled = tiled_units(units, hidden_states, snake)
    assert counter.calls >= 3 * 3  # three tiles or more, three units each
    assert torch.equal(hidden_states, kept)
    torch.testing.assert_close(tiled, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("activated", [False, True])
@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 8])
def test_transposed_convolution_computes_any_window_of_its_output(stride, activated):
    torch.manual_seed(stride)
    layer = modeling_dac.DacTransposedConv1d(6, 4, stride)
    snake = DacSnake1d(6) if activated else None
    if activated:
        torch.nn.init.uniform_(snake.alpha, 0.3, 3.0)
    hidden_states = torch.randn(2, 6, 11)
    with torch.inference_mode():
        expected = layer(snake(hidden_states) if activated else hidden_states)
        weight = modeling_dac._channels_last_image(layer.weight)
        assert layer.output_length(11) == expected.shape[-1]
        for start in range(expected.shape[-1]):
            for stop in range(start + 1, expected.shape[-1] + 1):
                window = layer.forward_window(hidden_states, start, stop, weight, snake)
                torch.testing.assert_close(window, expected[..., start:stop].transpose(1, 2), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "strides", [{}, dict(downsampling_ratios=[2, 3, 5], upsampling_ratios=[5, 3, 2], hop_length=30)]
)
def test_time_tiles_leave_the_model_outputs_unchanged(monkeypatch, strides):
    model = small_model(seed=8, **strides)
    audio = torch.randn(2, 1, 5000) * 0.3
    with torch.inference_mode():
        expected = model(audio)
        monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", 64)
        counter = WindowCounter(monkeypatch)
        tiled = model(audio)
        latent = model.encoder(audio)
    assert counter.calls > 0
    assert torch.equal(tiled.audio_codes, expected.audio_codes)
    torch.testing.assert_close(tiled.audio_values, expected.audio_values, rtol=0, atol=1e-6)
    assert latent.is_contiguous()  # the tiles store channels last inside the encoder only


def test_time_tiles_are_for_cpu_inference_only(monkeypatch):
    monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", 64)
    long_enough = torch.randn(1, 6, 200)
    units = residual_units()
    with torch.inference_mode():
        assert modeling_dac._runs_in_time_tiles(long_enough, units)
        assert not modeling_dac._runs_in_time_tiles(long_enough[..., :64], units)  # one tile or less: one pass
        assert modeling_dac._runs_in_time_tiles(long_enough[..., :65], units)
        assert not modeling_dac._runs_in_time_tiles(long_enough.to("meta"), units)
        units[1].conv1.padding = (0,)  # as when decoding an official file made without padding: the unit crops
        assert not modeling_dac._runs_in_time_tiles(long_enough, units)
        units[1].conv1.padding = (9,)
    assert not modeling_dac._runs_in_time_tiles(long_enough, units)  # autograd: training keeps the official path
    counter = WindowCounter(monkeypatch)
    model = small_model(seed=9)
    model(torch.randn(1, 1, 4096) * 0.3).loss.backward()
    assert counter.calls == 0


def test_time_tiles_of_a_weight_norm_model_and_under_bf16_autocast(monkeypatch):
    model = small_model(seed=10, **BF16_SAFE_WIDTH)
    model.apply_weight_norm()
    audio = torch.randn(1, 1, 3000) * 0.3
    with torch.no_grad():
        expected = model(audio)

    def run(autocast: bool) -> tuple[torch.Tensor, torch.Tensor, DacOutput]:
        """Encoder latents, the decoder's output for the fp32 codes, and the whole model's output."""
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            return model.encoder(audio), model.decoder(expected.quantized_representation), model(audio)

    untiled, untiled_autocast = run(autocast=False), run(autocast=True)
    monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", 48)
    counter = WindowCounter(monkeypatch)
    tiled, tiled_autocast = run(autocast=False), run(autocast=True)
    assert counter.calls > 0
    assert torch.equal(tiled[2].audio_codes, expected.audio_codes)
    torch.testing.assert_close(tiled[2].audio_values, expected.audio_values, rtol=0, atol=1e-6)
    # Under autocast, bf16 rounding differs between tile shapes (and flips codes of a random model), so the tiled
    # latents and decoder output must be as close to fp32 as the untiled ones (about 1% here), not equal to them.
    for tiled_output, untiled_output, fp32_output in zip(tiled_autocast[:2], untiled_autocast[:2], untiled[:2]):
        assert tiled_output.dtype == untiled_output.dtype
        scale = fp32_output.abs().mean()
        untiled_error = (untiled_output.float() - fp32_output).abs().mean() / scale
        tiled_error = (tiled_output.float() - fp32_output).abs().mean() / scale
        assert untiled_error < 0.03 and tiled_error <= 1.25 * untiled_error
    assert tiled_autocast[2].audio_values.dtype == untiled_autocast[2].audio_values.dtype


def test_model_outputs_agree_across_autograd_modes():
    model = small_model()
    audio = torch.randn(2, 1, 3000) * 0.3
    graded = model(audio)
    with torch.inference_mode():
        fast = model(audio)
    assert torch.equal(graded.audio_codes, fast.audio_codes)
    torch.testing.assert_close(fast.audio_values, graded.audio_values.detach(), rtol=0, atol=1e-6)
    graded.loss.backward()  # training still differentiates through the reference path
    assert model.decoder.block[0].snake1.alpha.grad is None  # loss comes from the quantizer, not the decoder
    assert model.encoder.block[0].res_unit1.snake1.alpha.grad is not None


def test_bf16_model_takes_fp32_audio_keeps_an_fp32_quantizer_and_stays_close(tmp_path):
    model = small_model(seed=4, **BF16_SAFE_WIDTH)
    model.save_pretrained(tmp_path)
    bf16 = DacModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert bf16.encoder.conv1.weight.dtype == torch.bfloat16
    assert bf16.decoder.conv2.weight.dtype == torch.bfloat16
    assert {parameter.dtype for parameter in bf16.quantizer.parameters()} == {torch.float32}

    audio = torch.randn(1, 1, 8192) * 0.3
    with torch.inference_mode():
        reference = model.encode(audio)
        encoded = bf16.encode(audio)  # fp32 audio into a bf16 encoder
        decoded = bf16.decode(reference.quantized_representation).audio_values  # fp32 latent into a bf16 decoder
        from_codes = bf16.decode(audio_codes=reference.audio_codes).audio_values
        expected = model.decode(reference.quantized_representation).audio_values
    assert encoded.audio_codes.dtype == torch.int64
    assert encoded.quantized_representation.dtype == torch.float32
    assert decoded.dtype == from_codes.dtype == torch.bfloat16
    relative_error = (decoded.float() - expected).norm() / expected.norm()
    assert relative_error < 0.05
    assert (encoded.audio_codes == reference.audio_codes).float().mean() > 0.8


def test_compile_for_inference_traces_the_fast_paths_and_matches_eager():
    model = small_model(seed=5)
    compiled = small_model(seed=5)
    compiled.compile_for_inference(backend="aot_eager")  # inductor's code generation is timed by the benchmark
    with torch.inference_mode():
        for samples in (2048, 3000):  # two lengths: dynamic shapes, no silent fallback on a new length
            audio = torch.randn(1, 1, samples) * 0.3
            reference, output = model.encode(audio), compiled.encode(audio)
            assert torch.equal(reference.audio_codes, output.audio_codes)
            torch.testing.assert_close(
                compiled.decode(output.quantized_representation).audio_values,
                model.decode(reference.quantized_representation).audio_values,
                rtol=0,
                atol=1e-5,
            )
    assert set(compiled.state_dict()) == set(model.state_dict())  # no `_orig_mod.` keys: checkpoints unchanged


def test_flop_count_matches_the_published_figures_and_a_hand_count():
    gflop = harness.count_gflop_per_second_of_audio(harness.load_config("44khz"))
    assert gflop["encode"] == pytest.approx(61, rel=0.02)  # figures quoted in the benchmark issue
    assert gflop["decode"] == pytest.approx(138, rel=0.02)

    # Hand count for a one-block model (stride 2, hop 2) on exactly one second of audio at 8 samples per second.
    config = DacConfig(
        encoder_hidden_size=2, downsampling_ratios=[2], decoder_hidden_size=4, n_codebooks=1, codebook_size=4,
        codebook_dim=2, sampling_rate=8,
    )  # fmt: skip
    encoder = (
        2 * 1 * 2 * 7 * 8  # conv1: 1 -> 2 channels, k=7, 8 samples
        + 3 * (2 * 2 * 2 * 7 * 8 + 2 * 2 * 2 * 1 * 8)  # three residual units at width 2: k=7 and 1x1
        + 2 * 4 * 2 * 4 * 4  # strided conv 2 -> 4, k=4, 4 outputs
        + 2 * 4 * 4 * 3 * 4  # conv2 4 -> 4, k=3
    )
    quantizer = 1 * (2 * 4 * 2 * 2 + 2 * 2 * 4) * 4  # in/out projections and codebook search, 4 frames
    decoder = (
        2 * 4 * 4 * 7 * 4  # conv1 4 -> 4, k=7, 4 frames
        + 2 * 4 * 2 * 4 * 4  # transposed conv 4 -> 2, k=4, 4 inputs
        + 3 * (2 * 2 * 2 * 7 * 8 + 2 * 2 * 2 * 1 * 8)  # three residual units at width 2
        + 2 * 1 * 2 * 7 * 8  # conv2 2 -> 1
    )
    counted = harness.count_gflop_per_second_of_audio(config)
    assert counted["encode"] * 1e9 == pytest.approx(encoder + quantizer)
    assert counted["decode"] * 1e9 == pytest.approx(decoder)


@pytest.mark.parametrize("tiled", [False, True])
def test_layer_profile_accounts_for_every_convolution_flop(monkeypatch, tiled):
    model = small_model(seed=6, sampling_rate=44100)
    audio = torch.randn(1, 1, 4 * model.config.hop_length) * 0.3
    with torch.inference_mode():
        latent = model.encode(audio).quantized_representation
        untiled_rows = profile_inference.profile_layers(model, lambda: model.decoder(latent))[0]
        if tiled:  # decoder blocks 2 to 4 (256 to 2048 frames) tile, block 1 (32 frames) does not
            monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", 64)
        rows, wall, cpu = profile_inference.profile_layers(model, lambda: model.decoder(latent))
    assert set(rows) == {"conv k=7 (dilated)", "conv 1x1", "transposed conv (up)", "other conv (in/out)", "snake"}
    decode_flop = harness.count_gflop_per_second_of_audio(model.config)["decode"] * 4 / model.config.frame_rate
    if tiled:
        # Tiles also compute their margins, so they do more of the upsampling and residual units' work, and the
        # same of the rest.
        for kind in ("conv k=7 (dilated)", "conv 1x1", "transposed conv (up)"):
            assert rows[kind]["gflop"] > untiled_rows[kind]["gflop"]
        assert rows["other conv (in/out)"]["gflop"] == pytest.approx(untiled_rows["other conv (in/out)"]["gflop"])
    else:
        assert sum(row["gflop"] for row in rows.values()) == pytest.approx(decode_flop)
    assert 0 < sum(row["wall"] for row in rows.values()) <= wall
    assert not any(hasattr(module, "_forward_hooks") and module._forward_hooks for module in model.modules())
    assert modeling_dac._channels_last_conv.__module__ == modeling_dac.__name__  # the timers are gone


def test_peak_memory_tracker_sees_a_large_allocation_on_cpu():
    if not Path("/proc/self/status").is_file():
        pytest.skip("peak memory is read from /proc on Linux")
    # In a fresh interpreter: in a test worker that already freed large blocks, the allocator may hand back
    # memory that is still resident, and the resident set would not grow.
    script = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(Path(harness.__file__).parent)!r})\n"
        "import harness\n"
        "with harness.peak_memory_tracker('cpu') as tracker, harness.Timer('cpu') as timer:\n"
        "    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched\n"
        "    del block\n"
        "print(tracker.peak, timer.wall, timer.cpu)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    peak, wall, cpu = (float(value) for value in output.split()[-3:])
    assert peak >= 48 * 2**20
    assert wall > 0 and cpu >= 0


@pytest.mark.parametrize("dilation, n_fft, length", [(1, 16, 100), (3, 32, 77), (9, 64, 500)])
def test_fft_convolution_of_the_benchmark_computes_the_dilated_convolution(dilation, n_fft, length):
    torch.manual_seed(dilation)
    hidden_states, weight, bias = torch.randn(2, 5, length), torch.randn(4, 5, 7), torch.randn(4)
    spectrum = bench_fft_convolution.kernel_spectrum(weight, dilation, n_fft)
    result = bench_fft_convolution.fft_convolution(hidden_states, spectrum, bias, dilation, n_fft)
    expected = torch.nn.functional.conv1d(hidden_states, weight, bias, padding=3 * dilation, dilation=dilation)
    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-5 * expected.abs().max().item())


@pytest.mark.parametrize("convolution_precision", ["tf32", "ieee"])
def test_gpu_peak_is_measured_in_the_precision_of_the_fp32_convolutions(convolution_precision):
    # The backend flags are settable (and the context testable) on a CPU-only build too.
    saved, torch.backends.cudnn.conv.fp32_precision = torch.backends.cudnn.conv.fp32_precision, convolution_precision
    try:
        before = torch.backends.cuda.matmul.fp32_precision
        with harness.convolution_precision_matmuls(torch.device("cuda")):
            assert torch.backends.cuda.matmul.fp32_precision == convolution_precision
        assert torch.backends.cuda.matmul.fp32_precision == before
        with harness.convolution_precision_matmuls(torch.device("cpu")):
            assert torch.backends.cuda.matmul.fp32_precision == before
    finally:
        torch.backends.cudnn.conv.fp32_precision = saved


def test_bf16_convolution_check_covers_every_shape_and_flags_a_wrong_layout(monkeypatch, tmp_path, capsys):
    model = small_model(seed=3, **BF16_SAFE_WIDTH)
    checks = check_bf16_convolutions.check_model(model)
    shapes = {
        (type(c), c.in_channels, c.out_channels, c.kernel_size, c.stride, c.dilation) for c in convolution_layers(model)
    }
    assert len(checks) == 2 * len(shapes) == 2 * len({check.shape for check in checks})
    assert sorted(check.relative_error for check in checks)[len(checks) // 2] < 0.01  # only the output's rounding

    original = modeling_dac._channels_last_conv

    def wrong_in_bf16(hidden_states, *args, **kwargs):
        output = original(hidden_states, *args, **kwargs)
        return output * 1.1 if output.dtype == torch.bfloat16 else output

    monkeypatch.setattr(modeling_dac, "_channels_last_conv", wrong_in_bf16)
    model.save_pretrained(tmp_path / "checkpoint")
    failures = check_bf16_convolutions.main(["--configs", str(tmp_path / "checkpoint")])
    assert {failure.layout for failure in failures} == {"channels last"} and len(failures) == len(shapes)
    assert all(failure.relative_error == pytest.approx(0.1, abs=0.01) for failure in failures)
    assert capsys.readouterr().out.count("  WRONG ") == len(failures)


def test_synthetic_audio_is_deterministic_bounded_and_not_silent():
    for make in (harness.speech_like, harness.music_like):
        first, again = make(0.5, 16000, seed=3), make(0.5, 16000, seed=3)
        assert first.dtype.name == "float32" and first.shape == (8000,)
        assert (first == again).all()
        assert math.isclose(float(abs(first).max()), 0.5, rel_tol=1e-5)
        assert float((first**2).mean()) > 1e-4  # RMS above -40 dBFS


def test_quick_benchmark_reports_ratios_against_transformers(tmp_path, capsys):
    output = tmp_path / "bench.json"
    report = bench_inference.main(["--quick", "--threads", "1", "--dtypes", "fp32,bf16", "--output", str(output)])
    printed = capsys.readouterr().out
    assert "x transformers" in printed and "| ours | bf16 |" in printed
    rows = {(row["implementation"], row["dtype"], row["batch_size"], row["seconds"]): row for row in report["rows"]}
    assert set(rows) == {
        (name, dtype, batch, seconds)
        for name in ("ours", "transformers")
        for dtype in ("fp32", "bf16")
        for batch, seconds in ((1, 0.5), (2, 0.25), (2, 0.5))
    }
    batched = rows[("ours", "bf16", 2, 0.5)]
    assert batched["encode_throughput"] == pytest.approx(2 * 0.5 / batched["encode_wall"])
    assert "| ours | bf16 |" in printed.split("batch 2 x 0.5 s")[1]
    assert "#   ours bf16: encode " in printed and "s of audio per second (x" in printed
    rows = {key[:3]: row for key, row in rows.items() if key[3] == 0.5}
    ours = rows[("ours", "fp32", 1)]
    assert ours["speedup_both"] > 0 and rows[("transformers", "fp32", 1)]["speedup_both"] is None
    assert ours["speedup_both_vs_fp32_port"] is None  # same precision: one ratio only
    assert rows[("ours", "bf16", 1)]["speedup_both_vs_fp32_port"] > 0
    assert rows[("transformers", "bf16", 1)]["speedup_both_vs_fp32_port"] > 0
    # Ratios are medians of per-repetition ratios; with one repetition they are plain quotients of the times.
    port = rows[("transformers", "fp32", 1)]
    assert ours["speedup_both"] == pytest.approx(port["both_wall"] / ours["both_wall"])
    assert any("fp32: transformers vs ours: codes changed 0.00%" in note for note in report["notes"])
    written = json.loads(output.read_text())
    assert [row["speedup_both"] for row in written["rows"]] == [row["speedup_both"] for row in report["rows"]]


def test_official_state_dict_round_trips_through_the_official_converter():
    from modeling_dac.conversion import convert_official_state_dict

    model = small_model(seed=7)
    official = harness.official_state_dict(model.state_dict(), model.config)
    assert "encoder.block.0.weight" in official and "decoder.model.1.block.1.weight" in official
    back = convert_official_state_dict(official, model.config)
    assert set(back) == set(model.state_dict())
    assert all(torch.equal(back[name], tensor) for name, tensor in model.state_dict().items())


@pytest.mark.skipif(not Path("/tmp/official_venv/bin/python").is_file(), reason="no official-package environment")
def test_official_worker_runs_the_same_weights():
    model = small_model(seed=8, sampling_rate=44100)
    worker = bench_inference.OfficialSubprocess(
        "/tmp/official_venv/bin/python", "fp32", model.config, model.state_dict(), threads=1, device=torch.device("cpu")
    )
    try:
        audio = torch.randn(1, 1, 6 * model.config.hop_length) * 0.3
        worker.load_audio(audio)
        assert worker.encode().wall > 0 and worker.decode().wall > 0
        codes, audio_values = worker.outputs()
    finally:
        worker.close()
    with torch.inference_mode():
        encoded = model.encode(audio)
        decoded = model.decode(encoded.quantized_representation).audio_values
    assert torch.equal(codes, encoded.audio_codes)
    assert (audio_values - decoded[..., : audio_values.shape[-1]]).abs().max() <= 1e-4


def test_fast_inference_page_examples_run(monkeypatch):
    # Inductor's code generation needs a C++ toolchain and minutes on CI; the page's call is traced the same way.
    compile_for_inference = DacModel.compile_for_inference
    monkeypatch.setattr(
        DacModel, "compile_for_inference", lambda self, **options: compile_for_inference(self, backend="aot_eager")
    )
    monkeypatch.setattr(modeling_dac, "TIME_TILE_FRAMES", modeling_dac.TIME_TILE_FRAMES)  # the page sets it
    monkeypatch.chdir(REPO)
    namespace = run_markdown_examples(REPO / "docs" / "fast_inference.md")
    assert torch.equal(namespace["tiled"], namespace["untiled"])
    assert namespace["changed"] < 0.2
    assert next(namespace["model_bf16"].decoder.parameters()).dtype == torch.bfloat16


def test_quantizer_runs_in_full_precision_under_bf16_autocast():
    """bf16 mixed-precision training: the quantizer's projections see fp32, as with `dtype=bfloat16` at inference."""
    torch.manual_seed(0)
    model = DacModel(DacConfig.from_pretrained(REPO / "hub_configs" / "tiny")).train()
    seen = []
    for vector_quantize in model.quantizer.quantizers:
        vector_quantize.in_proj.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
        vector_quantize.out_proj.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    audio = torch.randn(1, 1, 2048) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(audio)
        model.decode(audio_codes=output.audio_codes)
    assert seen and set(seen) == {torch.float32}
    assert output.audio_values.dtype == torch.bfloat16  # the encoder and decoder still run in bf16


def winograd_correlation(signal: torch.Tensor, kernel: torch.Tensor, outputs_per_tile: int) -> torch.Tensor:
    """`y[i] = sum_j kernel[j] signal[i + j]` tile by tile with the benchmark's transforms, in float64."""
    output_transform, kernel_transform, input_transform = bench_winograd_convolution.winograd_transforms(
        outputs_per_tile
    )
    tiles = signal.unfold(0, outputs_per_tile + 6, outputs_per_tile)  # (tiles, n)
    products = (tiles @ input_transform.T) * (kernel_transform @ kernel)
    return (products @ output_transform.T).reshape(-1)


@pytest.mark.parametrize("outputs_per_tile", [1, 2, 3, 4])
def test_winograd_transforms_of_the_benchmark_are_exact(outputs_per_tile):
    generator = torch.Generator().manual_seed(outputs_per_tile)
    signal = torch.randn(outputs_per_tile * 20 + 6, dtype=torch.float64, generator=generator)
    kernel = torch.randn(7, dtype=torch.float64, generator=generator)
    expected = torch.nn.functional.conv1d(signal[None, None], kernel[None, None])[0, 0]
    torch.testing.assert_close(winograd_correlation(signal, kernel, outputs_per_tile), expected, rtol=0, atol=1e-10)


@pytest.mark.skipif(
    not (shutil.which("c++") and shutil.which("ninja")), reason="building the C++ kernel needs c++ and ninja"
)
def test_winograd_kernel_of_the_benchmark_computes_snake_convolution_snake():
    kernel = bench_winograd_convolution.load_kernel()
    torch.manual_seed(0)
    for dilation, length, outputs_per_tile, tiles_per_chunk in [(1, 100, 2, 16), (3, 77, 3, 8), (9, 500, 2, 256)]:
        hidden_states = torch.randn(2, 5, length)
        alpha1, alpha2 = torch.rand(1, 5, 1) + 0.5, torch.rand(1, 4, 1) + 0.5
        weight, bias = torch.randn(4, 5, 7) / 6, torch.randn(4)
        expected = bench_winograd_convolution.eager_snake_conv_snake(
            hidden_states, alpha1, weight, bias, alpha2, dilation
        )
        transformed = bench_winograd_convolution.transform_weight(weight, outputs_per_tile)
        result = bench_winograd_convolution.snake_conv_snake(
            kernel, hidden_states, alpha1, transformed, bias, alpha2, dilation, tiles_per_chunk
        )
        assert result.shape == expected.shape
        torch.testing.assert_close(result, expected, rtol=0, atol=5e-5 * expected.abs().max().item())
