"""Human labels: a typed client for Label Studio (projects, tasks, annotations).

Imports only ``_core``: the stages that push samples to annotators and pull their
labels back build on it, and it knows nothing of Modzy or datasets.
"""
