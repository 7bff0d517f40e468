"""The shared core: exceptions, constants, secrets, timestamps, storage and concurrency helpers.

Imported by every other layer; imports none of them.
"""
