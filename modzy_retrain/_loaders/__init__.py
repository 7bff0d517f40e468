"""Training loaders: a dataset version as Hugging Face ``datasets``, pandas or PyTorch."""
