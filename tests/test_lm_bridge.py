"""The text-tokenizer bridge: audio tokens in a transformers tokenizer, code <-> id maps, mixed sequences,
tolerant extraction of generated audio, constrained generation, and decoding to audio."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, PreTrainedTokenizerFast

from modeling_dac import DacConfig, DacModel
from modeling_dac.lm_bridge import (
    AUDIO_BOS_TOKEN,
    AUDIO_EOS_TOKEN,
    AUDIO_PAD_TOKEN,
    DacAudioLogitsProcessor,
    DacTokenizerBridge,
    audio_token_name,
    codes_to_audio,
    decode_generated_audio,
)

K, V = 3, 8  # a small layout: 24 code tokens + 3 specials
WORDS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "say", "hello", "world"]


def make_tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]"
    )


@pytest.fixture
def bridge():
    return DacTokenizerBridge.add_to_tokenizer(make_tokenizer(), K, V)


def code_id(bridge, k, code):
    return bridge.tokenizer.convert_tokens_to_ids(audio_token_name(k, code))


# Adding tokens


def test_added_tokens_follow_the_flat_layout(bridge):
    tokenizer = bridge.tokenizer
    assert len(tokenizer) == len(WORDS) + K * V + 3
    # Appended in flat-layout order: tokenizer id = layout id + len(WORDS).
    np.testing.assert_array_equal(bridge.layout_to_tokenizer, np.arange(K * V + 3) + len(WORDS))
    assert tokenizer.convert_ids_to_tokens(len(WORDS) + 1 * V + 5) == "<|audio_1_5|>"
    assert (bridge.audio_bos_token_id, bridge.audio_eos_token_id, bridge.audio_pad_token_id) == (31, 32, 33)
    assert tokenizer.convert_ids_to_tokens([31, 32, 33]) == [AUDIO_BOS_TOKEN, AUDIO_EOS_TOKEN, AUDIO_PAD_TOKEN]


def test_adding_twice_adds_nothing_and_a_saved_tokenizer_maps_the_same(bridge, tmp_path):
    again = DacTokenizerBridge.add_to_tokenizer(bridge.tokenizer, K, V)
    assert len(bridge.tokenizer) == len(WORDS) + K * V + 3
    np.testing.assert_array_equal(again.layout_to_tokenizer, bridge.layout_to_tokenizer)
    bridge.tokenizer.save_pretrained(tmp_path)
    reloaded = DacTokenizerBridge.from_tokenizer(PreTrainedTokenizerFast.from_pretrained(tmp_path), K, V)
    np.testing.assert_array_equal(reloaded.layout_to_tokenizer, bridge.layout_to_tokenizer)


def test_from_tokenizer_without_the_tokens_raises():
    with pytest.raises(ValueError, match=r"lacks 27 of the 27 audio tokens .*'<\|audio_0_0\|>'"):
        DacTokenizerBridge.from_tokenizer(make_tokenizer(), K, V)


def test_text_with_audio_token_strings_maps_to_their_ids(bridge):
    ids = bridge.tokenizer("say <|audio_bos|><|audio_0_3|> <|audio_1_7|><|audio_eos|> hello")["input_ids"]
    assert ids == [4, 31, 7 + 3, 7 + 8 + 7, 32, 5]
    assert bridge.tokenizer.decode(ids, skip_special_tokens=True) == "say hello"


# Codes <-> ids


def test_codes_to_ids_known_values_and_inverse(bridge):
    codes = torch.tensor([[1, 2], [3, 4], [5, 6]])  # [K=3, frames=2]
    ids = bridge.codes_to_ids(codes)
    # bos, frame 0: 1, 3 + 8, 5 + 16, frame 1: 2, 4 + 8, 6 + 16, eos; all shifted by len(WORDS) = 7.
    assert ids == [31, 8, 18, 28, 9, 19, 29, 32]
    assert torch.equal(bridge.ids_to_codes(ids), codes)
    assert torch.equal(bridge.ids_to_codes(np.array(ids)), codes)


def test_round_trip_random_codes(bridge):
    generator = torch.Generator().manual_seed(0)
    for frames in (0, 1, 7):
        codes = torch.randint(0, V, (K, frames), generator=generator)
        assert torch.equal(bridge.ids_to_codes(bridge.codes_to_ids(codes)), codes)


def test_strict_inverse_rejects_malformed_ids(bridge):
    ids = bridge.codes_to_ids(torch.zeros(K, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"ids\[2\] = 4 is not an audio token"):
        bridge.ids_to_codes(ids[:2] + [4] + ids[2:])
    with pytest.raises(ValueError, match="expected eos_token_id"):
        bridge.ids_to_codes(ids[:-1])
    with pytest.raises(ValueError, match=r"shape \[n_codebooks=3, frames\]"):
        bridge.codes_to_ids(torch.zeros(2, 4, dtype=torch.long))
    # Float codes and ids are refused, never rounded to other tokens.
    with pytest.raises(ValueError, match="codes must hold integers"):
        bridge.codes_to_ids(np.array([[1.9, 2.5], [3.7, 0.2], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="flat-layout ids must be integers"):
        bridge.to_tokenizer_ids(np.array([1.5, 2.9]))
    assert bridge.to_tokenizer_ids(np.array([], dtype=np.int64)).size == 0


def test_encode_interleaved(bridge):
    codes = torch.tensor([[1], [2], [3]])
    ids = bridge.encode_interleaved(["say hello", codes, "world"])
    assert ids == [4, 5, 31, 8, 17, 26, 32, 6]


# Extracting generated audio


def frame(bridge, a, b, c):
    return [code_id(bridge, 0, a), code_id(bridge, 1, b), code_id(bridge, 2, c)]


def codes_list(segments):
    return [segment.tolist() for segment in segments]


def test_extract_complete_segments_between_text(bridge):
    bos, eos = bridge.audio_bos_token_id, bridge.audio_eos_token_id
    ids = [2, 4, bos, *frame(bridge, 1, 2, 3), eos, 5, bos, *frame(bridge, 4, 5, 6), *frame(bridge, 7, 0, 1), eos, 3]
    assert codes_list(bridge.extract_audio_codes(ids)) == [[[1], [2], [3]], [[4, 7], [5, 0], [6, 1]]]


def test_extract_tolerates_missing_eos_and_a_partial_frame(bridge):
    bos = bridge.audio_bos_token_id
    ids = [4, bos, *frame(bridge, 1, 2, 3), *frame(bridge, 4, 5, 6)[:2]]
    assert codes_list(bridge.extract_audio_codes(ids)) == [[[1], [2], [3]]]
    # A new bos closes an unterminated segment.
    ids = [bos, *frame(bridge, 1, 2, 3), bos, *frame(bridge, 4, 5, 6)]
    assert codes_list(bridge.extract_audio_codes(ids)) == [[[1], [2], [3]], [[4], [5], [6]]]
    # An empty segment gives zero frames.
    assert [segment.shape for segment in bridge.extract_audio_codes([bos, bridge.audio_eos_token_id])] == [(K, 0)]


def test_extract_text_inside_audio_policies(bridge):
    bos, eos = bridge.audio_bos_token_id, bridge.audio_eos_token_id
    first, second = frame(bridge, 1, 2, 3), frame(bridge, 4, 5, 6)
    ids = [bos, *first[:2], 5, first[2], *second, eos]
    assert codes_list(bridge.extract_audio_codes(ids)) == [[[1, 4], [2, 5], [3, 6]]]
    assert codes_list(bridge.extract_audio_codes(ids, on_text="end")) == [[[], [], []]]  # cut before a whole frame
    message = r"ids\[3\] = 5 is not a code token but lies inside the audio segment opened at ids\[1\]"
    with pytest.raises(ValueError, match=message):
        bridge.extract_audio_codes(ids, on_text="error")
    # The tokenizer's own eos or audio pad inside a segment are text for these rules.
    ids = [bos, *first, bridge.tokenizer.eos_token_id, bridge.audio_pad_token_id]
    assert codes_list(bridge.extract_audio_codes(ids)) == [[[1], [2], [3]]]


def test_extract_ignores_audio_outside_segments_unless_starting_inside(bridge):
    eos = bridge.audio_eos_token_id
    ids = [*frame(bridge, 1, 2, 3), eos, 5, *frame(bridge, 4, 5, 6)]
    assert bridge.extract_audio_codes(ids) == []
    assert codes_list(bridge.extract_audio_codes(ids, starts_in_audio=True)) == [[[1], [2], [3]]]


def test_extract_rejects_a_token_in_the_wrong_codebook_slot(bridge):
    bos = bridge.audio_bos_token_id
    ids = [4, bos, code_id(bridge, 0, 1), code_id(bridge, 2, 1), code_id(bridge, 1, 1)]
    with pytest.raises(ValueError, match=r"segment starting at ids\[2\]: token .* belongs to codebook 2"):
        bridge.extract_audio_codes(ids)
    with pytest.raises(ValueError, match="on_text must be"):
        bridge.extract_audio_codes(ids, on_text="skip")


# Constrained generation


def test_logits_processor_allows_exactly_the_next_codebook(bridge):
    processor = DacAudioLogitsProcessor(bridge)
    vocab = len(bridge.tokenizer) + 5  # LMs often pad their vocabulary
    bos, eos = bridge.audio_bos_token_id, bridge.audio_eos_token_id
    prefixes = [
        [2, 4],  # text: no code tokens
        [2, bos],  # codebook 0 or eos
        [2, bos, *frame(bridge, 1, 2, 3)[:1]],  # codebook 1
        [2, bos, *frame(bridge, 1, 2, 3)[:2]],  # codebook 2
        [2, bos, *frame(bridge, 1, 2, 3)],  # codebook 0 or eos
        [bos, *frame(bridge, 1, 2, 3), eos],  # text again
    ]
    length = max(map(len, prefixes))
    input_ids = torch.tensor([[0] * (length - len(p)) + p for p in prefixes])  # left padding with [PAD]
    scores = processor(input_ids, torch.zeros(len(prefixes), vocab))
    allowed = [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in scores]
    codebook = [set(range(7 + k * V, 7 + (k + 1) * V)) for k in range(K)]
    text = set(range(vocab)) - set(range(7, 7 + K * V)) - {eos, bridge.audio_pad_token_id}
    assert allowed == [text, codebook[0] | {eos}, codebook[1], codebook[2], codebook[0] | {eos}, text]
    assert bos in text


def test_generation_with_the_processor_always_decodes_strictly(bridge):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(bridge.tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
    )
    lm = LlamaForCausalLM(config).eval()
    prompt = torch.tensor([[2, 4, bridge.audio_bos_token_id]] * 3)
    generated = lm.generate(
        prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=25,
        logits_processor=LogitsProcessorList([DacAudioLogitsProcessor(bridge)]), pad_token_id=0,
    )
    for sequence in generated:
        segments = bridge.extract_audio_codes(sequence, on_text="error")
        assert len(segments) >= 1 and all(segment.shape[0] == K for segment in segments)


def test_logits_processor_needs_resized_embeddings(bridge):
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        DacAudioLogitsProcessor(bridge)(torch.tensor([[2]]), torch.zeros(1, 10))


# Decoding to audio


def test_decode_generated_audio_matches_model_decode():
    torch.manual_seed(0)
    codec = DacModel(DacConfig(encoder_hidden_size=4, decoder_hidden_size=16, n_codebooks=K, codebook_size=V,
                               downsampling_ratios=[2, 4], sampling_rate=8000)).eval()
    bridge = DacTokenizerBridge.add_to_tokenizer(make_tokenizer(), K, V)
    codes = torch.randint(0, V, (K, 5))
    ids = [2, *bridge.codes_to_ids(codes)[:-1], *frame(bridge, 1, 2, 3)[:1]]  # no eos, a cut last frame
    (audio,) = decode_generated_audio(codec, bridge, ids)
    with torch.inference_mode():
        expected = codec.decode(audio_codes=codes[None]).audio_values[0, 0].numpy()
    assert audio.shape == (5 * 8,) and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, expected)
    assert codes_to_audio(codec, [torch.zeros(K, 0, dtype=torch.long)])[0].shape == (0,)
