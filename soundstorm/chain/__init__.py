"""The chain: scripts and prompts -> semantic tokens -> SoundStorm -> the codec -> audio."""
