"""The chain, as a library: text or a dialogue script -> semantic tokens -> SoundStorm -> codec -> audio.

    synth = Synthesizer.from_checkpoint("tiny")
    result = synth.dialogue(read_script("examples/dialogue.txt"))
    write_audio("out.wav", result.audio, result.sample_rate)

The semantic tokens (25 Hz) come from a *front end*: the bundle's T5 text-to-semantic
model (`t2s`), or `espeak`, which renders the text with espeak-ng and tokenizes that
audio with the same Whisper k-means tokenizer the models were trained on (the
tokens carry the words, not the voice, so SoundStorm re-voices them with the
prompt). SoundStorm then fills the codec tokens of the whole dialogue in one pass,
every frame tagged with its speaker, the voice prompts as the unmasked prefix;
inputs longer than its trained window are decoded window by window
(`decoding.decode_long`). The CLI calls only this module.
"""

from __future__ import annotations

import dataclasses
import functools
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstorm.base.errors import InputError, ModelNotAvailableError, ScriptError
from soundstorm.base.runtime import PRECISIONS, autocast, resolve_precision
from soundstorm.base.validate import check_temperature
from soundstorm.chain.frontends import FRONTENDS
from soundstorm.chain.prompts import (
    MAX_PROMPT_TEXT_CHARS,
    BundledVoice,
    VoicePrompt,
    bundled_voices,
    check_prompt_seconds,
    load_prompt_audio,
)
from soundstorm.chain.script import Pause, Script, Turn, script_error
from soundstorm.chain.semantic import SAMPLE_RATE, SEMANTIC_RATE
from soundstorm.chain.text import MAX_SPEAKERS, READS, normalize, quoted
from soundstorm.io.named_voices import resolve_prompt

# Caps on what one render may ask for, counted on what is spoken (issue 24): text once numbers and symbols
# are spelled out ('%' is 'percent'), pauses, and a prompt's transcript (at most 10 s of it is used).
MAX_SPOKEN_CHARS = 20000  # about 20 minutes of speech: beyond this, split the script
# ...and, before any of that work, on the text as written (issue 48): spelling out only lengthens text that
# speaks, so five times the spoken cap leaves room for spaces, markup and emoji, and bounds what a hostile
# text can cost the normaliser.
MAX_TEXT_CHARS = 5 * MAX_SPOKEN_CHARS
MAX_PAUSE_TOTAL_S = 600.0

# How SoundStorm's output reaches the codec: auto (posterior where the bundle's decoder renders it, unless
# --iterations or --retries ask for sampled codes); paper (iterative, confidence-based decoding of the codes);
# posterior (one pass: level 1's distribution, rendered by a decoder tuned on it).
DECODINGS = ("auto", "paper", "posterior")


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-call settings; None means the bundle's default."""

    prompt_seconds: float = 4.0  # the first seconds of speech of each voice prompt (1-10)
    frontend: str = "auto"  # auto: the bundle's choice; t2s; espeak
    decoding: str = "auto"  # one of DECODINGS
    iterations: tuple[int, ...] | None = None  # SoundStorm passes per level (paper: 16, 1, 1, ...)
    temperature: float = 1.0  # SoundStorm sampling temperature, annealed to 0 within a level
    t2s_temperature: float = 0.8
    t2s_top_k: int = 50
    precision: str = "auto"  # SoundStorm's matmuls: auto (bf16 where the device runs it natively), bf16, fp32
    overlap_s: float = 2.0  # windowed decoding: frames of the previous window given as prompt
    turn_gap_s: float = 0.3  # silence between two turns (the corpus's dialogues have 0.15-0.6 s)
    check_turns: bool = False  # hear every turn with Whisper and report its word recall (`turncheck.py`)
    retries: int = 0  # re-render turns heard below `check_threshold` with up to this many other seeds
    check_threshold: float = 0.8

    def check(self) -> SynthesisOptions:
        check_prompt_seconds(self.prompt_seconds)
        if self.frontend not in FRONTENDS:
            raise InputError(f"front end '{self.frontend}': use one of {', '.join(FRONTENDS)}")
        if self.decoding not in DECODINGS:
            raise InputError(f"decoding '{self.decoding}': use one of {', '.join(DECODINGS)}")
        if self.decoding == "posterior" and (self.iterations is not None or self.retries):
            raise InputError(
                "posterior decoding is one pass with no draws: --iterations and --retries need paper"
            )
        if self.precision not in PRECISIONS:
            raise InputError(f"precision '{self.precision}': use one of {', '.join(PRECISIONS)}")
        check_temperature(self.temperature)
        check_temperature(self.t2s_temperature, "T2S temperature")
        if self.t2s_top_k < 1:
            raise InputError("top-k must be >= 1")
        if self.iterations is not None and (
            not self.iterations or any(not 1 <= n <= 256 for n in self.iterations)
        ):
            raise InputError("iterations: each level needs 1-256 passes")
        if not 0 <= self.turn_gap_s <= 5:
            raise InputError("the gap between turns must be in [0, 5] seconds")
        if not 0 <= self.overlap_s <= 10:
            raise InputError("overlap must be in [0, 10] seconds")
        from soundstorm.chain.turncheck import check_retry_options

        check_retry_options(self.retries, self.check_threshold)
        return self

    @property
    def checking(self) -> bool:
        return self.check_turns or self.retries > 0


@dataclass(frozen=True)
class TurnTiming:
    speaker: str
    text: str
    start_s: float
    end_s: float


@dataclass
class Synthesis:
    """What `say` and `dialogue` return."""

    audio: np.ndarray  # mono float32 [S]
    sample_rate: int
    turns: list[TurnTiming]
    timings: dict[str, float]
    seed: int
    device: str
    frontend: str
    precision: str = "fp32"  # what SoundStorm ran in: bf16 or fp32
    decoding: str = "paper"  # how SoundStorm's output was rendered: paper or posterior
    forward_passes: int = 0
    peak_memory_mb: float = 0.0
    warnings: list[str] = field(default_factory=list)
    checks: list | None = None  # a TurnCheck per turn, with --check or --retries

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate

    @property
    def rtf(self) -> float:
        """Wall time of the synthesis (models already loaded) over the audio's duration."""
        return self.timings["total"] / max(self.duration_s, 1e-9)


@dataclass(frozen=True)
class Segment:
    """A stretch of one turn between pauses; the unit the front ends render."""

    turn: int
    speaker: str
    text: str
    pause_after_s: float


def segments_of(turns: list[Turn], turn_gap_s: float = 0.0) -> list[Segment]:
    """The segments of a script's turns; `turn_gap_s` of silence closes every turn but the last."""
    out: list[Segment] = []
    for index, turn in enumerate(turns):
        pending_pause = 0.0
        for part in turn.parts:
            if isinstance(part, Pause):
                if out and out[-1].turn == index:
                    out[-1] = dataclasses.replace(out[-1], pause_after_s=out[-1].pause_after_s + part.seconds)
                else:
                    pending_pause += part.seconds
            else:
                if pending_pause and out:  # a pause opening a turn lengthens the gap before it
                    out[-1] = dataclasses.replace(
                        out[-1], pause_after_s=out[-1].pause_after_s + pending_pause
                    )
                pending_pause = 0.0
                out.append(Segment(index, turn.speaker, part, 0.0))
        if turn_gap_s and index + 1 < len(turns) and out and out[-1].turn == index:
            out[-1] = dataclasses.replace(out[-1], pause_after_s=out[-1].pause_after_s + turn_gap_s)
    return out


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def check_say(text: str, prompt_text: str | None = None) -> None:
    """Refuse, before any model loads, a `say` request that cannot or should not be rendered."""
    for what, given in (("the text", text), ("the prompt's transcript", prompt_text or "")):
        if len(given) > MAX_TEXT_CHARS:
            raise InputError(f"{what} is {len(given)} characters long (at most {MAX_TEXT_CHARS}); split it")
    if not text.strip():
        raise InputError("the text to say is empty")
    spoken = normalize(text)
    if len(spoken) > MAX_SPOKEN_CHARS:
        raise InputError(
            f"the text speaks {len(spoken)} characters once numbers and symbols are spelled out "
            f"(at most {MAX_SPOKEN_CHARS}, about 20 minutes); split it"
        )
    if not any(c.isalpha() for c in spoken):
        raise InputError(f"nothing to speak in {quoted(text)}: {READS}")
    transcript = len(normalize(prompt_text)) if prompt_text is not None else 0
    if transcript > MAX_PROMPT_TEXT_CHARS:
        raise InputError(
            f"the prompt's transcript has {transcript} characters to speak; at most "
            f"{MAX_PROMPT_TEXT_CHARS} (only the prompt's first seconds are used: give their transcript)"
        )


def check_script(script: Script) -> None:
    """Refuse, before any model loads, a script that cannot or should not be rendered in one call."""
    if len(script.speakers) > MAX_SPEAKERS:
        raise ScriptError(
            f"{script.source}: {len(script.speakers)} speakers; at most {MAX_SPEAKERS} per script"
        )
    written = sum(len(turn.text) for turn in script.turns)
    if written > MAX_TEXT_CHARS:
        raise ScriptError(
            f"{script.source}: the turns hold {written} characters (at most {MAX_TEXT_CHARS} in one render); "
            "split it"
        )
    spoken = 0
    for turn in script.turns:
        words = normalize(turn.text)
        if not any(c.isalpha() for c in words):
            raise script_error(
                script, turn, f"[{turn.speaker}] has nothing to speak in {quoted(turn.text)}: {READS}"
            )
        spoken += len(words)
    if spoken > MAX_SPOKEN_CHARS:
        raise ScriptError(
            f"{script.source}: the script speaks {spoken} characters once numbers and symbols are spelled "
            f"out (at most {MAX_SPOKEN_CHARS}, about 20 minutes, in one render); split it"
        )
    paused = sum(p.seconds for t in script.turns for p in t.parts if isinstance(p, Pause))
    if paused > MAX_PAUSE_TOTAL_S:
        raise ScriptError(
            f"{script.source}: the pauses add up to {paused:g} s (at most {MAX_PAUSE_TOTAL_S:g} s in one render)"
        )


class Synthesizer:
    """The loaded chain of one bundle on one device."""

    def __init__(self, bundle, codec, semantic, text_tokenizer, t2s, soundstorm, voices, device, load_s=0.0):
        self.bundle, self.codec, self.semantic = bundle, codec, semantic
        self.text_tokenizer, self.soundstorm = text_tokenizer, soundstorm
        # the T5, or a function that loads it (the default front end of `tiny` never needs it)
        self._t2s = t2s
        self.voices: list[BundledVoice] = voices
        self.device, self.load_s = device, load_s
        self.ratio = codec.frame_rate // int(bundle.facts.get("semantic_rate", SEMANTIC_RATE))
        self._silence_token: int | None = None
        self._transcriber = None  # Whisper, loaded by the first --check
        self._prompt_identity: str | None = None  # the bundle's part of a prompt cache key
        self._warnings: list[str] = []

    @property
    def has_t2s(self) -> bool:
        return self._t2s is not None

    @property
    def t2s(self):
        """The bundle's T5 (None without one), loaded at its first use."""
        if isinstance(self._t2s, functools.partial):
            self._t2s = self._t2s()
        return self._t2s

    @classmethod
    def from_checkpoint(cls, name_or_path: str | None = None, device: str = "auto") -> Synthesizer:
        """Load a bundle (hash-checked, safetensors only) onto a device."""
        import torch

        from soundstorm.base.runtime import resolve_device
        from soundstorm.bundles.checkpoints import component_path, load_registry
        from soundstorm.chain.codec import load_codec
        from soundstorm.chain.phonemes import load_text_tokenizer
        from soundstorm.chain.semantic import SemanticTokenizer, WhisperEncoder
        from soundstorm.models.soundstorm import load_soundstorm

        started = time.perf_counter()
        target = resolve_device(device)
        bundle = load_registry().get(name_or_path)
        bundle.require("codec", "semantic", "soundstorm", command="synthesis")
        torch.set_num_threads(max(1, torch.get_num_threads()))
        codec = load_codec(component_path(bundle, "codec"), device=str(target))
        semantic = SemanticTokenizer.load(
            component_path(bundle, "semantic") / "semantic.safetensors", WhisperEncoder(threads=2)
        )
        soundstorm = load_soundstorm(component_path(bundle, "soundstorm"), device=str(target))
        text_tokenizer = t2s = None
        if "t2s" in bundle.components and "text" in bundle.components:
            from soundstorm.models.t2s import load_t2s

            text_tokenizer = load_text_tokenizer(component_path(bundle, "text"))
            folder = component_path(bundle, "t2s")  # hash-checked now; the T5 itself loads when first used
            t2s = functools.partial(load_t2s, folder, device=str(target))
        voices = bundled_voices(component_path(bundle, "voices") if "voices" in bundle.components else None)
        return cls(
            bundle,
            codec,
            semantic,
            text_tokenizer,
            t2s,
            soundstorm,
            voices,
            target,
            time.perf_counter() - started,
        )

    # -- voices -------------------------------------------------------------------------------

    def prompt(
        self, source: str | Path | BundledVoice, seconds: float, text: str | None = None
    ) -> VoicePrompt:
        """A voice prompt from an audio file, a named voice or a bundled voice."""

        source = resolve_prompt(source, self.voices)
        bundled = isinstance(source, BundledVoice)
        if bundled:
            name, path, text = source.name, source.path, text or source.text
        else:
            name, path = Path(source).stem, Path(source)
        rate = self.codec.sample_rate
        speech = load_prompt_audio(path, rate, warnings=self._warnings)
        samples = speech[: int(seconds * rate)]
        if text and len(speech) > len(samples) and bundled:
            text = None  # a bundled voice longer than the prompt: its transcript does not apply
        if text and len(speech) > len(samples):
            # T2S continues the prompt's tokens from where its transcript ends: both must cover the same audio.
            self._warnings.append(
                f"prompt transcript ignored: '{path}' holds {len(speech) / rate:.1f} s of speech, more than the "
                f"{seconds:g} s used (raise --prompt-seconds or cut the file)"
            )
            text = None
        codes, semantic = self.prompt_tokens(samples)
        return VoicePrompt(name=name, samples=samples, codes=codes, semantic=semantic, text=text)

    def prompt_tokens(self, samples: np.ndarray):
        """A prompt's codes [Q, P] and 25 Hz semantic tokens: from the prompt cache (`prompt_cache.py`) when
        these samples were seen with this bundle before, else from the models (and then cached)."""
        import torch

        from soundstorm.chain import prompt_cache

        levels = self.soundstorm.config.levels
        if self._prompt_identity is None:
            self._prompt_identity = prompt_cache.bundle_identity(
                self.bundle, "codec", "semantic", levels=levels, rate=self.codec.sample_rate
            )
        entry = prompt_cache.key(samples, self._prompt_identity)
        cached = prompt_cache.load(entry)  # the key holds the levels, the codec and the tokenizer
        if cached is not None:
            return cached
        semantic = self.semantic.tokenize([self.to_16k(samples)])[0]
        given = semantic if self.codec.needs_semantic else None  # a codec conditioned on them
        codes = self.codec.encode(torch.from_numpy(samples), semantic=given)[:levels].cpu()
        prompt_cache.store(entry, codes, semantic)
        return codes, semantic

    def to_16k(self, samples: np.ndarray) -> np.ndarray:
        """Codec-rate samples at the semantic tokenizer's 16 kHz."""
        from soundstorm.io.audio import resample

        return resample(samples, self.codec.sample_rate, SAMPLE_RATE)

    def voice_for(self, index: int) -> BundledVoice:
        if not self.voices:
            raise ModelNotAvailableError(
                f"bundle '{self.bundle.name}' ships no voices: give one with --prompt or --voice NAME=path"
            )
        return self.voices[index % len(self.voices)]

    # -- the two doors --------------------------------------------------------------------------

    def say(
        self,
        text: str,
        prompt: str | Path | None = None,
        prompt_text: str | None = None,
        seed: int = 0,
        options: SynthesisOptions = SynthesisOptions(),
        progress: Progress | None = None,
    ) -> Synthesis:
        """Speak `text` in one voice: a prompt file, or the bundle's first voice."""
        check_say(text, prompt_text)
        options = options.check()
        self._warnings = []
        started = time.perf_counter()
        source = prompt if prompt is not None else self.voice_for(0)
        voice = self.prompt(source, options.prompt_seconds, prompt_text)
        prompt_s = time.perf_counter() - started
        turns = [Turn("S1", (" ".join(text.split()),))]
        return self._render(turns, {"S1": voice}, seed, options, progress, prompt_s, self._warnings)

    def dialogue(
        self,
        script: Script,
        voices: dict[str, str | Path] | None = None,
        seed: int = 0,
        options: SynthesisOptions = SynthesisOptions(),
        progress: Progress | None = None,
    ) -> Synthesis:
        """Render a whole script in one pass; `voices` (speaker -> audio) override the script's."""
        options = options.check()
        voices = dict(voices or {})
        unknown = sorted(set(voices) - set(script.speakers))
        if unknown:
            raise ScriptError(
                f"--voice given for {', '.join(unknown)}, who has no turn (speakers: {', '.join(script.speakers)})"
            )
        check_script(script)
        if len(script.speakers) > self.soundstorm.config.max_speakers:
            raise ScriptError(
                f"{len(script.speakers)} speakers; this model renders at most {self.soundstorm.config.max_speakers}"
            )
        started = time.perf_counter()
        self._warnings = warnings = []
        prompts, spare = {}, 0
        given = {s: voices.get(s) or script.voice_path(s) for s in script.speakers}
        taken = {p.name if isinstance(p, BundledVoice) else Path(p).stem for p in given.values() if p is not None}
        for speaker in script.speakers:
            if given[speaker] is not None:
                prompts[speaker] = self.prompt(given[speaker], options.prompt_seconds)
                continue
            while self.voices and self.voice_for(spare).name in taken and spare < len(self.voices):
                spare += 1
            voice = self.voice_for(spare)
            spare += 1
            warnings.append(f"speaker {speaker} has no voice: using the bundled voice '{voice.name}'")
            prompts[speaker] = self.prompt(voice, options.prompt_seconds)
        prompt_s = time.perf_counter() - started
        return self._render(list(script.turns), prompts, seed, options, progress, prompt_s, warnings)

    # -- the chain --------------------------------------------------------------------------------

    def frontend(self, options: SynthesisOptions) -> str:
        choice = options.frontend
        if choice == "auto":
            choice = self.bundle.facts.get("frontend") or ("t2s" if self.has_t2s else "espeak")
        if choice == "t2s" and not self.has_t2s:
            raise ModelNotAvailableError(
                f"bundle '{self.bundle.name}' has no t2s model; use --frontend espeak"
            )
        if choice == "espeak" and shutil.which("espeak-ng") is None:
            raise ModelNotAvailableError("the espeak front end needs espeak-ng: apt-get install espeak-ng")
        return choice

    def _render(self, turns, prompts, seed, options, progress, prompt_s, warnings) -> Synthesis:
        import torch

        from soundstorm.base.runtime import seed_everything

        options = dataclasses.replace(options, decoding=self.decoding(options))
        seed_everything(seed)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        timings = {"load": round(self.load_s, 3), "prompt": prompt_s}
        frontend = self.frontend(options)
        segments = segments_of(turns, options.turn_gap_s)
        started = time.perf_counter()
        report = progress or (lambda *_: None)
        report("text to semantic", 0, len(segments))
        tokens = self.front_end(frontend).tokens(segments, prompts, seed, options)
        report("text to semantic", len(segments), len(segments))
        timings["t2s"] = time.perf_counter() - started

        started = time.perf_counter()
        speakers = list(prompts)
        codes, semantic, spans, passes = self.acoustic(
            segments, tokens, prompts, speakers, seed, options, report
        )
        timings["acoustic"] = time.perf_counter() - started

        voice = self.voice_track(segments, spans, len(semantic), prompts)

        def decode(codes):
            return self.decode_codes(codes, semantic, voice)

        spoken = _turn_spans(len(turns), segments, spans)
        checks = None
        if options.checking:
            started = time.perf_counter()
            codes, checks, retried = self._check_turns(
                turns,
                segments,
                spans,
                spoken,
                codes,
                decode,
                lambda k: self.acoustic(segments, tokens, prompts, speakers, seed + k, options, report),
                options,
                report,
            )
            passes += retried
            timings["check"] = time.perf_counter() - started

        started = time.perf_counter()
        report("codec decode", 0, 1)
        audio = decode(codes)
        report("codec decode", 1, 1)
        timings["decode"] = time.perf_counter() - started
        timings["total"] = sum(v for k, v in timings.items() if k != "load")
        timings = {k: round(v, 3) for k, v in timings.items()}
        rate = self.codec.frame_rate
        turn_timings = [
            TurnTiming(turn.speaker, turn.text, round(first / rate, 3), round(last / rate, 3))
            for turn, (first, last) in zip(turns, spoken, strict=True)
        ]
        return Synthesis(
            audio=audio,
            sample_rate=self.codec.sample_rate,
            turns=turn_timings,
            timings=timings,
            seed=seed,
            device=str(self.device),
            precision=resolve_precision(options.precision, self.device),
            decoding=options.decoding,
            frontend=frontend,
            forward_passes=passes,
            peak_memory_mb=_peak_memory_mb(self.device),
            warnings=warnings,
            checks=checks,
        )

    def _check_turns(self, turns, segments, spans, spoken, codes, decode, render, options, report):
        """`turncheck.best_of_tries` over this render: (codes, checks, forward passes of the retries)."""
        from soundstorm.chain.turncheck import best_of_tries, turn_frames

        if self._transcriber is None:
            from soundstorm.measures.evaluate import Transcriber

            self._transcriber = Transcriber()
        hop = self.codec.hop_length
        heard = [(t.speaker, t.text, (a * hop, b * hop)) for t, (a, b) in zip(turns, spoken, strict=True)]
        ranges = turn_frames([s.turn for s in segments], spans, codes.shape[1])
        passes = []

        def attempt(k):
            if k == 0:
                return codes.clone()
            report("retry", k, options.retries)
            result = render(k)
            passes.append(result[3])
            return result[0]

        def hear(piece):
            return self._transcriber(piece, self.codec.sample_rate)

        best, checks = best_of_tries(
            attempt, decode, hear, heard, ranges, options.retries, options.check_threshold
        )
        return best, checks, sum(passes)

    def decode_codes(self, codes, semantic, voice=None) -> np.ndarray:
        """Audio [S] of what `acoustic` returned: codes [Q, T], or level 1's distribution [K, T] (float);
        `semantic`: the codec-rate tokens [T] returned with them (a codec conditioned on them decodes with
        them, back at 25 Hz); `voice`: each frame's voice vector [T, V] (`voice_track`), for a decoder
        that reads one."""
        given = semantic[:: self.ratio] if self.codec.needs_semantic else None
        if codes.is_floating_point():
            return self.codec.decode_posterior(codes.T, semantic=given, voice=voice).float().cpu().numpy()
        return self.codec.decode(codes, semantic=given, voice=voice).float().cpu().numpy()

    def voice_track(self, segments, spans, frames: int, prompts):
        """Each frame's voice vector [T, V], its segment's speaker's prompt's (`Codec.voice`): a segment
        holds its frames and the pause after it. None where the codec's decoder reads no voice."""
        import torch

        if not self.codec.reads_voice:
            return None
        vectors = {speaker: self.codec.voice(prompt.codes).cpu() for speaker, prompt in prompts.items()}
        track = torch.empty(frames, next(iter(vectors.values())).shape[0])
        starts = [start for start, _ in spans] + [frames]
        for n, segment in enumerate(segments):
            track[starts[n] : starts[n + 1]] = vectors[segment.speaker]
        return track

    def decoding(self, options: SynthesisOptions) -> str:
        """`options.decoding` resolved for this bundle: 'paper' or 'posterior'."""
        renders = self.codec.renders_posterior
        if options.decoding == "posterior" and not renders:
            raise InputError("this bundle's decoder renders codes only: use --decoding paper or auto")
        if options.decoding != "auto":
            return options.decoding
        sampling = options.iterations is not None or options.retries > 0
        return "posterior" if renders and not sampling else "paper"

    def front_end(self, name: str):
        """The front end `name` ('t2s' or 'espeak') over this bundle's models (`frontends.py`)."""
        from soundstorm.chain.frontends import EspeakFrontEnd, T2SFrontEnd

        if name == "t2s":
            return T2SFrontEnd(self.t2s, self.text_tokenizer, self.silence_token)
        return EspeakFrontEnd(self.semantic)

    def silence_token(self) -> int:
        """The semantic token of silence (pauses are made of it)."""
        if self._silence_token is None:
            tokens = self.semantic.tokenize([np.zeros(SAMPLE_RATE, dtype=np.float32)])[0]
            self._silence_token = int(np.bincount(tokens).argmax())
        return self._silence_token

    def acoustic(self, segments, tokens, prompts, speakers, seed, options, report):
        """SoundStorm over [prompts | dialogue]: the dialogue's codes [Q, T] (or, for posterior decoding,
        level 1's distribution [K, T]) and codec-rate semantic tokens [T], each segment's frame span, and
        the forward passes run."""
        import torch

        from soundstorm.chain.decoding import (
            DecodingOptions,
            PromptTokens,
            decode_prompted,
            first_level_posterior,
            overlap_frames,
        )
        from soundstorm.chain.semantic import semantic_to_codec

        config = self.soundstorm.config
        label = {s: n + 1 for n, s in enumerate(speakers)}
        semantic, track, spans, at = [], [], [], 0
        for segment, seg_tokens in zip(segments, tokens, strict=True):
            pause = int(round(segment.pause_after_s * SEMANTIC_RATE))
            silence = np.full(pause, self.silence_token() if pause else 0, dtype=np.int64)
            seg = np.concatenate([seg_tokens, silence])
            frames = semantic_to_codec(torch.as_tensor(seg), self.ratio)
            spans.append((at, at + len(seg_tokens) * self.ratio))
            semantic.append(frames)
            track.append(torch.full((len(frames),), label[segment.speaker], dtype=torch.long))
            at += len(frames)
        semantic, track = torch.cat(semantic), torch.cat(track)
        voices = [
            PromptTokens(
                prompts[s].codes,
                semantic_to_codec(
                    torch.as_tensor(prompts[s].semantic), self.ratio, prompts[s].codes.shape[1]
                ),
                label[s],
            )
            for s in speakers
        ]
        device = self.device
        if self.decoding(options) == "posterior":
            report("SoundStorm", 0, 1)
            with autocast(device, resolve_precision(options.precision, device)):
                probs, passes = first_level_posterior(
                    self.soundstorm, semantic.to(device), track.to(device), voices
                )
            report("SoundStorm", 1, 1)
            return probs.T.float().cpu(), semantic, spans, passes
        iterations = tuple(options.iterations or DecodingOptions.paper(config.levels).iterations)
        iterations = (iterations + (iterations[-1],) * config.levels)[: config.levels]
        decoding = DecodingOptions(iterations=iterations, temperature=options.temperature, seed=seed)
        report("SoundStorm", 0, config.levels)
        with autocast(device, resolve_precision(options.precision, device)):
            result = decode_prompted(
                self.soundstorm,
                semantic.to(device),
                track.to(device),
                voices,
                decoding,
                overlap_frames(config.window, self.codec.frame_rate, options.overlap_s),
                on_level=lambda level: report("SoundStorm", level + 1, config.levels),
            )
            codes = result.codes
        report("SoundStorm", config.levels, config.levels)
        return codes.cpu(), semantic, spans, result.forward_passes


def _turn_spans(count: int, segments: list[Segment], spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each turn's spoken frames: from its first segment's first frame to its last segment's last."""
    firsts: dict[int, int] = {}
    lasts: dict[int, int] = {}
    for segment, (start, end) in zip(segments, spans, strict=True):
        firsts.setdefault(segment.turn, start)
        lasts[segment.turn] = end
    return [(firsts[n], lasts[n]) for n in range(count)]


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
