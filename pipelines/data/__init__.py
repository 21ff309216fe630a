"""The corpus's data: its texts, its synthetic and natural voices, real corpora, the manifest."""
