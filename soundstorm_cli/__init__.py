"""soundstorm: text and dialogue to speech with SoundStorm's parallel RVQ decoding.

Importing the package is cheap: torch and transformers load only inside the
functions that need them, so `soundstorm --help` answers at once.
"""

__version__ = "0.1.0"
