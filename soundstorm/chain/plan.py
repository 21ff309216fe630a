"""The plan step: a request checked once, before any model loads, into the value a render takes.

    plan = plan_dialogue(read_script("ep1.txt"), {"S2": "bob.wav"}, options, seed=0, voices=reader)
    result = Synthesizer.from_checkpoint("tiny").render(plan)

`plan_say` and `plan_dialogue` check the options, the text or script against the caps (`request.py`),
match the speakers (a voice given for a speaker with no turn is refused here and nowhere else), pick
each speaker's voice (a file, a user's named voice, a bundled voice, or the next bundled voice not
taken) and decode its audio once. A `VoiceReader` decodes each file once however many speakers, items
of a batch or requests name it; its voices are at the bundle's sample rate (`VoiceReader.for_bundle`
reads it, and the bundled voices, from the registry without loading a model). The CLI, batches and the
server build plans; `Synthesizer.say` and `dialogue` build one and render it. What only a loaded model
knows (how many speakers it renders, whether its decoder renders posteriors) is checked at the render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundstorm.base.errors import AudioError, UnknownSpeakerError
from soundstorm.chain.prompts import BundledVoice, load_prompt_audio
from soundstorm.chain.request import SynthesisOptions, check_say, check_script
from soundstorm.chain.script import Script, Turn
from soundstorm.chain.semantic import SAMPLE_RATE


@dataclass(frozen=True)
class Voice:
    """A speaker's voice, decoded: its speech (trimmed of silence, at most the prompt's seconds of it) at
    `sample_rate`, how much speech the file holds, and the transcript where it covers what is used."""

    name: str
    source: str  # the file it came from, for messages
    speech: np.ndarray
    sample_rate: int
    speech_s: float
    text: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A checked request: what `Synthesizer.render` renders."""

    turns: tuple[Turn, ...]
    voices: dict[str, Voice]  # every speaker's, in the order speakers first speak
    options: SynthesisOptions
    seed: int = 0
    warnings: tuple[str, ...] = field(default=())

    @property
    def speakers(self) -> list[str]:
        return list(self.voices)


class VoiceReader:
    """Resolves voice sources and decodes each file once (`reads` counts the decodes)."""

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, bundled: list[BundledVoice] | tuple = (), resolve=None
    ):
        """`resolve(source, what)`, where given, replaces `resolve` (the server's: voice names only)."""
        self.sample_rate, self.bundled = sample_rate, list(bundled)
        self._resolve = resolve
        self._speech: dict[Path, tuple[np.ndarray, tuple[str, ...]]] = {}
        self.reads = 0

    @classmethod
    def for_bundle(cls, name_or_path: str | None) -> VoiceReader:
        """A reader at a bundle's sample rate (its `facts`, else 16 kHz; the render resamples where the
        codec's differs) with its bundled voices, from the registry, no model loaded; a bundle that cannot
        synthesize is refused here."""
        from soundstorm.bundles.checkpoints import component_path, load_registry
        from soundstorm.chain.prompts import bundled_voices

        bundle = load_registry().get(name_or_path)
        bundle.require("codec", "semantic", "soundstorm", command="synthesis")  # before a voice is read
        voices = bundled_voices(component_path(bundle, "voices")) if "voices" in bundle.components else []
        return cls(int(bundle.facts.get("sample_rate", SAMPLE_RATE)), voices)

    def resolve(self, source, what: str = "voice") -> BundledVoice | Path:
        """A prompt argument as a voice (named or bundled) or a file; a bare name that is neither is refused."""
        from soundstorm.io.named_voices import is_bare_name, resolve_prompt

        if self._resolve is not None and not isinstance(source, BundledVoice):
            source = self._resolve(source, what)
        if isinstance(source, BundledVoice):
            return source
        if hasattr(source, "path") and hasattr(source, "name"):  # a user's voice (`named_voices.UserVoice`)
            return BundledVoice(source.name, Path(source.path), getattr(source, "text", None))
        resolved = resolve_prompt(source, self.bundled)
        if isinstance(resolved, Path) and not resolved.exists() and is_bare_name(source):
            raise AudioError(
                f"'{source}' is neither an audio file nor a voice name (`soundstorm voices` lists them)"
            )
        return resolved

    def voice(self, source, seconds: float, text: str | None = None, what: str = "voice") -> Voice:
        """The voice `source` names, its first `seconds` of speech; a transcript is kept only where it
        covers them (a longer file's is dropped with a warning; a bundled voice's silently)."""
        resolved = self.resolve(source, what)
        named = isinstance(resolved, BundledVoice)
        path = resolved.path if named else resolved
        name = resolved.name if named else path.stem
        text = text or (resolved.text if named else None)
        speech, warnings = self._decode(path)
        cut = speech[: int(seconds * self.sample_rate)]
        speech_s = len(speech) / self.sample_rate
        if text and len(speech) > len(cut):
            if not named:  # T2S continues the prompt's tokens from where its transcript ends
                warnings += (
                    f"prompt transcript ignored: '{path}' holds {speech_s:.1f} s of speech, more than the "
                    f"{seconds:g} s used (raise --prompt-seconds or cut the file)",
                )
            text = None
        return Voice(name, str(path), cut, self.sample_rate, speech_s, text, warnings)

    def _decode(self, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
        key = Path(path).resolve() if Path(path).exists() else Path(path)
        if key not in self._speech:
            said: list[str] = []
            speech = load_prompt_audio(path, self.sample_rate, warnings=said)
            self.reads += 1
            self._speech[key] = (speech, tuple(said))
        return self._speech[key]


def plan_say(
    text: str,
    prompt=None,
    prompt_text: str | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    seed: int = 0,
    voices: VoiceReader | None = None,
) -> Plan:
    """`say`'s request checked: the text, the options, the voice (a prompt, else the first bundled one)."""
    check_say(text, prompt_text)
    options = options.check()
    voices = voices or VoiceReader()
    source = prompt if prompt is not None or voices._resolve else _bundled(voices, 0)
    voice = voices.voice(source, options.prompt_seconds, prompt_text)
    return Plan((Turn("S1", (" ".join(text.split()),)),), {"S1": voice}, options, seed, voice.warnings)


def plan_dialogue(
    script: Script,
    overrides: dict | None = None,
    options: SynthesisOptions = SynthesisOptions(),
    seed: int = 0,
    voices: VoiceReader | None = None,
) -> Plan:
    """A script's request checked: the caps, the options, the speakers the voices are given for, and a
    voice for every speaker (`overrides`, speaker -> source, before the script's own; a speaker with
    neither gets the next bundled voice that no other speaker uses, with a warning)."""
    check_script(script)
    options = options.check()
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(script.speakers))
    if unknown:
        raise UnknownSpeakerError(
            f"a voice given for {', '.join(unknown)}, who has no turn (speakers: {', '.join(script.speakers)})"
        )
    voices = voices or VoiceReader()
    given = {s: overrides.get(s) or script.voice_path(s) for s in script.speakers}
    chosen = {
        s: voices.voice(v, options.prompt_seconds, what=f"the voice of {s}")
        for s, v in given.items()
        if v is not None
    }
    taken = {v.name for v in chosen.values()}
    spare = (v for v in voices.bundled if v.name not in taken)
    warnings: list[str] = []
    planned = {}
    for speaker in script.speakers:
        if speaker not in chosen:
            voice = next(spare, None) or _bundled(voices, len(planned))
            warnings.append(f"speaker {speaker} has no voice: using the bundled voice '{voice.name}'")
            chosen[speaker] = voices.voice(voice, options.prompt_seconds)
        planned[speaker] = chosen[speaker]
        warnings += [w for w in chosen[speaker].warnings if w not in warnings]
    return Plan(tuple(script.turns), planned, options, seed, tuple(warnings))


def _bundled(voices: VoiceReader, index: int) -> BundledVoice:
    from soundstorm.base.errors import ModelNotAvailableError

    if not voices.bundled:
        raise ModelNotAvailableError(
            "no voice given and the bundle ships none: give one with --prompt or --voice NAME=path"
        )
    return voices.bundled[index % len(voices.bundled)]
