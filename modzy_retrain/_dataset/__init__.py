"""Dataset storage: the manifest, versions, the result journal, the lock, the trigger."""
