"""Where soundstorm keeps a user's files: named voices and the prompt cache.

`$SOUNDSTORM_HOME` holds both (`voices/`, `cache/prompts/`) when set; otherwise platformdirs' user
data folder holds the voices and its user cache folder the prompt cache.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "SOUNDSTORM_HOME"


def voices_home() -> Path:
    """Where named voices live: `$SOUNDSTORM_HOME/voices`, else the user data folder's `voices`."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]) / "voices"
    import platformdirs

    return Path(platformdirs.user_data_dir("soundstorm", appauthor=False)) / "voices"


def prompt_cache_home() -> Path:
    """Where the prompt cache lives: `$SOUNDSTORM_HOME/cache/prompts`, else the user cache folder's."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]) / "cache" / "prompts"
    import platformdirs

    return Path(platformdirs.user_cache_dir("soundstorm", appauthor=False)) / "prompts"


def vocoder_home() -> Path:
    """Where the built FARGAN vocoder lives: `$SOUNDSTORM_HOME/vocoder`, else the user data folder's."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]) / "vocoder"
    import platformdirs

    return Path(platformdirs.user_data_dir("soundstorm", appauthor=False)) / "vocoder"
