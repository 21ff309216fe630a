"""Input and output: audio files, production (stereo, stems, loudness), subtitles, bounded text reads, the user's folders and named voices."""
