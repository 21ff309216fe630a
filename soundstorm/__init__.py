"""soundstorm: text and dialogue to speech with SoundStorm's parallel RVQ decoding.

The public API, importable from here:

    from soundstorm import Synthesizer, SynthesisOptions, read_script

    synth = Synthesizer.from_checkpoint("tiny")
    result = synth.dialogue(read_script("examples/dialogue.txt"))   # a Synthesis: audio, turns, timings

and the error family (`SoundstormError` and its kinds). The sub-packages follow the architecture
(ARCHITECTURE.md): `doors` (command line, batches, server), `chain` (script, prompts, front ends,
SoundStorm decoding, codec), `models`, `vocoder`, `measures`, `io`, `bundles`, `base`.

Importing the package is cheap: these names load on first use, and torch and transformers only inside
the functions that need them, so `soundstorm --help` answers at once.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Synthesizer": "soundstorm.chain.synthesize",
    "SynthesisOptions": "soundstorm.chain.request",
    "Synthesis": "soundstorm.chain.request",
    "TurnTiming": "soundstorm.chain.request",
    "read_script": "soundstorm.chain.script",
    "parse_script": "soundstorm.chain.script",
    "Script": "soundstorm.chain.script",
    "SoundstormError": "soundstorm.base.errors",
    "InputError": "soundstorm.base.errors",
    "AudioError": "soundstorm.base.errors",
    "ScriptError": "soundstorm.base.errors",
    "OutputError": "soundstorm.base.errors",
    "BatchError": "soundstorm.base.errors",
    "CheckpointError": "soundstorm.base.errors",
    "ModelNotAvailableError": "soundstorm.base.errors",
    "CodecError": "soundstorm.base.errors",
    "VocoderError": "soundstorm.base.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'soundstorm' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_PUBLIC])
