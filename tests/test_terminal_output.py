"""Terminal control characters from the API are escaped in everything printed (issue 17,
item 8).

A job id, a model name or a label holding ``ESC [ 2 J`` (clear the screen), an OSC
title sequence, an 8-bit CSI (U+009B), a bidi override (U+202E) or a newline could
rewrite what someone reads in a terminal or a CI log: the lines ``modzy-retrain``
prints show such characters as escapes (``\\x1b``, ``\\u202e``, ``\\n``) instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from modzy_retrain import ModzyClient, RetryPolicy
from modzy_retrain._cli import build as build_module
from modzy_retrain._cli.main import main
from modzy_retrain._core.printable import printable
from modzy_retrain.sandbox import Sandbox

# Everything a terminal may act on, and a newline that would forge a line of output.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\r\x08\nFORGED LINE"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\x08")


def _clean(text: str) -> None:
    """No control character a terminal acts on, and no forged line."""
    assert not [c for c in RAW if c in text], repr(text[:2000])
    assert not [line for line in text.splitlines() if line.startswith("FORGED")]


class Rewriting(httpx.BaseTransport):
    """The sandbox, with one job's id and one model's name replaced by hostile text in
    every answer (and the id mapped back in the requests' paths)."""

    def __init__(self, inner: httpx.BaseTransport, swaps: dict[str, str]) -> None:
        self.inner = inner
        self.swaps = swaps

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode("ascii")
        for real, hostile in self.swaps.items():
            path = path.replace(quote(hostile, safe=""), real)
        forwarded = httpx.Request(
            request.method,
            request.url.copy_with(raw_path=path.encode("ascii")),
            headers=request.headers,
            content=request.read(),
        )
        response = self.inner.handle_request(forwarded)
        body = response.read().decode("utf-8")
        for real, hostile in self.swaps.items():
            body = body.replace(real, json.dumps(hostile)[1:-1])
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, content=body.encode("utf-8"))


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sb = Sandbox(seed=5, jobs=40, data_url=str(tmp_path / "inputs"))
    sb.write_inputs()
    return sb


def _cli(sb: Sandbox, out: Path, *extra: str) -> list[str]:
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    return ["build", "--base-url", sb.base_url, "--out", str(out), *templates, "--quiet", *extra]


def test_build_output_escapes_job_ids_and_model_names_from_the_api(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
    job = next(j for j in sandbox.jobs if j.status == "COMPLETED")
    sandbox.unavailable_results = {job.id}
    hostile_id = job.id + HOSTILE
    swaps = {job.id: hostile_id, job.model.name: "Model" + HOSTILE}
    transport = Rewriting(sandbox.transport(), swaps)

    def client(**kw: Any) -> ModzyClient:
        kw.update(transport=transport, retry=RetryPolicy(max_attempts=2), sleep=lambda s: None)
        return ModzyClient(**kw)

    monkeypatch.setattr(build_module, "ModzyClient", client)
    out = tmp_path / "ds"
    assert main(_cli(sandbox, out, "--dry-run", "--select", "everything")) in (0, 6)
    dry = capsys.readouterr()
    assert "Model\\x1b[2J" in dry.out
    _clean(dry.out + dry.err)
    assert main(_cli(sandbox, out)) == 6  # incomplete: the hostile job is unavailable
    built = capsys.readouterr()
    assert "could not be had after retries" in built.out
    assert printable(hostile_id) in built.out
    _clean(built.out + built.err)


def test_inspect_and_the_trigger_s_lines_escape_what_they_show(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
    job = next(j for j in sandbox.jobs if j.status == "COMPLETED")
    item = next(i for i in job.inputs if i.status == "SUCCESSFUL")
    labels = tmp_path / "labels.jsonl"
    row = {"job_id": job.id, "input_name": item.name, "label": "cat" + HOSTILE}
    labels.write_text(json.dumps(row) + "\n")
    out = tmp_path / "ds"
    # A command that fails, printing nothing itself: its record is shown by inspect.
    flags = ("--label-file", str(labels), "--allow-new-classes", "--on-ready", "exit 3")
    with sandbox.serve() as server:
        args = _cli(sandbox, out, *flags)
        args[args.index("--base-url") + 1] = server.base_url
        assert main(args) == 5
    built = capsys.readouterr()
    _clean(built.out + built.err)
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "cat\\x1b[2J" in shown
    _clean(shown)
    assert main(["inspect", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    _clean(text)
    assert "cat" + HOSTILE in json.loads(text)["counts"]["by_label"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, émoji 🐈 and 中文", "plain text, émoji 🐈 and 中文"),
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("bell\x07", "bell\\x07"),
        ("csi\x9b", "csi\\x9b"),
        ("del\x7f", "del\\x7f"),
        ("rtl\u202eltr\u2066", "rtl\\u202eltr\\u2066"),
        ("line\nnext\rback", "line\\nnext\\rback"),
        ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
        ("tab\tkept", "tab\tkept"),
    ],
)
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable("a\nb", keep_newlines=True) == "a\nb"
    assert printable("a\x1b\nb", keep_newlines=True) == "a\\x1b\nb"


def test_a_label_pull_s_summary_escapes_what_services_answered(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modzy_retrain._cli.label_pull_command import summary
    from modzy_retrain._cli.terminal import say
    from modzy_retrain._labels.pull import PullResult
    from modzy_retrain._triggers.fire import ActionOutcome, Firing

    answered = ActionOutcome("hook", "webhook:https://hooks.example.com/x", False, HOSTILE)
    firing = Firing("v0002", fired=True, ok=False, outcomes=[answered], error=HOSTILE)
    result = PullResult(
        dataset="/data/ds", version="v0002", previous="v0001", firing=firing, recovered=firing
    )
    for line in summary(result):  # as `modzy-retrain label pull` prints it
        say(line, block=True)
    out = capsys.readouterr().out
    assert "trigger for v0002: fired, FAILED" in out
    assert "\\x1b[2J" in out
    _clean(out)
