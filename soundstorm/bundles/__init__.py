"""Model bundles: the registry, sha256 checks, safetensors-only loading, the EnCodec import."""
