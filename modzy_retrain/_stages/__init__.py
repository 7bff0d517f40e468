"""The chain's stages and what flows between them (records, the run report)."""
