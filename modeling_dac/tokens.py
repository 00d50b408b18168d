"""Token layouts that let language models read and write DAC codes.

Two layouts are covered, each with an exact inverse:

* **flat**: one vocabulary of ``n_codebooks * codebook_size`` code tokens followed by bos/eos/pad,
  frames interleaved frame-major with ``token = code + k * codebook_size`` (single-stream LMs);
* **delayed**: codebook ``k`` shifted right by ``delays[k]`` frames (MusicGen, Dia), each codebook
  keeping its own vocabulary of ``codebook_size`` codes plus eos/pad/bos.

Malformed streams raise ``ValueError`` naming the problem unless a repair is asked for explicitly
(``tokens_to_codes(..., on_partial_frame="drop")``, ``DacTokenLayout.sanitize_generated_tokens``).
Functions accept torch tensors or numpy integer arrays and return the same kind, always int64.
See docs/tokens.md for drawings of each layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch

from .validation import check_positive_integer, is_integer


__all__ = [
    "DacTokenLayout",
    "apply_delay_pattern",
    "codes_to_tokens",
    "dia_delays",
    "musicgen_delays",
    "revert_delay_pattern",
    "tokens_to_codes",
    "truncate_codebooks",
    "truncate_tokens",
]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

_SPECIAL_NAMES = ("bos", "eos", "pad")  # flat layout: ids n_codebooks * codebook_size + 0, 1, 2


def _as_int64_tensor(array: torch.Tensor | np.ndarray, name: str) -> tuple[torch.Tensor, bool]:
    """Return the array as an int64 tensor and whether it came in as numpy."""
    if isinstance(array, np.ndarray):
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must hold integers, got numpy dtype {array.dtype}")
        return torch.as_tensor(np.ascontiguousarray(array, dtype=np.int64)), True
    if isinstance(array, torch.Tensor):
        if array.is_floating_point() or array.is_complex() or array.dtype == torch.bool:
            raise ValueError(f"{name} must hold integers, got torch dtype {array.dtype}")
        return array.long(), False
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(array).__name__}")


def _like_input(tensor: torch.Tensor, is_numpy: bool):
    return tensor.numpy(force=True) if is_numpy else tensor


def _check_ndim(tensor: torch.Tensor, ndim: int, name: str, shape: str) -> None:
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")


def _first_index(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(mask.nonzero()[0].tolist())


def _format_index(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]"


def _check_whole_frames(length: int, n_codebooks: int) -> None:
    if length % n_codebooks:
        raise ValueError(
            f"token stream length {length} is not a multiple of n_codebooks={n_codebooks}: the last frame is cut "
            f"after {length % n_codebooks} of {n_codebooks} codebooks; pass on_partial_frame='drop' to "
            "tokens_to_codes or use DacTokenLayout.sanitize_generated_tokens to discard it"
        )


def _check_code_tokens(tokens: torch.Tensor, n_codebooks: int, codebook_size: int, offset: int = 0) -> None:
    """Check that every token of ``tokens`` ([..., L], frame-aligned at 0) is a code token in its codebook's slot.

    ``offset`` shifts the positions reported in messages when ``tokens`` is a slice of a longer stream.
    """
    length = tokens.shape[-1]

    def where(index: tuple[int, ...]) -> str:
        return _format_index("tokens", index[:-1] + (index[-1] + offset,))

    n_code_tokens = n_codebooks * codebook_size
    out_of_range = (tokens < 0) | (tokens >= n_code_tokens)
    if out_of_range.any():
        index = _first_index(out_of_range)
        value = int(tokens[index])
        special = value - n_code_tokens
        if 0 <= special < len(_SPECIAL_NAMES):
            raise ValueError(
                f"special token {value} ({_SPECIAL_NAMES[special]}) at {where(index)} where a code token is "
                "expected; strip special tokens first (DacTokenLayout.strip_special_tokens or "
                "sanitize_generated_tokens)"
            )
        raise ValueError(
            f"token id {value} at {where(index)} is outside the code range [0, {n_code_tokens}) of "
            f"{n_codebooks} codebooks x {codebook_size} codes"
        )
    slot = torch.arange(length, device=tokens.device) % n_codebooks
    wrong_codebook = tokens // codebook_size != slot
    if wrong_codebook.any():
        index = _first_index(wrong_codebook)
        value = int(tokens[index])
        position = index[-1]
        raise ValueError(
            f"token {value} at {where(index)} belongs to codebook {value // codebook_size}, but that position "
            f"holds codebook {position % n_codebooks} of frame {position // n_codebooks}"
        )


def codes_to_tokens(codes: ArrayT, codebook_size: int) -> ArrayT:
    """Flatten codes into one token stream per clip, frame-major, with per-codebook offsets.

    Args:
        codes: ``[batch, n_codebooks, frames]`` integer codes in ``[0, codebook_size)``.
        codebook_size: number of codes per codebook (1024 for the released DAC models).

    Returns:
        ``[batch, frames * n_codebooks]`` int64 tokens where
        ``tokens[b, t * n_codebooks + k] == codes[b, k, t] + k * codebook_size``.

    Raises:
        ValueError: a code outside ``[0, codebook_size)``, or a wrong shape.
    """
    check_positive_integer(codebook_size, "codebook_size")
    codes_tensor, is_numpy = _as_int64_tensor(codes, "codes")
    _check_ndim(codes_tensor, 3, "codes", "[batch, n_codebooks, frames]")
    out_of_range = (codes_tensor < 0) | (codes_tensor >= codebook_size)
    if out_of_range.any():
        index = _first_index(out_of_range)
        raise ValueError(
            f"{_format_index('codes', index)} = {int(codes_tensor[index])} is outside "
            f"[0, codebook_size={codebook_size})"
        )
    batch_size, n_codebooks, frames = codes_tensor.shape
    offsets = torch.arange(n_codebooks, device=codes_tensor.device)[None, :, None] * codebook_size
    tokens = (codes_tensor + offsets).transpose(1, 2).reshape(batch_size, frames * n_codebooks)
    return _like_input(tokens, is_numpy)


def tokens_to_codes(
    tokens: ArrayT,
    n_codebooks: int,
    codebook_size: int,
    on_partial_frame: Literal["error", "drop"] = "error",
) -> ArrayT:
    """Invert `codes_to_tokens`: ``[batch, frames * n_codebooks]`` tokens back to ``[batch, n_codebooks, frames]``.

    Every token is checked, including those of a dropped partial frame: it must be a code token (no
    bos/eos/pad) and sit in the slot of its own codebook (``token // codebook_size == position % n_codebooks``).

    Args:
        tokens: ``[batch, length]`` flat code tokens.
        n_codebooks: codebooks per frame.
        codebook_size: codes per codebook.
        on_partial_frame: what to do when ``length`` is not a multiple of ``n_codebooks`` (a stream cut
            mid-frame, as generation stopped by a length limit leaves it): ``"error"`` raises,
            ``"drop"`` discards the incomplete last frame.

    Raises:
        ValueError: a partial frame with ``on_partial_frame="error"``, a special token or an id outside
            the code range, or a token in another codebook's slot. The message names the position.
    """
    check_positive_integer(n_codebooks, "n_codebooks")
    check_positive_integer(codebook_size, "codebook_size")
    if on_partial_frame not in ("error", "drop"):
        raise ValueError(f"on_partial_frame must be 'error' or 'drop', got {on_partial_frame!r}")
    tokens_tensor, is_numpy = _as_int64_tensor(tokens, "tokens")
    _check_ndim(tokens_tensor, 2, "tokens", "[batch, length]")
    _check_code_tokens(tokens_tensor, n_codebooks, codebook_size)
    length = tokens_tensor.shape[1]
    if on_partial_frame == "drop":
        tokens_tensor = tokens_tensor[:, : length - length % n_codebooks]
    else:
        _check_whole_frames(length, n_codebooks)
    batch_size, length = tokens_tensor.shape
    offsets = torch.arange(n_codebooks, device=tokens_tensor.device) * codebook_size
    frames = tokens_tensor.reshape(batch_size, length // n_codebooks, n_codebooks) - offsets
    return _like_input(frames.transpose(1, 2).contiguous(), is_numpy)


def truncate_codebooks(codes: ArrayT, n: int) -> ArrayT:
    """Keep the first (coarsest) ``n`` codebooks of ``[batch, n_codebooks, frames]`` codes.

    Lossy by design (a lower bitrate); decoding the result needs a model that accepts ``n`` codebooks.
    Truncate before `apply_delay_pattern`, whose length depends on the delays kept.
    """
    codes_tensor, is_numpy = _as_int64_tensor(codes, "codes")
    _check_ndim(codes_tensor, 3, "codes", "[batch, n_codebooks, frames]")
    n_codebooks = codes_tensor.shape[1]
    if not is_integer(n) or not 1 <= n <= n_codebooks:
        raise ValueError(f"n must be an integer in [1, {n_codebooks}] (the codebooks present), got {n!r}")
    return _like_input(codes_tensor[:, : int(n)].clone(), is_numpy)


def truncate_tokens(tokens: ArrayT, n_codebooks: int, codebook_size: int, n: int) -> ArrayT:
    """Keep the first ``n`` codebooks of flat tokens: ``[batch, frames * n_codebooks]`` -> ``[batch, frames * n]``.

    Token values are unchanged (codebook ``k < n`` keeps offset ``k * codebook_size``), so the result is the
    flat stream of ``DacTokenLayout(n, codebook_size)``, whose special ids differ: truncate before adding
    special tokens. The input is validated as in `tokens_to_codes`.
    """
    codes = tokens_to_codes(tokens, n_codebooks, codebook_size)
    return codes_to_tokens(truncate_codebooks(codes, n), codebook_size)


def musicgen_delays(n_codebooks: int) -> list[int]:
    """MusicGen's delay pattern: codebook ``k`` is delayed by ``k`` frames (``[0, 1, ..., n_codebooks - 1]``)."""
    check_positive_integer(n_codebooks, "n_codebooks")
    return list(range(n_codebooks))


def dia_delays(n_codebooks: int) -> list[int]:
    """Dia's delay pattern: ``[0, 8, 9, ..., n_codebooks + 6]``; ``[0, 8, 9, ..., 15]`` for DAC's 9 codebooks.

    The first codebook is not delayed; the others follow eight frames later, one more frame each.
    """
    check_positive_integer(n_codebooks, "n_codebooks")
    return [0] + list(range(8, 8 + n_codebooks - 1))


def _check_delays(delays: Sequence[int], n_codebooks: int) -> list[int]:
    if not all(is_integer(delay) for delay in delays):
        raise ValueError(f"delays must be integers, got {list(delays)}")
    delays = [int(delay) for delay in delays]
    if len(delays) != n_codebooks:
        raise ValueError(f"got {len(delays)} delays for {n_codebooks} codebooks; give one delay per codebook")
    if min(delays) < 0:
        raise ValueError(f"delays must be non-negative, got {delays}")
    return delays


def _delay_fill_regions(delays: list[int], frames: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks ``[n_codebooks, frames + max(delays)]`` of the positions before and after each codebook's codes."""
    position = torch.arange(frames + max(delays), device=device)
    start = torch.tensor(delays, device=device)[:, None]
    return position < start, position >= start + frames


def apply_delay_pattern(codes: ArrayT, delays: Sequence[int], pad_id: int, bos_id: int | None = None) -> ArrayT:
    """Shift codebook ``k`` right by ``delays[k]`` frames so an LM predicts coarse codes before fine ones.

    Args:
        codes: ``[batch, n_codebooks, frames]`` codes.
        delays: one non-negative delay per codebook, e.g. `musicgen_delays` or `dia_delays`.
        pad_id: fills the empty positions (MusicGen uses ``codebook_size``; Dia ``codebook_size + 1``).
        bos_id: if given, fills the empty positions *before* each codebook's codes instead of ``pad_id``,
            as Dia does (``codebook_size + 2``).

    Returns:
        ``[batch, n_codebooks, frames + max(delays)]`` int64 with
        ``delayed[:, k, delays[k] + t] == codes[:, k, t]``.

    Raises:
        ValueError: ``codes`` contain ``pad_id`` or ``bos_id`` (the fill would be ambiguous), or the delays
            do not match the codebooks.
    """
    codes_tensor, is_numpy = _as_int64_tensor(codes, "codes")
    _check_ndim(codes_tensor, 3, "codes", "[batch, n_codebooks, frames]")
    batch_size, n_codebooks, frames = codes_tensor.shape
    delays = _check_delays(delays, n_codebooks)
    leading_fill = pad_id if bos_id is None else bos_id
    for name, fill_id in (("pad_id", pad_id), ("bos_id", leading_fill)):
        if (codes_tensor == fill_id).any():
            raise ValueError(f"codes contain {name}={fill_id}; choose a fill id outside the code range")
    leading, _ = _delay_fill_regions(delays, frames, codes_tensor.device)
    delayed = torch.where(leading, leading_fill, pad_id).expand(batch_size, -1, -1).clone()
    for k, delay in enumerate(delays):
        delayed[:, k, delay : delay + frames] = codes_tensor[:, k]
    return _like_input(delayed, is_numpy)


def revert_delay_pattern(
    delayed: ArrayT, delays: Sequence[int], pad_id: int | None = None, bos_id: int | None = None
) -> ArrayT:
    """Invert `apply_delay_pattern`: ``[batch, K, frames + max(delays)]`` -> ``[batch, K, frames]``.

    Args:
        delayed: the delayed codes.
        delays: the delays used by `apply_delay_pattern`.
        pad_id, bos_id: if ``pad_id`` is given, the stream is checked: every fill position must hold the
            fill id `apply_delay_pattern` put there (``bos_id`` before the codes when given, else
            ``pad_id``), and no code position may hold a fill id. Without ``pad_id`` nothing is checked.

    Raises:
        ValueError: the delayed stream is shorter than ``max(delays)``, or (when checking) the first position that breaks the layout.
    """
    delayed_tensor, is_numpy = _as_int64_tensor(delayed, "delayed")
    _check_ndim(delayed_tensor, 3, "delayed", "[batch, n_codebooks, length]")
    _, n_codebooks, length = delayed_tensor.shape
    delays = _check_delays(delays, n_codebooks)
    frames = length - max(delays)
    if frames < 0:
        raise ValueError(f"delayed length {length} is shorter than the largest delay {max(delays)}")
    if pad_id is not None:
        leading_fill = pad_id if bos_id is None else bos_id
        leading, trailing = _delay_fill_regions(delays, frames, delayed_tensor.device)
        is_fill = (delayed_tensor == pad_id) | (delayed_tensor == leading_fill)
        broken = (
            (leading & (delayed_tensor != leading_fill))
            | (trailing & (delayed_tensor != pad_id))
            | (~leading & ~trailing & is_fill)
        )
        if broken.any():
            b, k, position = _first_index(broken)
            if leading[k, position]:
                expected = f"the fill id {leading_fill}"
            elif trailing[k, position]:
                expected = f"pad_id {pad_id}"
            else:
                expected = "a code, not a fill id"
            raise ValueError(
                f"{_format_index('delayed', (b, k, position))} = {int(delayed_tensor[b, k, position])}, but codebook "
                f"{k} (delay {delays[k]}, {frames} frames) should hold {expected} there"
            )
    codes = torch.stack([delayed_tensor[:, k, delay : delay + frames] for k, delay in enumerate(delays)], dim=1)
    return _like_input(codes, is_numpy)


@dataclass(frozen=True)
class DacTokenLayout:
    """Special-token ids, and the sequence operations that use them, for LMs over DAC codes.

    Flat vocabulary (one stream, see `codes_to_tokens`): ids ``[0, n_codebooks * codebook_size)`` are codes,
    then ``bos_token_id``, ``eos_token_id``, ``pad_token_id`` (``+0, +1, +2``); ``vocab_size`` counts all.
    A sequence is ``[bos, frame 0, ..., frame T-1, eos]``, batches are padded with ``pad_token_id``.

    Per-codebook vocabularies (delayed layout, as in Dia): ids ``[0, codebook_size)`` are codes, then
    ``codebook_eos_token_id``, ``codebook_pad_token_id``, ``codebook_bos_token_id`` (``+0, +1, +2``:
    1024, 1025, 1026 for DAC, Dia's ids), for use with `apply_delay_pattern`.
    """

    n_codebooks: int
    codebook_size: int

    def __post_init__(self):
        check_positive_integer(self.n_codebooks, "n_codebooks")
        check_positive_integer(self.codebook_size, "codebook_size")

    @property
    def bos_token_id(self) -> int:
        return self.n_codebooks * self.codebook_size

    @property
    def eos_token_id(self) -> int:
        return self.n_codebooks * self.codebook_size + 1

    @property
    def pad_token_id(self) -> int:
        return self.n_codebooks * self.codebook_size + 2

    @property
    def vocab_size(self) -> int:
        return self.n_codebooks * self.codebook_size + 3

    @property
    def codebook_eos_token_id(self) -> int:
        return self.codebook_size

    @property
    def codebook_pad_token_id(self) -> int:
        return self.codebook_size + 1

    @property
    def codebook_bos_token_id(self) -> int:
        return self.codebook_size + 2

    @property
    def codebook_vocab_size(self) -> int:
        return self.codebook_size + 3

    def _sequence(self, tokens: torch.Tensor | np.ndarray, name: str = "tokens") -> tuple[torch.Tensor, bool]:
        """A 1-D int64 sequence whose ids are all in the vocabulary."""
        sequence, is_numpy = _as_int64_tensor(tokens, name)
        _check_ndim(sequence, 1, name, "[length] (one sequence)")
        outside = (sequence < 0) | (sequence >= self.vocab_size)
        if outside.any():
            index = _first_index(outside)
            raise ValueError(
                f"token id {int(sequence[index])} at {_format_index(name, index)} is outside the vocabulary "
                f"[0, {self.vocab_size}) of {self}"
            )
        return sequence, is_numpy

    def add_special_tokens(self, tokens: ArrayT) -> ArrayT:
        """``[length]`` flat code tokens (one row of `codes_to_tokens`) -> ``[bos, *tokens, eos]``.

        Raises:
            ValueError: the tokens are not whole frames of code tokens (see `tokens_to_codes`).
        """
        sequence, is_numpy = self._sequence(tokens)
        _check_code_tokens(sequence, self.n_codebooks, self.codebook_size)
        _check_whole_frames(sequence.numel(), self.n_codebooks)
        bos, eos = sequence.new_tensor([self.bos_token_id]), sequence.new_tensor([self.eos_token_id])
        return _like_input(torch.cat([bos, sequence, eos]), is_numpy)

    def strip_special_tokens(self, tokens: ArrayT) -> ArrayT:
        """Strict inverse of `add_special_tokens`: ``[bos, *codes, eos]`` -> ``codes``.

        Raises:
            ValueError: no bos first, no eos last, a special token in between, a partial frame, or a
                token in another codebook's slot. Use `sanitize_generated_tokens` for raw LM output.
        """
        sequence, is_numpy = self._sequence(tokens)
        if sequence.numel() < 2:
            raise ValueError(f"a sequence of {sequence.numel()} tokens cannot hold both bos and eos")
        if sequence[0] != self.bos_token_id:
            raise ValueError(f"tokens[0] = {int(sequence[0])}, expected bos_token_id {self.bos_token_id}")
        if sequence[-1] != self.eos_token_id:
            raise ValueError(
                f"tokens[{sequence.numel() - 1}] = {int(sequence[-1])}, expected eos_token_id {self.eos_token_id}; "
                "use sanitize_generated_tokens for generated output that may lack eos"
            )
        body = sequence[1:-1]
        _check_code_tokens(body, self.n_codebooks, self.codebook_size, offset=1)
        _check_whole_frames(body.numel(), self.n_codebooks)
        return _like_input(body.clone(), is_numpy)

    def sanitize_generated_tokens(self, tokens: ArrayT) -> ArrayT:
        """Repair one generated flat sequence into whole frames of code tokens.

        In order: drop leading pad tokens (left padding), drop one leading bos, cut at the first eos
        (dropping it and everything after), check what is left, then drop an incomplete last frame.
        A missing eos or a partial last frame is therefore accepted; anything else still raises.

        Raises:
            ValueError: an id outside the vocabulary, a bos or pad token left before the first eos, or a
                token in another codebook's slot (partial last frame included); the message gives its
                position in ``tokens``.
        """
        sequence, is_numpy = self._sequence(tokens)
        length = sequence.numel()
        not_pad = (sequence != self.pad_token_id).nonzero()
        start = int(not_pad[0]) if not_pad.numel() else length
        if start < length and sequence[start] == self.bos_token_id:
            start += 1
        eos_positions = (sequence[start:] == self.eos_token_id).nonzero()
        end = start + int(eos_positions[0]) if eos_positions.numel() else length
        body = sequence[start:end]
        _check_code_tokens(body, self.n_codebooks, self.codebook_size, offset=start)
        body = body[: body.numel() - body.numel() % self.n_codebooks]
        return _like_input(body.clone(), is_numpy)

    def pad_batch(
        self, sequences: Sequence[ArrayT], padding_side: Literal["right", "left"] = "right"
    ) -> tuple[ArrayT, ArrayT]:
        """Pad 1-D sequences to a common length with ``pad_token_id``.

        Returns:
            ``(input_ids, attention_mask)``, both ``[batch, max_length]`` int64; the mask is 1 on real tokens.
            Numpy arrays if the first sequence is one, else tensors.
        """
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if len(sequences) == 0:
            raise ValueError("pad_batch needs at least one sequence")
        rows = [self._sequence(sequence, f"sequences[{i}]")[0] for i, sequence in enumerate(sequences)]
        is_numpy = isinstance(sequences[0], np.ndarray)
        max_length = max(row.numel() for row in rows)
        input_ids = rows[0].new_full((len(rows), max_length), self.pad_token_id)
        attention_mask = rows[0].new_zeros((len(rows), max_length))
        for i, row in enumerate(rows):
            span = slice(0, row.numel()) if padding_side == "right" else slice(max_length - row.numel(), max_length)
            input_ids[i, span] = row
            attention_mask[i, span] = 1
        return _like_input(input_ids, is_numpy), _like_input(attention_mask, is_numpy)

    def unpad_batch(self, input_ids: ArrayT, attention_mask: ArrayT) -> list[ArrayT]:
        """Inverse of `pad_batch`: the tokens of each row where ``attention_mask`` is 1."""
        ids, is_numpy = _as_int64_tensor(input_ids, "input_ids")
        mask, _ = _as_int64_tensor(attention_mask, "attention_mask")
        _check_ndim(ids, 2, "input_ids", "[batch, length]")
        if mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(mask.shape)} differs from input_ids shape {tuple(ids.shape)}"
            )
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError("attention_mask must hold only 0 and 1")
        return [_like_input(row[row_mask.bool()], is_numpy) for row, row_mask in zip(ids, mask)]
