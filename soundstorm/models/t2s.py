"""Text-to-semantic: a small `transformers.T5ForConditionalGeneration` from text pieces to 25 Hz semantic tokens.

One shared vocabulary (T5 ties its input and output embeddings):

    0 pad (also the decoder's start)   1 end   2 turn   3 .. 3+S-1 semantic tokens   3+S .. text pieces

The encoder reads `[prompt transcript] <sep> [text]` (SentencePiece ids, with
`<spkN>` before each dialogue turn); the decoder is forced to start with the
voice prompt's semantic tokens and continues them, emitting `turn` where each
dialogue turn starts in time (so SoundStorm's speaker track can be built) and
`end` when done. Two guards, applied while sampling, make this hold for any
weights: a dialogue of n turns gets exactly n `turn` tokens, the first one
first; and the output never runs past a cap proportional to the text length.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from soundstorm.models.positions import sinusoids

PAD, END, TURN, FIRST_SEMANTIC = 0, 1, 2, 3


@dataclass
class T2SConfig:
    text_vocab: int = 1024
    semantic_vocab: int = 512
    d_model: int = 256
    d_ff: int = 1024
    heads: int = 4
    encoder_layers: int = 4
    decoder_layers: int = 4
    dropout: float = 0.1
    max_frames_per_piece: float = (
        12.0  # the cap: semantic frames per text piece (measured ~4-6 on the corpus)
    )
    min_frames_per_piece: float = (
        2.0  # the floor: no `end` before this many frames per text piece (a small model may end at once)
    )
    # Sinusoidal absolute positions added to the encoder's and the decoder's input embeddings (as
    # Transformer-TTS and VALL-E do). T5's own positions are relative and live in self-attention only, so
    # its cross-attention can find "how far into the text" only from content; with absolute positions on
    # both sides a monotonic text-to-time alignment is one linear map away. False: T5 as it is.
    absolute_positions: bool = False

    @property
    def text_offset(self) -> int:
        return FIRST_SEMANTIC + self.semantic_vocab

    @property
    def vocab_size(self) -> int:
        return self.text_offset + self.text_vocab

    def to_t5(self):
        from transformers import T5Config

        return T5Config(
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            d_kv=self.d_model // self.heads,
            d_ff=self.d_ff,
            num_layers=self.encoder_layers,
            num_decoder_layers=self.decoder_layers,
            num_heads=self.heads,
            dropout_rate=self.dropout,
            pad_token_id=PAD,
            eos_token_id=END,
            decoder_start_token_id=PAD,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=True,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def with_positions(model, batch: dict) -> dict:
    """A forward pass's inputs with `input_ids` and `decoder_input_ids` replaced by their embeddings plus
    `sinusoids` (`T2SConfig.absolute_positions`); the rest (masks, labels) as given."""
    embed = model.get_input_embeddings()
    out = {k: v for k, v in batch.items() if k not in ("input_ids", "decoder_input_ids")}
    for ids_key, embeds_key in (
        ("input_ids", "inputs_embeds"),
        ("decoder_input_ids", "decoder_inputs_embeds"),
    ):
        ids = batch[ids_key]
        out[embeds_key] = embed(ids) + sinusoids(ids.shape[1], embed.weight.shape[1], ids.device)
    return out


@dataclass
class T2SOutput:
    """One generated sequence: semantic tokens [T25] and the frame where each turn starts."""

    semantic: list[int]
    turn_starts: list[int]
    capped: bool  # True when generation stopped at the length cap instead of an `end` token


class _Guards:
    """A LogitsProcessor: only semantic/turn/end tokens; exactly `turns` turn tokens; the floor and the cap."""

    def __init__(
        self, config: T2SConfig, prefix_len: int, turns: list[int], caps: list[int], floors: list[int]
    ):
        self.config, self.prefix_len, self.turns = config, prefix_len, turns
        self.caps, self.floors = caps, floors

    def __call__(self, input_ids, scores):  # a LogitsProcessor, for `generate()`
        scores = scores.clone()
        generated = input_ids[:, self.prefix_len :]
        for b in range(input_ids.shape[0]):
            length = generated.shape[1]
            after_turn = length > 0 and int(generated[b, -1]) == TURN
            self.row(scores[b], b, length, int((generated[b] == TURN).sum()), after_turn)
        return scores

    def stepper(self, b: int = 0):
        """The guard of row `b` as `T5Stepper.sample` calls it: (scores [V], length, last token), in place;
        it counts the turn tokens as they come."""
        emitted = 0

        def guard(scores, length: int, last: int) -> None:
            nonlocal emitted
            emitted += last == TURN
            self.row(scores, b, length, emitted, last == TURN)

        return guard

    def row(self, scores, b: int, length: int, emitted: int, after_turn: bool) -> None:
        """Row b's rules on its scores [V], in place: `length` tokens generated, `emitted` of them turns."""
        scores[PAD] = float("-inf")
        scores[self.config.text_offset :] = float("-inf")
        n = self.turns[b]
        if n and length == 0:  # a dialogue starts with its first turn
            self._force(scores, TURN)
            return
        if emitted >= n or after_turn:
            scores[TURN] = float("-inf")  # no extra turn, no empty turn
        if emitted < n or after_turn or length < self.floors[b]:
            scores[END] = float("-inf")  # no end before every turn has spoken, nor before the floor
        room = self.caps[b] - 1 - length  # positions left before the cap
        if emitted < n and not after_turn and room <= 2 * (n - emitted):
            self._force(scores, TURN)  # the remaining turns must start now to fit under the cap
        if length + 1 >= self.caps[b]:
            self._force(scores, END)

    @staticmethod
    def _force(scores, token: int) -> None:
        scores[:] = float("-inf")
        scores[token] = 0.0


class T2S:
    """The T5 model plus the vocabulary mapping, the guards and batched sampling."""

    def __init__(self, model, config: T2SConfig):
        self.model, self.config = model.eval(), config

    @classmethod
    def random_init(cls, config: T2SConfig, seed: int = 0) -> T2S:
        from transformers import T5ForConditionalGeneration

        torch.manual_seed(seed)
        return cls(T5ForConditionalGeneration(config.to_t5()), config)

    def input_ids(self, text_pieces: list[int]) -> list[int]:
        return [self.config.text_offset + p for p in text_pieces] + [END]

    def decoder_prefix(self, prompt_semantic: list[int]) -> list[int]:
        return [PAD] + [FIRST_SEMANTIC + s for s in prompt_semantic]

    def cap(self, text_pieces: list[int], turns: int = 0) -> int:
        return max(4, math.ceil(self.config.max_frames_per_piece * len(text_pieces))) + 2 * turns

    def floor(self, text_pieces: list[int], turns: int = 0) -> int:
        """Tokens generated before `end` may come: always below the cap, so the cap still ends it."""
        return min(
            math.floor(self.config.min_frames_per_piece * len(text_pieces)) + turns,
            self.cap(text_pieces, turns) - 2,
        )

    @torch.no_grad()
    def generate(
        self,
        texts: list[list[int]],
        prompt_semantic: list[int] | None = None,
        turns: list[int] | None = None,
        temperature: float = 0.8,
        top_k: int | None = 50,
        seed: int = 0,
        prompt_pieces: int = 0,
    ) -> list[T2SOutput]:
        """Semantic tokens for each text (SentencePiece ids), all continuing the same prompt.

        `turns[b]`: how many dialogue turns text b holds (0: not a dialogue). `prompt_pieces`: how
        many leading pieces of each text are the prompt's transcript and separator; they are not
        spoken (their tokens are the forced prefix), so the cap and the floor count only the rest.
        Sampling is seeded, row by row (`T5Stepper`: the T5 token by token with its own key/value cache,
        drawing as `generate()` would): a batch gives what its items give one by one.
        """
        prefix = self.decoder_prefix(prompt_semantic or [])
        turns = turns or [0] * len(texts)
        return [
            self._one(text, prompt_pieces, prefix, n_turns, temperature, top_k, seed + b)
            for b, (text, n_turns) in enumerate(zip(texts, turns, strict=True))
        ]

    @property
    def stepper(self):
        """The T5 sampled token by token without `generate()`'s overhead (`t5_step.py`), built once."""
        if getattr(self, "_stepper", None) is None:
            from soundstorm.models.t5_step import T5Stepper

            self._stepper = T5Stepper(self.model, positions=self.config.absolute_positions)
        return self._stepper

    def _one(self, text, prompt_pieces, prefix, n_turns, temperature, top_k, seed) -> T2SOutput:
        spoken = text[prompt_pieces:]
        cap = self.cap(spoken, n_turns)
        guards = _Guards(self.config, len(prefix), [n_turns], [cap], [self.floor(spoken, n_turns)])
        torch.manual_seed(seed)
        generated = self.stepper.sample(
            self.input_ids(text),
            prefix,
            max_new=cap,
            guard=guards.stepper(),
            end=END,
            temperature=temperature,
            top_k=top_k if temperature > 0 else None,
        )
        if END in generated:
            generated = generated[: generated.index(END)]
        capped = len(generated) + 1 >= cap
        semantic, starts = [], []
        for token in generated:
            if token == TURN:
                starts.append(len(semantic))
            else:
                semantic.append(token - FIRST_SEMANTIC)
        return T2SOutput(semantic=semantic, turn_starts=starts, capped=capped)


def load_t2s(folder, device: str = "cpu") -> T2S:
    """Build from `t2s.json` + the Hugging Face folder (safetensors only, never pickle), eval mode."""
    from pathlib import Path

    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration
    from transformers.utils import logging as hf_logging

    from soundstorm.bundles.checkpoints import load_safetensors

    hf_logging.disable_progress_bar()  # our progress is ours to show: stderr stays one line per problem
    from soundstorm.base.errors import CheckpointError
    from soundstorm.io.textfiles import read_json_object

    folder = Path(folder)
    try:
        config = T2SConfig(**read_json_object(folder / "t2s.json", CheckpointError, "T2S config"))
        state = load_safetensors(folder / "model.safetensors")  # int8 rows, if so stored, dequantized
        model = T5ForConditionalGeneration.from_pretrained(
            None, config=T5Config.from_pretrained(str(folder)), state_dict=state
        )
        if (folder / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(str(folder))
    except (OSError, TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot load the T2S model in '{folder}': {str(exc).splitlines()[0]}") from exc
    return T2S(model.float().to(device), config)  # shipped in bf16, computed in fp32
