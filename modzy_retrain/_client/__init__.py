"""The API client layer: the sync and async clients, their calls, parsing, models and retries."""
