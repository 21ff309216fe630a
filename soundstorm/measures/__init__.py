"""The measures: `soundstorm bench` and `eval`, and the ASR and speaker-similarity judges they use."""
