"""Tests for modeling_dac.tokens: LM token layouts, their inverses, and malformed-stream handling."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_dac.tokens import (
    DacTokenLayout,
    apply_delay_pattern,
    codes_to_tokens,
    dia_delays,
    musicgen_delays,
    revert_delay_pattern,
    tokens_to_codes,
    truncate_codebooks,
    truncate_tokens,
)


DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "tokens.md"

settings.register_profile("tokens", max_examples=60, deadline=None)
settings.load_profile("tokens")


@st.composite
def random_codes(draw, max_codebooks=9, max_frames=12):
    """Random ``[batch, n_codebooks, frames]`` int64 codes and their codebook size."""
    batch_size = draw(st.integers(1, 3))
    n_codebooks = draw(st.integers(1, max_codebooks))
    frames = draw(st.integers(0, max_frames))
    codebook_size = draw(st.sampled_from([1, 2, 3, 16, 1024, 2048]))
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(0, codebook_size, (batch_size, n_codebooks, frames))
    return torch.from_numpy(codes), codebook_size


def flat_tokens_by_loops(codes, codebook_size):
    """Reference flat layout written with plain loops."""
    batch_size, n_codebooks, frames = codes.shape
    return [
        [int(codes[b, k, t]) + k * codebook_size for t in range(frames) for k in range(n_codebooks)]
        for b in range(batch_size)
    ]


def delayed_by_loops(codes, delays, pad_id, bos_id=None):
    """Reference delay pattern written with plain loops."""
    batch_size, n_codebooks, frames = codes.shape
    length = frames + max(delays)
    out = []
    for b in range(batch_size):
        rows = []
        for k, delay in enumerate(delays):
            row = []
            for position in range(length):
                if position < delay:
                    row.append(pad_id if bos_id is None else bos_id)
                elif position < delay + frames:
                    row.append(int(codes[b, k, position - delay]))
                else:
                    row.append(pad_id)
            rows.append(row)
        out.append(rows)
    return out


# Flat layout


def test_codes_to_tokens_known_values():
    codes = torch.tensor([[[1, 2], [3, 0], [5, 6]]])
    assert codes_to_tokens(codes, 10).tolist() == [[1, 13, 25, 2, 10, 26]]
    assert tokens_to_codes(torch.tensor([[1, 13, 25, 2, 10, 26]]), 3, 10).tolist() == codes.tolist()


@given(random_codes())
def test_flat_layout_matches_reference_and_round_trips(codes_and_size):
    codes, codebook_size = codes_and_size
    tokens = codes_to_tokens(codes, codebook_size)
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == flat_tokens_by_loops(codes, codebook_size)
    assert torch.equal(tokens_to_codes(tokens, codes.shape[1], codebook_size), codes)


@given(random_codes(), st.integers(1, 8))
def test_partial_frame_raises_or_is_dropped(codes_and_size, extra):
    codes, codebook_size = codes_and_size
    n_codebooks = codes.shape[1]
    extra = extra % n_codebooks
    # The cut frame holds valid tokens for its first `extra` codebooks, as a length-limited LM leaves it.
    partial_frame = torch.arange(extra)[None].expand(codes.shape[0], -1) * codebook_size
    tokens = torch.cat([codes_to_tokens(codes, codebook_size), partial_frame], dim=1)
    assert torch.equal(tokens_to_codes(tokens, n_codebooks, codebook_size, on_partial_frame="drop"), codes)
    if extra:
        with pytest.raises(ValueError, match=f"not a multiple of n_codebooks={n_codebooks}.*cut after {extra} of"):
            tokens_to_codes(tokens, n_codebooks, codebook_size)


def test_dropped_partial_frame_is_still_checked():
    tokens = torch.tensor([[0, 10, 20, 15]])  # the cut frame's first token belongs to codebook 1
    with pytest.raises(ValueError, match=r"token 15 at tokens\[0, 3\] belongs to codebook 1.*codebook 0 of frame 1"):
        tokens_to_codes(tokens, 3, 10, on_partial_frame="drop")


@pytest.mark.parametrize(
    "bad_token, message",
    [
        (-1, r"token id -1 at tokens\[1, 2\] is outside the code range \[0, 30\)"),
        (33, r"token id 33 at tokens\[1, 2\] is outside the code range"),
        (30, r"special token 30 \(bos\) at tokens\[1, 2\]"),
        (31, r"special token 31 \(eos\) at tokens\[1, 2\]"),
        (32, r"special token 32 \(pad\) at tokens\[1, 2\]"),
        (5, r"token 5 at tokens\[1, 2\] belongs to codebook 0, but that position holds codebook 2 of frame 0"),
    ],
)
def test_tokens_to_codes_names_the_bad_token(bad_token, message):
    tokens = codes_to_tokens(torch.zeros(2, 3, 2, dtype=torch.long), 10)
    tokens[1, 2] = bad_token
    with pytest.raises(ValueError, match=message):
        tokens_to_codes(tokens, 3, 10)


def test_flat_layout_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"codes\[0, 1, 0\] = 10 is outside \[0, codebook_size=10\)"):
        codes_to_tokens(torch.tensor([[[0], [10]]]), 10)
    with pytest.raises(ValueError, match=r"codes must have shape \[batch, n_codebooks, frames\]"):
        codes_to_tokens(torch.zeros(3, 4, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="must hold integers"):
        codes_to_tokens(torch.zeros(1, 2, 3), 10)
    with pytest.raises(ValueError, match="must hold integers"):
        tokens_to_codes(np.zeros((1, 4), dtype=np.float32), 2, 10)
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        codes_to_tokens([[[1]]], 10)
    with pytest.raises(ValueError, match="`codebook_size` must be a positive integer"):
        codes_to_tokens(torch.zeros(1, 1, 1, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="on_partial_frame must be 'error' or 'drop'"):
        tokens_to_codes(torch.zeros(1, 2, dtype=torch.long), 2, 10, on_partial_frame="pad")


def test_numpy_in_numpy_out_and_int64():
    codes = np.array([[[1, 2], [3, 0]]], dtype=np.int16)
    tokens = codes_to_tokens(codes, 4)
    assert isinstance(tokens, np.ndarray) and tokens.dtype == np.int64
    assert tokens.tolist() == [[1, 7, 2, 4]]
    back = tokens_to_codes(tokens, 2, 4)
    assert isinstance(back, np.ndarray) and back.dtype == np.int64
    np.testing.assert_array_equal(back, codes)
    delayed = apply_delay_pattern(codes, [0, 1], pad_id=4)
    assert isinstance(delayed, np.ndarray) and delayed.dtype == np.int64
    np.testing.assert_array_equal(revert_delay_pattern(delayed, [0, 1], pad_id=4), codes)
    assert codes_to_tokens(torch.tensor([[[1]]], dtype=torch.int32), 4).dtype == torch.int64


def test_empty_batch_round_trips():
    codes = torch.zeros(0, 4, 3, dtype=torch.long)  # e.g. a filtered batch with no clip left
    tokens = codes_to_tokens(codes, 1024)
    assert tokens.shape == (0, 12)
    assert tokens_to_codes(tokens, 4, 1024).shape == (0, 4, 3)
    assert tokens_to_codes(np.zeros((0, 13), dtype=np.int64), 4, 1024, on_partial_frame="drop").shape == (0, 4, 3)


# Delay patterns


def test_named_delay_patterns():
    assert musicgen_delays(4) == [0, 1, 2, 3]
    assert dia_delays(9) == [0, 8, 9, 10, 11, 12, 13, 14, 15]
    assert dia_delays(4) == [0, 8, 9, 10]
    assert dia_delays(1) == [0]
    with pytest.raises(ValueError, match="`n_codebooks` must be a positive integer"):
        musicgen_delays(0)


def test_musicgen_delay_known_values():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]])
    P = 2048
    expected = [
        [1, 2, 3, P, P, P],
        [P, 4, 5, 6, P, P],
        [P, P, 7, 8, 9, P],
        [P, P, P, 10, 11, 12],
    ]
    delayed = apply_delay_pattern(codes, musicgen_delays(4), pad_id=P)
    assert delayed.tolist() == [expected]
    assert torch.equal(revert_delay_pattern(delayed, musicgen_delays(4), pad_id=P), codes)


def test_dia_delay_known_values_with_bos_fill():
    codes = torch.tensor([[[1, 2], [3, 4], [5, 6], [7, 8]]])
    layout = DacTokenLayout(4, 1024)
    B, P = layout.codebook_bos_token_id, layout.codebook_pad_token_id
    expected = [
        [1, 2, P, P, P, P, P, P, P, P, P, P],
        [B, B, B, B, B, B, B, B, 3, 4, P, P],
        [B, B, B, B, B, B, B, B, B, 5, 6, P],
        [B, B, B, B, B, B, B, B, B, B, 7, 8],
    ]
    delayed = apply_delay_pattern(codes, dia_delays(4), pad_id=P, bos_id=B)
    assert delayed.tolist() == [expected]
    assert torch.equal(revert_delay_pattern(delayed, dia_delays(4), pad_id=P, bos_id=B), codes)


@given(random_codes(), st.data())
def test_delay_pattern_matches_reference_and_round_trips(codes_and_size, data):
    codes, codebook_size = codes_and_size
    n_codebooks = codes.shape[1]
    delays = data.draw(st.lists(st.integers(0, 10), min_size=n_codebooks, max_size=n_codebooks))
    pad_id = codebook_size + 1
    bos_id = data.draw(st.sampled_from([None, codebook_size + 2]))
    delayed = apply_delay_pattern(codes, delays, pad_id, bos_id)
    assert delayed.shape == (codes.shape[0], n_codebooks, codes.shape[2] + max(delays))
    assert delayed.tolist() == delayed_by_loops(codes, delays, pad_id, bos_id)
    assert torch.equal(revert_delay_pattern(delayed, delays), codes)
    assert torch.equal(revert_delay_pattern(delayed, delays, pad_id, bos_id), codes)


def test_revert_delay_pattern_reports_broken_layout():
    codes = torch.tensor([[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]])
    delays, P = musicgen_delays(4), 2048
    delayed = apply_delay_pattern(codes, delays, pad_id=P)

    corrupted = delayed.clone()
    corrupted[0, 2, 0] = 7  # a code where codebook 2 must still be empty
    expected = r"delayed\[0, 2, 0\] = 7, but codebook 2 \(delay 2, 3 frames\) should hold the fill id 2048"
    with pytest.raises(ValueError, match=expected):
        revert_delay_pattern(corrupted, delays, pad_id=P)

    corrupted = delayed.clone()
    corrupted[0, 0, 5] = 3
    with pytest.raises(ValueError, match=r"delayed\[0, 0, 5\] = 3, .*should hold pad_id 2048"):
        revert_delay_pattern(corrupted, delays, pad_id=P)

    corrupted = delayed.clone()
    corrupted[0, 1, 2] = P  # a pad inside codebook 1's codes
    with pytest.raises(ValueError, match=r"delayed\[0, 1, 2\] = 2048, .*should hold a code, not a fill id"):
        revert_delay_pattern(corrupted, delays, pad_id=P)

    with pytest.raises(ValueError, match="delayed length 2 is shorter than the largest delay 3"):
        revert_delay_pattern(delayed[..., :2], delays)


def test_delay_pattern_rejects_bad_arguments():
    codes = torch.tensor([[[1, 2], [3, 4]]])
    with pytest.raises(ValueError, match="got 3 delays for 2 codebooks"):
        apply_delay_pattern(codes, [0, 1, 2], pad_id=9)
    with pytest.raises(ValueError, match="delays must be non-negative"):
        apply_delay_pattern(codes, [0, -1], pad_id=9)
    with pytest.raises(ValueError, match="delays must be integers"):
        apply_delay_pattern(codes, [0, 1.7], pad_id=9)  # not rounded down to 1
    with pytest.raises(ValueError, match="codes contain pad_id=3"):
        apply_delay_pattern(codes, [0, 1], pad_id=3)
    with pytest.raises(ValueError, match="codes contain bos_id=4"):
        apply_delay_pattern(codes, [0, 1], pad_id=9, bos_id=4)


# Truncation


@given(random_codes(), st.data())
def test_truncation_commutes_with_flattening(codes_and_size, data):
    codes, codebook_size = codes_and_size
    n_codebooks = codes.shape[1]
    n = data.draw(st.integers(1, n_codebooks))
    kept = truncate_codebooks(codes, n)
    assert torch.equal(kept, codes[:, :n])
    tokens = truncate_tokens(codes_to_tokens(codes, codebook_size), n_codebooks, codebook_size, n)
    assert torch.equal(tokens, codes_to_tokens(kept, codebook_size))
    assert torch.equal(tokens_to_codes(tokens, n, codebook_size), kept)


def test_truncation_copies_and_checks_n():
    codes = torch.tensor([[[1, 2], [3, 4]]])
    kept = truncate_codebooks(codes, 1)
    kept[0, 0, 0] = 0
    assert codes[0, 0, 0] == 1
    for n in (0, 3, 2.0, True):
        with pytest.raises(ValueError, match=r"n must be an integer in \[1, 2\]"):
            truncate_codebooks(codes, n)
    with pytest.raises(ValueError, match="special token 8 \\(bos\\)"):
        truncate_tokens(torch.tensor([[8, 1, 7]]), 2, 4, 1)


# Special tokens


def test_special_token_ids():
    layout = DacTokenLayout(n_codebooks=9, codebook_size=1024)
    assert (layout.bos_token_id, layout.eos_token_id, layout.pad_token_id) == (9216, 9217, 9218)
    assert layout.vocab_size == 9219
    per_codebook_ids = (layout.codebook_eos_token_id, layout.codebook_pad_token_id, layout.codebook_bos_token_id)
    assert per_codebook_ids == (1024, 1025, 1026)
    assert layout.codebook_vocab_size == 1027
    with pytest.raises(ValueError, match="`n_codebooks` must be a positive integer"):
        DacTokenLayout(0, 1024)
    with pytest.raises(ValueError, match="`n_codebooks` must be a positive integer"):
        DacTokenLayout(9.0, 1024)  # would make every special id a float


def test_add_and_strip_special_tokens_known_values():
    layout = DacTokenLayout(2, 4)
    sequence = layout.add_special_tokens(torch.tensor([1, 6, 3, 4]))
    assert sequence.tolist() == [8, 1, 6, 3, 4, 9]
    assert layout.strip_special_tokens(sequence).tolist() == [1, 6, 3, 4]
    assert layout.add_special_tokens(torch.tensor([], dtype=torch.long)).tolist() == [8, 9]


@given(random_codes(), st.sampled_from(["right", "left"]), st.data())
def test_special_tokens_and_padding_round_trip(codes_and_size, padding_side, data):
    codes, codebook_size = codes_and_size
    batch_size, n_codebooks, frames = codes.shape
    layout = DacTokenLayout(n_codebooks, codebook_size)
    frame_counts = data.draw(st.lists(st.integers(0, frames), min_size=batch_size, max_size=batch_size))
    tokens = codes_to_tokens(codes, codebook_size)
    clips = [tokens[b, : count * n_codebooks] for b, count in enumerate(frame_counts)]
    sequences = [layout.add_special_tokens(clip) for clip in clips]
    input_ids, attention_mask = layout.pad_batch(sequences, padding_side=padding_side)

    assert input_ids.shape == attention_mask.shape == (batch_size, max(frame_counts) * n_codebooks + 2)
    assert attention_mask.sum(1).tolist() == [count * n_codebooks + 2 for count in frame_counts]
    assert torch.all(input_ids[attention_mask == 0] == layout.pad_token_id)
    first_column = attention_mask[:, 0] if padding_side == "right" else attention_mask[:, -1]
    assert first_column.tolist() == [1] * batch_size
    unpadded = layout.unpad_batch(input_ids, attention_mask)
    assert [row.tolist() for row in unpadded] == [row.tolist() for row in sequences]
    assert [layout.strip_special_tokens(row).tolist() for row in unpadded] == [clip.tolist() for clip in clips]


@pytest.mark.parametrize(
    "sequence, message",
    [
        ([8], "a sequence of 1 tokens cannot hold both bos and eos"),
        ([1, 6, 9], r"tokens\[0\] = 1, expected bos_token_id 8"),
        ([8, 1, 6], r"tokens\[2\] = 6, expected eos_token_id 9; use sanitize_generated_tokens"),
        ([8, 1, 6, 8, 3, 4, 9], r"special token 8 \(bos\) at tokens\[3\]"),
        ([8, 1, 6, 10, 9], r"special token 10 \(pad\) at tokens\[3\]"),
        ([8, 1, 6, 3, 9], "not a multiple of n_codebooks=2"),
        ([8, 1, 2, 9], r"token 2 at tokens\[2\] belongs to codebook 0, but that position holds codebook 1"),
        ([8, 11, 9], r"token id 11 at tokens\[1\] is outside the vocabulary \[0, 11\)"),
    ],
)
def test_strip_special_tokens_rejects_malformed_sequences(sequence, message):
    with pytest.raises(ValueError, match=message):
        DacTokenLayout(2, 4).strip_special_tokens(torch.tensor(sequence))


def test_add_special_tokens_rejects_non_code_tokens():
    layout = DacTokenLayout(2, 4)
    with pytest.raises(ValueError, match=r"special token 9 \(eos\) at tokens\[1\]"):
        layout.add_special_tokens(torch.tensor([1, 9]))
    with pytest.raises(ValueError, match="not a multiple of n_codebooks=2"):
        layout.add_special_tokens(torch.tensor([1]))
    with pytest.raises(ValueError, match=r"shape \[length\] \(one sequence\)"):
        layout.add_special_tokens(torch.tensor([[1, 6]]))


def test_pad_batch_and_unpad_batch_checks():
    layout = DacTokenLayout(2, 4)
    with pytest.raises(ValueError, match="at least one sequence"):
        layout.pad_batch([])
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        layout.pad_batch([torch.tensor([8, 9])], padding_side="middle")
    with pytest.raises(ValueError, match=r"token id 12 at sequences\[1\]\[0\] is outside the vocabulary"):
        layout.pad_batch([torch.tensor([8, 9]), torch.tensor([12])])
    with pytest.raises(ValueError, match="attention_mask shape"):
        layout.unpad_batch(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="only 0 and 1"):
        layout.unpad_batch(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[1, 2]]))
    input_ids, attention_mask = layout.pad_batch([np.array([8, 1, 6, 9]), np.array([8, 9])], padding_side="left")
    assert isinstance(input_ids, np.ndarray) and input_ids.dtype == np.int64
    assert input_ids.tolist() == [[8, 1, 6, 9], [10, 10, 8, 9]]
    assert attention_mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]


# Generated output


@given(random_codes(), st.data())
def test_sanitize_recovers_the_complete_frames_of_generated_output(codes_and_size, data):
    codes, codebook_size = codes_and_size
    n_codebooks = codes.shape[1]
    layout = DacTokenLayout(n_codebooks, codebook_size)
    tokens = codes_to_tokens(codes, codebook_size)[0]
    left_pads = data.draw(st.integers(0, 3))
    partial = data.draw(st.integers(0, n_codebooks - 1))
    partial_frame = [k * codebook_size for k in range(partial)]
    after_eos = data.draw(st.lists(st.integers(0, layout.vocab_size - 1), max_size=5))
    generated = (
        [layout.pad_token_id] * left_pads
        + [layout.bos_token_id] * data.draw(st.integers(0, 1))
        + tokens.tolist()
        + partial_frame
        + data.draw(st.sampled_from([[], [layout.eos_token_id] + after_eos]))
    )
    assert torch.equal(layout.sanitize_generated_tokens(torch.tensor(generated, dtype=torch.long)), tokens)


@pytest.mark.parametrize(
    "sequence, message",
    [
        ([10, 8, 1, 6, 8, 3, 9], r"special token 8 \(bos\) at tokens\[4\]"),
        ([8, 1, 6, 10, 3, 4], r"special token 10 \(pad\) at tokens\[3\]"),
        ([8, 1, 6, 3, 10], r"special token 10 \(pad\) at tokens\[4\]"),
        ([8, 1, 6, 3, 3, 9], r"token 3 at tokens\[4\] belongs to codebook 0, but that position holds codebook 1"),
        ([8, 1, -1, 9], r"token id -1 at tokens\[2\] is outside the vocabulary"),
    ],
)
def test_sanitize_still_rejects_what_it_cannot_repair(sequence, message):
    with pytest.raises(ValueError, match=message):
        DacTokenLayout(2, 4).sanitize_generated_tokens(torch.tensor(sequence))


def test_sanitize_known_values():
    layout = DacTokenLayout(2, 4)  # bos 8, eos 9, pad 10
    assert layout.sanitize_generated_tokens(torch.tensor([10, 8, 1, 6, 3, 9, 10, 10])).tolist() == [1, 6]
    assert layout.sanitize_generated_tokens(torch.tensor([8, 1, 6, 3])).tolist() == [1, 6]
    assert layout.sanitize_generated_tokens(torch.tensor([8, 9, 5])).tolist() == []
    assert layout.sanitize_generated_tokens(torch.tensor([10, 10])).tolist() == []
    assert isinstance(layout.sanitize_generated_tokens(np.array([8, 1, 6, 9])), np.ndarray)


# Documentation


def test_docs_page_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOCS_PAGE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOCS_PAGE), "exec"), namespace)
