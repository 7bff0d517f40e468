"""Importing and using the library changes no interpreter state (issue: no process-wide
side effects). A fresh interpreter snapshots what a library could tamper with, imports
``modzy_retrain``, runs both clients and a whole chain in process and over loopback
HTTP, and compares."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    r"""
    import asyncio, builtins, json, logging, os, socket, ssl, sys, tempfile, threading
    import urllib.request, warnings
    import anyio, fsspec, httpcore, httpx, pydantic, tenacity

    # Python's own lazily built caches, made now so they are not counted as ours.
    tempfile.gettempdir()
    tempfile._get_candidate_names()
    WATCHED = [asyncio, builtins, json, logging, os, socket, ssl, sys, tempfile, threading,
               urllib.request, warnings, anyio, fsspec, httpcore, httpx, pydantic, tenacity]

    def attributes():
        seen = {}
        for module in WATCHED:
            for name, value in list(vars(module).items()):
                seen[f"{module.__name__}.{name}"] = id(value)
                if isinstance(value, type):  # methods patched on classes too
                    for attr, member in list(vars(value).items()):
                        seen[f"{module.__name__}.{name}.{attr}"] = id(member)
        return seen

    def loggers():
        out = {"": (tuple(map(id, logging.root.handlers)), logging.root.level)}
        for name, obj in list(logging.Logger.manager.loggerDict.items()):
            if isinstance(obj, logging.Logger):
                out[name] = (tuple(type(h).__name__ for h in obj.handlers), obj.level,
                             obj.propagate, obj.disabled)
        return out

    def snapshot():
        return {
            "env": dict(os.environ),
            "modules": {name: id(m) for name, m in sys.modules.items()},
            "none_modules": sorted(n for n, m in sys.modules.items() if m is None),
            "attributes": attributes(),
            "loggers": loggers(),
            "warning_filters": [repr(f) for f in warnings.filters],
            "path": list(sys.path),
            "hooks": [id(sys.excepthook), id(threading.excepthook), id(sys.displayhook)],
            "socket_timeout": socket.getdefaulttimeout(),
            "policy": type(asyncio.get_event_loop_policy()).__name__,
            "limits": [sys.getrecursionlimit(), sys.getswitchinterval()],
            "logger_class": logging.getLoggerClass().__name__,
            "disable": logging.root.manager.disable,
        }

    before = snapshot()

    import modzy_retrain as mr
    from modzy_retrain.sandbox import Sandbox

    def chain(client, sandbox, out):
        return (
            mr.JobHistoryQuery(client)
            | mr.ResultFetcher(client)
            | mr.VoteFilter(mr.AnyVotes())
            | mr.LineageResolver(templates=sandbox.input_templates)
            | mr.DatasetWriter(out)
        )

    sandbox = Sandbox(seed=3, jobs=20)
    work = tempfile.mkdtemp()
    with mr.ModzyClient(api_key=sandbox.api_key, base_url=sandbox.base_url,
                        transport=sandbox.transport()) as client:
        chain(client, sandbox, f"{work}/a").run()
    with sandbox.serve() as server, mr.ModzyClient(
        api_key=sandbox.api_key, base_url=server.base_url
    ) as client:
        client.check()
        chain(client, sandbox, f"{work}/b").run()

        async def main():
            async with mr.AsyncModzyClient(
                api_key=sandbox.api_key, base_url=server.base_url
            ) as aclient:
                await aclient.check()
                await chain(aclient, sandbox, f"{work}/c").arun()

        asyncio.run(main())

    after = snapshot()

    problems = []
    for key in before:
        if key in ("modules", "attributes", "loggers"):
            continue
        if before[key] != after[key]:
            problems.append(f"{key} changed: {before[key]!r} -> {after[key]!r}")
    for kind in ("modules", "attributes"):
        for name, ident in before[kind].items():
            if after[kind].get(name) != ident:
                problems.append(f"{kind}: {name} replaced or removed")
    for name, state in before["loggers"].items():
        if after["loggers"].get(name) != state:
            now = after["loggers"].get(name)
            problems.append(f"logger {name!r} reconfigured: {state} -> {now}")
    for name, state in after["loggers"].items():
        if name not in before["loggers"] and name.startswith("modzy_retrain"):
            handlers = state[0]
            if handlers not in ((), ("NullHandler",)) or state[1] != logging.NOTSET:
                problems.append(f"logger {name!r} configured: {state}")
    print(json.dumps(problems))
    """
)


def test_importing_and_using_both_clients_changes_no_interpreter_state(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    problems = json.loads(proc.stdout.strip().splitlines()[-1])
    assert problems == []


def test_the_snapshot_catches_a_tampering_library(tmp_path: Path) -> None:
    # The check above must be able to fail: the removed sniffio marker would be caught.
    tampering = SCRIPT.replace(
        "import modzy_retrain as mr\n",
        "import modzy_retrain as mr\nsys.modules['sniffio'] = None\n"
        "logging.getLogger('httpx').setLevel(logging.DEBUG)\n"
        "_send = httpx.Client.send\n"
        "httpx.Client.send = lambda self, *a, **k: _send(self, *a, **k)\n"
        "os.environ['MODZY_TOUCHED'] = '1'\n",
    )
    proc = subprocess.run(
        [sys.executable, "-c", tampering],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    problems = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout else None
    assert problems is not None, proc.stderr[-3000:]
    text = "\n".join(problems)
    assert "none_modules changed" in text
    assert "logger 'httpx' reconfigured" in text
    assert "httpx.Client.send replaced" in text
    assert "env changed" in text
