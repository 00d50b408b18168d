"""Train a tiny causal language model on text + DAC audio tokens, sample from it, and decode the samples to wav.

The whole loop of an audio LM in miniature, on CPU in well under a minute:

1. write a small dataset: short tones at 24 kHz, some stereo, each with a caption ("low tone", "high tone");
2. tokenize its audio column with `modeling_dac.tokenization.tokenize_dataset` (resampled to the codec's
   16 kHz, stereo averaged; `dac tokenize` does the same from the shell);
3. add the audio tokens to a small text tokenizer with `DacTokenizerBridge` and build sequences
   ``[BOS] caption <|audio_bos|> audio tokens <|audio_eos|> [EOS]``;
4. train a two-layer Llama for a few steps;
5. prompt it with ``[BOS] low tone <|audio_bos|>``, sample with `DacAudioLogitsProcessor` keeping the audio
   well-formed, and decode the sampled tokens to wav with `decode_generated_audio`.

The codec is the tiny test configuration (hub_configs/tiny, 4 codebooks of 64) with random weights, so the wavs
are noise-like: the point is the plumbing. Pass ``--codec`` a trained model directory or hub id for real audio.

    python examples/lm_on_audio_tokens.py --output-dir lm_example_output
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from datasets import Audio, Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList, PreTrainedTokenizerFast

from modeling_dac import DacConfig, DacModel
from modeling_dac.audio import save_audio
from modeling_dac.lm_bridge import DacAudioLogitsProcessor, DacTokenizerBridge, decode_generated_audio
from modeling_dac.tokenization import tokenize_dataset

TINY_CODEC_CONFIG = Path(__file__).resolve().parents[1] / "hub_configs" / "tiny"
CAPTIONS = {"low tone": 220.0, "high tone": 880.0}
TEXT_VOCABULARY = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "low", "high", "tone"]


def write_tone_dataset(folder: Path, n_clips: int, seconds: float, sampling_rate: int = 24000) -> Dataset:
    """Wav files of tones with captions; returns a dataset with an undecoded `audio` column and `text`."""
    rng = np.random.default_rng(0)
    time = np.arange(int(seconds * sampling_rate)) / sampling_rate
    paths, texts = [], []
    for index in range(n_clips):
        caption = list(CAPTIONS)[index % len(CAPTIONS)]
        tone = 0.3 * np.sin(2 * np.pi * CAPTIONS[caption] * time) + 0.01 * rng.standard_normal(time.size)
        audio = np.stack([tone, 0.5 * tone]) if index % 3 == 0 else tone  # every third clip is stereo
        path = folder / f"clip_{index:02d}.wav"
        save_audio(path, audio.astype(np.float32), sampling_rate)
        paths.append(str(path))
        texts.append(caption)
    return Dataset.from_dict({"audio": paths, "text": texts}).cast_column("audio", Audio(decode=False))


def build_text_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer for the captions, built locally."""
    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(TEXT_VOCABULARY)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]"
    )


def training_sequences(tokenized: Dataset, bridge: DacTokenizerBridge) -> list[list[int]]:
    """``[BOS] caption <|audio_bos|> ... <|audio_eos|> [EOS]`` for every row."""
    tokenizer = bridge.tokenizer
    sequences = []
    for row in tokenized.with_format("numpy"):
        body = bridge.encode_interleaved([row["text"], row["audio_codes"]])
        sequences.append([tokenizer.bos_token_id, *body, tokenizer.eos_token_id])
    return sequences


def train(lm: LlamaForCausalLM, sequences: list[list[int]], pad_token_id: int, steps: int, learning_rate: float):
    """Full-batch AdamW steps on the right-padded sequences; returns the loss of every step."""
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(sequences), length), pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(lm.parameters(), lr=learning_rate)
    lm.train()
    losses = []
    for _ in range(steps):
        loss = lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir", "--output_dir", default="lm_example_output", help="where the dataset and samples go"
    )
    parser.add_argument("--codec", default=None, help="DacModel directory or hub id (default: tiny, random weights)")
    parser.add_argument("--clips", type=int, default=8, help="clips in the synthetic dataset")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each clip")
    parser.add_argument("--steps", type=int, default=40, help="training steps")
    parser.add_argument("--samples", type=int, default=2, help="sequences to sample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir)
    torch.manual_seed(args.seed)

    if args.codec is None:
        codec = DacModel(DacConfig.from_pretrained(TINY_CODEC_CONFIG)).eval()
    else:
        codec = DacModel.from_pretrained(args.codec).eval()
    dataset = write_tone_dataset(output_dir / "clips", args.clips, args.seconds)
    tokenized = tokenize_dataset(dataset, codec, stereo="mean", batch_size=4)

    tokenizer = build_text_tokenizer()
    bridge = DacTokenizerBridge.add_to_tokenizer(tokenizer, codec.config.n_codebooks, codec.config.codebook_size)
    sequences = training_sequences(tokenized, bridge)

    lm_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max(len(sequence) for sequence in sequences) + 8,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    lm = LlamaForCausalLM(lm_config)
    losses = train(lm, sequences, tokenizer.pad_token_id, args.steps, learning_rate=3e-3)

    lm.eval()
    prompt_ids = [tokenizer.bos_token_id, *bridge.encode_interleaved(["low tone"]), bridge.audio_bos_token_id]
    prompt = torch.tensor([prompt_ids])
    frames = max(tokenized["n_frames"])
    generated = lm.generate(
        prompt.expand(args.samples, -1),
        attention_mask=torch.ones(args.samples, prompt.shape[1], dtype=torch.long),
        do_sample=True,
        max_new_tokens=frames * codec.config.n_codebooks + 1,
        logits_processor=LogitsProcessorList([DacAudioLogitsProcessor(bridge)]),
        eos_token_id=bridge.audio_eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    for stale in output_dir.glob("sample_*_*.wav"):  # an earlier run's samples, which this run may not overwrite
        stale.unlink()
    sample_paths = []
    for index, sequence in enumerate(generated):
        for segment, audio in enumerate(decode_generated_audio(codec, bridge, sequence)):
            path = output_dir / f"sample_{index}_{segment}.wav"
            save_audio(path, audio, codec.config.sampling_rate)
            sample_paths.append(path)
    print(
        f"Tokenized {len(tokenized)} clips, trained {args.steps} steps (loss {losses[0]:.2f} -> {losses[-1]:.2f}), "
        f"wrote {len(sample_paths)} samples to {output_dir}"
    )
    return {"losses": losses, "sample_paths": sample_paths, "generated": generated, "bridge": bridge, "codec": codec}


if __name__ == "__main__":
    main()
