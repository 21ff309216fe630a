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
from pathlib import Path

import numpy as np

from soundstorm.base.errors import InputError, ModelNotAvailableError, ScriptError
from soundstorm.base.runtime import autocast, resolve_precision
from soundstorm.chain.prompts import BundledVoice, VoicePrompt, bundled_voices
from soundstorm.chain.request import (  # noqa: F401 (the library's names for them since the start)
    DECODINGS,
    MAX_PAUSE_TOTAL_S,
    MAX_SPOKEN_CHARS,
    MAX_TEXT_CHARS,
    Progress,
    Segment,
    Synthesis,
    SynthesisOptions,
    TurnTiming,
    check_say,
    check_script,
    segments_of,
)
from soundstorm.chain.script import Script
from soundstorm.chain.semantic import SAMPLE_RATE, SEMANTIC_RATE


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

    def voice_reader(self):
        """A `plan.VoiceReader` at this codec's sample rate over this bundle's voices."""
        from soundstorm.chain.plan import VoiceReader

        return VoiceReader(self.codec.sample_rate, self.voices)

    def prompt(
        self, source: str | Path | BundledVoice, seconds: float, text: str | None = None
    ) -> VoicePrompt:
        """A voice prompt from an audio file, a named voice or a bundled voice."""
        voice = self.voice_reader().voice(source, seconds, text)
        self._warnings.extend(voice.warnings)
        return self.prompt_of(voice)

    def prompt_of(self, voice) -> VoicePrompt:
        """A planned voice (`plan.Voice`) tokenized: its codes and semantic tokens."""
        samples = voice.speech
        if voice.sample_rate != self.codec.sample_rate:  # a bundle whose registry entry gave no rate
            from soundstorm.io.audio import resample

            samples = resample(samples, voice.sample_rate, self.codec.sample_rate)
        codes, semantic = self.prompt_tokens(samples)
        return VoicePrompt(name=voice.name, samples=samples, codes=codes, semantic=semantic, text=voice.text)

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
        from soundstorm.chain.plan import plan_say

        return self.render(plan_say(text, prompt, prompt_text, options, seed, self.voice_reader()), progress)

    def dialogue(
        self,
        script: Script,
        voices: dict[str, str | Path] | None = None,
        seed: int = 0,
        options: SynthesisOptions = SynthesisOptions(),
        progress: Progress | None = None,
    ) -> Synthesis:
        """Render a whole script in one pass; `voices` (speaker -> audio) override the script's."""
        from soundstorm.chain.plan import plan_dialogue

        return self.render(plan_dialogue(script, voices, options, seed, self.voice_reader()), progress)

    def render(self, plan, progress: Progress | None = None) -> Synthesis:
        """Render a checked request (`plan.Plan`, built by `plan_say` or `plan_dialogue`)."""
        limit = self.soundstorm.config.max_speakers
        if len(plan.voices) > limit:
            raise ScriptError(f"{len(plan.voices)} speakers; this model renders at most {limit}")
        started = time.perf_counter()
        self._warnings = list(plan.warnings)
        prompts = {speaker: self.prompt_of(voice) for speaker, voice in plan.voices.items()}
        prompt_s = time.perf_counter() - started
        return self._render(list(plan.turns), prompts, plan.seed, plan.options, progress, prompt_s, self._warnings)

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
