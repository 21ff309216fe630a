"""The stages that make a bundle: corpus, tokenizers, codec, shards, SoundStorm, T2S, AR baseline, decoder tunings, the bundle itself."""
