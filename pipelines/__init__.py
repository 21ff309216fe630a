"""Training pipelines: corpus, tokenizers, codec, T2S, SoundStorm and the AR baseline."""
