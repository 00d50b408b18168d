"""Audio tokens inside a text tokenizer, so one causal LM reads and writes mixed text and audio.

`DacTokenizerBridge` adds one token per (codebook, code) pair, ``<|audio_{k}_{code}|>``, and the specials
``<|audio_bos|>``, ``<|audio_eos|>``, ``<|audio_pad|>`` to a `transformers` tokenizer, in the order of the flat
layout of `modeling_dac.tokens` (``token = code + k * codebook_size``, frames interleaved, then bos, eos,
pad), and maps codes to tokenizer ids and back through a lookup table. An audio clip inside a sequence is
``<|audio_bos|>``, its frames, ``<|audio_eos|>``.

Generated ids go back to codes with `DacTokenizerBridge.extract_audio_codes`, which accepts what sampling
produces (no eos, a cut last frame, text tokens inside audio) with documented rules, and to audio with
`decode_generated_audio`. `DacAudioLogitsProcessor` constrains `generate` so that audio segments are always
well-formed. See docs/tokens.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from transformers import AddedToken, LogitsProcessor

from .tokens import DacTokenLayout, codes_to_tokens, tokens_to_codes

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modeling_dac import DacModel

__all__ = [
    "AUDIO_BOS_TOKEN",
    "AUDIO_EOS_TOKEN",
    "AUDIO_PAD_TOKEN",
    "DacAudioLogitsProcessor",
    "DacTokenizerBridge",
    "audio_token_name",
    "codes_to_audio",
    "decode_generated_audio",
]

AUDIO_BOS_TOKEN = "<|audio_bos|>"
AUDIO_EOS_TOKEN = "<|audio_eos|>"
AUDIO_PAD_TOKEN = "<|audio_pad|>"


def audio_token_name(codebook: int, code: int) -> str:
    """The tokenizer string of code ``code`` of codebook ``codebook``: ``<|audio_{codebook}_{code}|>``."""
    return f"<|audio_{codebook}_{code}|>"


def _layout_token_names(layout: DacTokenLayout) -> list[str]:
    """Tokenizer strings of the flat layout's ids ``0 .. layout.vocab_size - 1``, in order."""
    codes = [audio_token_name(k, code) for k in range(layout.n_codebooks) for code in range(layout.codebook_size)]
    return codes + [AUDIO_BOS_TOKEN, AUDIO_EOS_TOKEN, AUDIO_PAD_TOKEN]


def _as_id_array(ids, name: str = "ids") -> np.ndarray:
    """One sequence of token ids (list, numpy or torch) as a 1-D int64 numpy array."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    array = np.asarray(ids)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must be one sequence of integer token ids, got shape {array.shape} ({array.dtype})")
    return array.astype(np.int64)


class DacTokenizerBridge:
    """The map between DAC codes and the ids of a `transformers` tokenizer that holds the audio tokens.

    Build it with `add_to_tokenizer` (adds the missing audio tokens, then maps them) or `from_tokenizer`
    (the tokens must be there already, e.g. in a tokenizer saved after `add_to_tokenizer`). After adding
    tokens, grow the LM's embeddings: ``model.resize_token_embeddings(len(tokenizer))``.

    The audio tokens are added as special tokens (``normalized=False``), so text normalisation never alters
    them and ``tokenizer.decode(ids, skip_special_tokens=True)`` returns the text alone. Work with ids, not
    decoded strings: some tokenizers insert spaces between added tokens when decoding.

    Attributes:
        tokenizer: the tokenizer.
        layout: the flat `DacTokenLayout` whose ids the audio tokens follow.
        layout_to_tokenizer: ``[layout.vocab_size]`` int64, the tokenizer id of each flat-layout id.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, layout: DacTokenLayout, layout_to_tokenizer: np.ndarray):
        self.tokenizer = tokenizer
        self.layout = layout
        self.layout_to_tokenizer = layout_to_tokenizer
        self._tokenizer_to_layout = np.full(int(layout_to_tokenizer.max()) + 1, -1, dtype=np.int64)
        self._tokenizer_to_layout[layout_to_tokenizer] = np.arange(layout.vocab_size)

    @classmethod
    def add_to_tokenizer(
        cls, tokenizer: PreTrainedTokenizerBase, n_codebooks: int, codebook_size: int
    ) -> DacTokenizerBridge:
        """Add the audio tokens the tokenizer lacks (none on a second call) and return the bridge.

        The ``n_codebooks * codebook_size + 3`` tokens are appended in flat-layout order, so on a tokenizer
        that had none of them their ids are contiguous: ``tokenizer id = layout id + len(tokenizer before)``.
        """
        layout = DacTokenLayout(n_codebooks, codebook_size)
        vocabulary = tokenizer.get_vocab()
        missing = [name for name in _layout_token_names(layout) if name not in vocabulary]
        if missing:
            tokenizer.add_tokens([AddedToken(name, normalized=False, special=True) for name in missing])
        return cls.from_tokenizer(tokenizer, n_codebooks, codebook_size)

    @classmethod
    def from_tokenizer(
        cls, tokenizer: PreTrainedTokenizerBase, n_codebooks: int, codebook_size: int
    ) -> DacTokenizerBridge:
        """The bridge for a tokenizer that already holds the audio tokens.

        Raises:
            ValueError: a token is missing (the message names it and how many are missing).
        """
        layout = DacTokenLayout(n_codebooks, codebook_size)
        vocabulary = tokenizer.get_vocab()
        names = _layout_token_names(layout)
        missing = [name for name in names if name not in vocabulary]
        if missing:
            raise ValueError(
                f"the tokenizer lacks {len(missing)} of the {len(names)} audio tokens for {n_codebooks} codebooks "
                f"x {codebook_size} codes (first missing: {missing[0]!r}); use DacTokenizerBridge.add_to_tokenizer"
            )
        return cls(tokenizer, layout, np.array([vocabulary[name] for name in names], dtype=np.int64))

    @property
    def audio_bos_token_id(self) -> int:
        return int(self.layout_to_tokenizer[self.layout.bos_token_id])

    @property
    def audio_eos_token_id(self) -> int:
        return int(self.layout_to_tokenizer[self.layout.eos_token_id])

    @property
    def audio_pad_token_id(self) -> int:
        return int(self.layout_to_tokenizer[self.layout.pad_token_id])

    def to_layout_ids(self, ids) -> np.ndarray:
        """Flat-layout ids of tokenizer ``ids`` (one sequence); -1 where an id is not an audio token (text)."""
        array = _as_id_array(ids)
        layout_ids = np.full(array.shape, -1, dtype=np.int64)
        known = (array >= 0) & (array < self._tokenizer_to_layout.size)
        layout_ids[known] = self._tokenizer_to_layout[array[known]]
        return layout_ids

    def to_tokenizer_ids(self, layout_ids) -> np.ndarray:
        """Tokenizer ids of flat-layout ids (any shape, e.g. the output of `codes_to_tokens`)."""
        array = np.asarray(layout_ids.detach().cpu() if isinstance(layout_ids, torch.Tensor) else layout_ids)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"flat-layout ids must be integers, got {array.dtype}")
        if array.size and ((array < 0) | (array >= self.layout.vocab_size)).any():
            raise ValueError(
                f"flat-layout ids must lie in [0, {self.layout.vocab_size}), "
                f"got values in [{array.min()}, {array.max()}]"
            )
        return self.layout_to_tokenizer[array.astype(np.int64)]

    def codes_to_ids(self, codes) -> list[int]:
        """One clip's codes ``[n_codebooks, frames]`` -> tokenizer ids ``[audio_bos, frame 0, ..., audio_eos]``."""
        codes = torch.as_tensor(codes.detach().cpu() if isinstance(codes, torch.Tensor) else np.asarray(codes))
        if codes.ndim != 2 or codes.shape[0] != self.layout.n_codebooks:
            raise ValueError(
                f"codes must have shape [n_codebooks={self.layout.n_codebooks}, frames], got {tuple(codes.shape)}"
            )
        tokens = codes_to_tokens(codes[None], self.layout.codebook_size)[0]  # checks that the codes are integers
        return self.to_tokenizer_ids(self.layout.add_special_tokens(tokens)).tolist()

    def ids_to_codes(self, ids) -> torch.LongTensor:
        """Strict inverse of `codes_to_ids`: ``[audio_bos, frames..., audio_eos]`` -> codes ``[n_codebooks, frames]``.

        Raises:
            ValueError: a text token, a missing bos or eos, a partial frame, or a token in the wrong codebook's
                slot. Use `extract_audio_codes` for generated sequences.
        """
        layout_ids = self.to_layout_ids(ids)
        if (layout_ids < 0).any():
            position = int(np.flatnonzero(layout_ids < 0)[0])
            raise ValueError(f"ids[{position}] = {int(_as_id_array(ids)[position])} is not an audio token")
        tokens = self.layout.strip_special_tokens(torch.from_numpy(layout_ids))
        return tokens_to_codes(tokens[None], self.layout.n_codebooks, self.layout.codebook_size)[0]

    def encode_interleaved(self, pieces: Sequence[str | torch.Tensor | np.ndarray]) -> list[int]:
        """Ids of a mixed sequence: each ``str`` piece through the tokenizer (without its special tokens), each
        codes piece ``[n_codebooks, frames]`` as ``[audio_bos, ..., audio_eos]``, concatenated in order. Add the
        tokenizer's own bos/eos yourself where the LM expects them."""
        ids = []
        for piece in pieces:
            if isinstance(piece, str):
                ids.extend(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
            else:
                ids.extend(self.codes_to_ids(piece))
        return ids

    def extract_audio_codes(
        self,
        ids,
        starts_in_audio: bool = False,
        on_text: Literal["drop", "end", "error"] = "drop",
    ) -> list[torch.LongTensor]:
        """Codes of every audio segment in one generated sequence of tokenizer ids.

        Rules, in order:

        * A segment opens at ``<|audio_bos|>`` (or at position 0 when ``starts_in_audio``, for generated ids
          whose prompt ended inside a segment) and closes at ``<|audio_eos|>``, at the next ``<|audio_bos|>``
          or at the end of ``ids``: a missing eos is accepted.
        * Outside segments everything is text and is ignored, audio tokens included.
        * Inside a segment, a token that is not a code token (text, or ``<|audio_pad|>``) is dropped
          (``on_text="drop"``), closes the segment (``"end"``), or raises (``"error"``).
        * The segment's code tokens are then checked and repaired as
          `DacTokenLayout.sanitize_generated_tokens` does: an incomplete last frame is dropped; a token in
          another codebook's slot raises (`DacAudioLogitsProcessor` prevents it during generation).

        Returns:
            One int64 ``[n_codebooks, frames]`` tensor per segment, in order (``frames`` may be 0).
        """
        if on_text not in ("drop", "end", "error"):
            raise ValueError(f"on_text must be 'drop', 'end' or 'error', got {on_text!r}")
        layout = self.layout
        layout_ids = self.to_layout_ids(ids)
        n_code_tokens = layout.n_codebooks * layout.codebook_size
        segments, current, start = [], [] if starts_in_audio else None, 0
        for position, layout_id in enumerate(layout_ids.tolist()):
            if layout_id == layout.bos_token_id:
                if current is not None:
                    segments.append((start, current))
                current, start = [], position + 1
            elif current is None:
                continue
            elif layout_id == layout.eos_token_id:
                segments.append((start, current))
                current = None
            elif 0 <= layout_id < n_code_tokens:
                current.append(layout_id)
            elif on_text == "end":
                segments.append((start, current))
                current = None
            elif on_text == "error":
                raise ValueError(
                    f"ids[{position}] = {int(_as_id_array(ids)[position])} is not a code token but lies inside the "
                    f"audio segment opened at ids[{start}]; pass on_text='drop' or 'end' to accept it"
                )
        if current is not None:
            segments.append((start, current))

        codes = []
        for start, tokens in segments:
            try:
                clean = layout.sanitize_generated_tokens(torch.tensor(tokens, dtype=torch.long))
            except ValueError as error:
                raise ValueError(f"audio segment starting at ids[{start}]: {error}") from error
            codes.append(tokens_to_codes(clean[None], layout.n_codebooks, layout.codebook_size)[0])
        return codes


class DacAudioLogitsProcessor(LogitsProcessor):
    """Constrain `generate` so that every audio segment it writes is well-formed.

    Inside a segment (after an ``<|audio_bos|>`` not yet closed), the token ``n`` positions after the bos may
    only be a code of codebook ``n % n_codebooks``, or ``<|audio_eos|>`` when ``n`` is a frame boundary. Outside
    segments, code tokens, ``<|audio_eos|>`` and ``<|audio_pad|>`` are forbidden; text and ``<|audio_bos|>`` are
    free. Only which tokens are allowed changes, not their relative probabilities.

    Example: ``model.generate(input_ids, logits_processor=LogitsProcessorList([DacAudioLogitsProcessor(bridge)]))``.
    """

    def __init__(self, bridge: DacTokenizerBridge):
        self.bridge = bridge
        self._allowed_by_vocab_size: dict[int, torch.Tensor] = {}

    def _allowed(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        """``[n_codebooks + 1, vocab_size]`` bool: row k allows codebook k's codes (and eos when k == 0), the last
        row what is allowed outside segments."""
        if vocab_size not in self._allowed_by_vocab_size:
            bridge, layout = self.bridge, self.bridge.layout
            if int(bridge.layout_to_tokenizer.max()) >= vocab_size:
                raise ValueError(
                    f"the LM's vocabulary ({vocab_size}) is smaller than the tokenizer's audio token ids; call "
                    "model.resize_token_embeddings(len(tokenizer))"
                )
            allowed = torch.zeros(layout.n_codebooks + 1, vocab_size, dtype=torch.bool)
            code_ids = torch.from_numpy(bridge.layout_to_tokenizer[: layout.n_codebooks * layout.codebook_size])
            for k, ids in enumerate(code_ids.view(layout.n_codebooks, layout.codebook_size)):
                allowed[k, ids] = True
            allowed[0, bridge.audio_eos_token_id] = True
            allowed[-1] = True
            allowed[-1, code_ids] = False
            allowed[-1, [bridge.audio_eos_token_id, bridge.audio_pad_token_id]] = False
            self._allowed_by_vocab_size[vocab_size] = allowed
        return self._allowed_by_vocab_size[vocab_size].to(device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bridge = self.bridge
        allowed = self._allowed(scores.shape[-1], scores.device)
        length = input_ids.shape[-1]
        positions = torch.arange(length, device=input_ids.device)
        last_bos = torch.where(input_ids == bridge.audio_bos_token_id, positions, -1).amax(-1)
        last_eos = torch.where(input_ids == bridge.audio_eos_token_id, positions, -1).amax(-1)
        inside = last_bos > last_eos
        row = torch.where(inside, (length - 1 - last_bos) % bridge.layout.n_codebooks, bridge.layout.n_codebooks)
        return scores.masked_fill(~allowed[row], -float("inf"))


def codes_to_audio(model: DacModel, codes: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Decode each ``[n_codebooks or fewer, frames]`` codes tensor to float32 audio of ``frames * hop_length``
    samples at ``model.config.sampling_rate`` (an empty array for 0 frames)."""
    audio = []
    with torch.inference_mode():
        for clip_codes in codes:
            if clip_codes.shape[-1] == 0:
                audio.append(np.zeros(0, dtype=np.float32))
                continue
            clip_codes = clip_codes.to(model.device).long()[None]
            decoded = model.decode(audio_codes=clip_codes, return_dict=True).audio_values
            audio.append(decoded[0, 0].float().cpu().numpy())
    return audio


def decode_generated_audio(
    model: DacModel,
    bridge: DacTokenizerBridge,
    ids,
    starts_in_audio: bool = False,
    on_text: Literal["drop", "end", "error"] = "drop",
) -> list[np.ndarray]:
    """The audio of every segment of one generated sequence: `DacTokenizerBridge.extract_audio_codes` (whose
    rules apply), then `codes_to_audio`."""
    return codes_to_audio(model, bridge.extract_audio_codes(ids, starts_in_audio=starts_in_audio, on_text=on_text))
