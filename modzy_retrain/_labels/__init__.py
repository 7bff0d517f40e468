"""Human labels: a typed client for Label Studio (projects, tasks, annotations), and the
push of a dataset's samples that need a person.

The REST client imports only ``_core`` and knows nothing of Modzy or datasets; the push
(``push.py`` and its helpers) also reads published datasets through ``_dataset``.
"""
