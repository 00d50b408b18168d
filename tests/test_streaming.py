"""Streaming encoder and decoder: chunks of any size, offline-equal outputs, fixed latency, bounded buffers."""

import random

import numpy as np
import pytest
import torch

from docs_examples import REPO, run_markdown_examples
from modeling_dac import DacConfig, DacModel
from modeling_dac.streaming import DacStreamingDecoder, DacStreamingEncoder
from modeling_dac.windowing import decoder_context, encoder_context
from test_windowing import random_audio, random_model, whole_decode, whole_encode

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHUNK_SIZES = [1, 2, 7, 100, 319, 320, 511, 512, 513, 1000, 4096, 20000]


def random_chunks(length: int, sizes: list[int], seed: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges covering [0, length), sizes drawn from `sizes`."""
    rng, ranges, start = random.Random(seed), [], 0
    while start < length:
        stop = min(length, start + rng.choice(sizes))
        ranges.append((start, stop))
        start = stop
    return ranges


@pytest.mark.parametrize("strides, seed", [("44khz", 0), ("44khz", 1), ("24khz", 2), ("24khz", 3)])
def test_streamed_codes_equal_the_offline_encode(strides, seed):
    model = random_model(strides)
    hop_length = model.config.hop_length
    audio = random_audio(2, 45 * hop_length + 77, seed)
    encoder = DacStreamingEncoder(model, window_duration=25 / model.config.frame_rate)
    pieces = [encoder.push(audio[:, start:stop]) for start, stop in random_chunks(audio.shape[-1], CHUNK_SIZES, seed)]
    pieces.append(encoder.flush())
    assert all(piece.shape[:2] == (2, 4) and piece.dtype == torch.long for piece in pieces)
    assert torch.equal(torch.cat(pieces, dim=-1), whole_encode(model, audio))


def test_one_sample_at_a_time_and_one_long_chunk():
    model = random_model("24khz")
    audio = random_audio(1, 14 * 320 + 5)
    expected = whole_encode(model, audio, n_quantizers=3)
    encoder = DacStreamingEncoder(model, n_quantizers=3)
    pieces = [encoder.push(audio[0, index : index + 1].numpy()) for index in range(audio.shape[-1])]
    assert torch.equal(torch.cat(pieces + [encoder.flush()], dim=-1), expected)
    # A chunk longer than a window is encoded in several windows.
    encoder = DacStreamingEncoder(model, n_quantizers=3, window_duration=18 / 75, batch_size=2)
    assert torch.equal(torch.cat([encoder.push(audio), encoder.flush()], dim=-1), expected)


def test_encoder_latency_is_fixed_by_the_right_context():
    model = random_model("44khz")
    hop_length, right = model.config.hop_length, encoder_context(model.config).right
    encoder = DacStreamingEncoder(model)
    assert encoder.latency_samples == right * hop_length == 8 * 512
    assert encoder.latency_seconds == pytest.approx(8 * 512 / 44100)
    audio, pushed, emitted = random_audio(1, 30 * hop_length), 0, 0
    for start, stop in random_chunks(audio.shape[-1], [1, 300, 512, 700, 2000], seed=5):
        emitted += encoder.push(audio[:, start:stop]).shape[-1]
        pushed = stop
        # frame j comes out as soon as (j + 1 + right) * hop samples are in, not before
        assert emitted == max(0, pushed // hop_length - right)
    assert emitted + encoder.flush().shape[-1] == 30


@pytest.mark.parametrize("strides, seed", [("44khz", 0), ("24khz", 1)])
def test_streamed_audio_matches_the_offline_decode(strides, seed):
    model = random_model(strides)
    codes = whole_encode(model, random_audio(2, 50 * model.config.hop_length, seed))
    decoder = DacStreamingDecoder(model, window_duration=30 / model.config.frame_rate)
    right = decoder_context(model.config).right
    assert decoder.latency_frames == right == 10
    pieces, pushed = [], 0
    for start, stop in random_chunks(codes.shape[-1], [1, 2, 3, 9, 25, 40], seed):
        pieces.append(decoder.push(codes[..., start:stop]))
        pushed = stop
        assert sum(piece.shape[-1] for piece in pieces) == max(0, pushed - right) * model.config.hop_length
    pieces.append(decoder.flush())
    audio = torch.cat(pieces, dim=-1)
    expected = whole_decode(model, codes)
    assert audio.shape == expected.shape
    assert (audio - expected).abs().max() < 1e-4


def test_buffers_stay_bounded_over_a_long_stream():
    model = random_model("24khz")
    encoder = DacStreamingEncoder(model)
    decoder = DacStreamingDecoder(model)
    context = encoder_context(model.config)
    largest_buffer = 0
    for seed in range(40):  # 40 chunks of 1500 samples: 2.5 s, 188 frames
        codes = encoder.push(random_audio(1, 1500, seed))
        decoder.push(codes)
        largest_buffer = max(largest_buffer, encoder.buffered)
        assert decoder.buffered <= decoder_context(model.config).left + decoder_context(model.config).right + 4
    # what is kept: the left context, the frames waiting for their right context, and the chunk itself
    assert largest_buffer <= (context.left + context.right + 1) * 320 + 1500
    encoder.flush(), decoder.flush()
    assert encoder.buffered == decoder.buffered == 0  # a finished stream holds nothing


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_decoder_takes_codes_of_any_integer_dtype(dtype):
    torch.manual_seed(0)
    model = DacModel(DacConfig(encoder_hidden_size=2, decoder_hidden_size=16, n_codebooks=4)).eval()
    codes = torch.randint(0, 256, (1, 4, 30))  # fits every dtype; the codebooks have 1024 entries
    decoder = DacStreamingDecoder(model)
    decoded = torch.cat([decoder.push(codes.numpy().astype(dtype)), decoder.flush()], dim=-1)
    assert (decoded - whole_decode(model, codes)).abs().max() < 1e-4


def test_misuse_is_a_clear_error():
    model = random_model("44khz")
    encoder = DacStreamingEncoder(model)
    encoder.push(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="first chunk"):
        encoder.push(torch.zeros(1, 100))
    with pytest.raises(ValueError, match="NaN"):
        encoder.push(torch.full((2, 10), float("inf")))
    assert encoder.flush().shape == (2, 4, 1)
    with pytest.raises(ValueError, match="flushed"):
        encoder.push(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="flushed"):
        encoder.flush()
    with pytest.raises(ValueError, match=r"audio chunk` has shape \(1600, 2\): 1600 channels of 2 samples"):
        DacStreamingEncoder(model).push(np.zeros((1600, 2), np.float32))  # soundfile's (samples, channels)
    assert DacStreamingEncoder(model).flush().shape == (0, 4, 0)
    decoder = DacStreamingDecoder(model)
    with pytest.raises(ValueError, match="integers"):
        decoder.push(torch.zeros(1, 4, 3))
    with pytest.raises(ValueError, match="lie in"):
        decoder.push(torch.full((1, 4, 3), 64))
    with pytest.raises(ValueError, match="codebooks"):
        decoder.push(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="receptive field"):
        DacStreamingDecoder(model, window_duration=0.01)
    with pytest.raises(ValueError, match="n_quantizers"):
        DacStreamingEncoder(model, n_quantizers=0)


def test_streaming_docs_examples_run(monkeypatch):
    monkeypatch.chdir(REPO)
    run_markdown_examples(REPO / "docs" / "streaming.md")
