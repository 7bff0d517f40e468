"""An offline, faithful fake of the Modzy API, for tests, demos and benchmarks.

>>> from modzy_retrain.sandbox import Sandbox
>>> sb = Sandbox(seed=0, jobs=50)
>>> import httpx
>>> with httpx.Client(base_url=sb.base_url, transport=sb.transport(),
...                   headers={"Authorization": f"ApiKey {sb.api_key}"}) as http:
...     page = http.get("/jobs/history", params={"per-page": 5}).json()
>>> len(page)
5

See docs/sandbox.md for the world, the routes and the knobs.
"""

from ._app import LogEntry, SandboxApp
from ._catalogue import WorldModel
from ._faults import FaultConfig
from ._messages import Request, Response
from ._postgres import PostgresServer, PostgresUnavailable, postgres_server
from ._records import InputRef, WorldInput, WorldJob, WorldUser
from ._sandbox import IN_PROCESS_BASE_URL, Sandbox
from ._server import SandboxServer
from ._stores import ObjectStoreServer, gcs_server, s3_server
from ._transport import AsyncSandboxTransport, SandboxTransport

__all__ = [
    "IN_PROCESS_BASE_URL",
    "AsyncSandboxTransport",
    "FaultConfig",
    "InputRef",
    "LogEntry",
    "ObjectStoreServer",
    "PostgresServer",
    "PostgresUnavailable",
    "Request",
    "Response",
    "Sandbox",
    "SandboxApp",
    "SandboxServer",
    "SandboxTransport",
    "WorldInput",
    "WorldJob",
    "WorldModel",
    "WorldUser",
    "gcs_server",
    "postgres_server",
    "s3_server",
]

# Public classes report the public module (reprs, docs and pickles name the stable path).
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
