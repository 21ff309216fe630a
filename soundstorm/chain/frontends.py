"""Front ends: the segments of a text or script -> 25 Hz semantic tokens, one array per segment.

- `t2s`: the bundle's T5 (`models/t2s.py`), continuing a voice prompt when its transcript is known;
- `espeak`: espeak-ng renders the text (a guide voice) and the semantic tokenizer tokenizes that audio:
  the tokens carry the words, and SoundStorm re-voices them with the prompt.

Both are small objects with one method, `tokens(segments, prompts, seed, options)`, chosen in one place
(`Synthesizer.front_end`). A segment with nothing to speak (a '...' between pauses) is a short silence.
"""

from __future__ import annotations

import subprocess

import numpy as np

from soundstorm.base.errors import ModelNotAvailableError
from soundstorm.chain.phonemes import espeak_env
from soundstorm.chain.semantic import SAMPLE_RATE
from soundstorm.chain.text import SEPARATOR, normalize, quoted, speakable

FRONTENDS = ("auto", "t2s", "espeak")
ESPEAK_GUIDE_VOICE = "en-us"


class T2SFrontEnd:
    """The T5: text pieces (after the prompt's transcript, when given) -> semantic tokens."""

    def __init__(self, t2s, text_tokenizer, silence_token):
        # `silence_token()`: the token of silence, asked for only when a segment needs it (it runs Whisper)
        self.t2s, self.text_tokenizer, self.silence = t2s, text_tokenizer, silence_token

    def tokens(self, segments, prompts, seed: int, options) -> list[np.ndarray]:
        sep = self.text_tokenizer.control_ids[SEPARATOR]
        out = []
        for i, segment in enumerate(segments):
            if not speakable(segment.text):  # e.g. '...' between two pauses: a short silence
                out.append(np.full(3, self.silence(), dtype=np.int64))
                continue
            voice = prompts[segment.speaker]
            pieces = self.text_tokenizer.encode(normalize(segment.text))
            prefix, prompt_pieces = None, 0
            if voice.text:  # the prompt's transcript and tokens: T2S continues the prompt
                transcript = self.text_tokenizer.encode(normalize(voice.text)) + [sep]
                prompt_pieces, pieces = len(transcript), transcript + pieces
                prefix = [int(t) for t in voice.semantic]
            (result,) = self.t2s.generate(
                [pieces],
                prompt_semantic=prefix,
                temperature=options.t2s_temperature,
                top_k=options.t2s_top_k,
                seed=seed + i,
                prompt_pieces=prompt_pieces,
            )
            out.append(np.asarray(result.semantic or [self.silence()], dtype=np.int64))
        return out


class EspeakFrontEnd:
    """espeak-ng's rendering of each segment, tokenized by the semantic tokenizer."""

    def __init__(self, semantic):
        self.semantic = semantic

    def tokens(self, segments, prompts=None, seed: int = 0, options=None) -> list[np.ndarray]:
        from soundstorm.chain.prompts import trim_silence

        clips = []
        for segment in segments:
            speech = speakable(segment.text)
            clip = (
                trim_silence(espeak_render(normalize(segment.text)), SAMPLE_RATE) if speech else np.zeros(0)
            )
            clips.append(clip if len(clip) else np.zeros(1600, dtype=np.float32))
        return self.semantic.tokenize(clips)


def espeak_render(text: str, voice: str = ESPEAK_GUIDE_VOICE) -> np.ndarray:
    """espeak-ng's rendering of `text` as float32 samples at the semantic tokenizer's rate (the guide)."""
    import io

    import soundfile as sf

    from soundstorm.io.audio import resample

    try:
        done = subprocess.run(
            ["espeak-ng", "-v", voice, "--stdout", "--stdin"],
            input=text.encode(),
            capture_output=True,
            check=True,
            env=espeak_env(),
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ModelNotAvailableError(f"espeak-ng could not render the text: {exc}") from exc
    try:
        data, rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    except RuntimeError:  # soundfile.LibsndfileError: not a WAV (e.g. empty)
        raise ModelNotAvailableError(
            f"espeak-ng gave no audio for {quoted(text)} (its output: {len(done.stdout)} bytes)"
        ) from None
    return resample(data.reshape(-1), rate, SAMPLE_RATE)
