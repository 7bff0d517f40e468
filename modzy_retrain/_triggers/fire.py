"""Firing a ready version: every action once, each recorded on its own.

Actions run in order: the Python callback, then the settings' actions (the legacy
``on_ready`` command and ``webhook`` first, then ``[[trigger.actions]]`` and
``--trigger`` flags). One failing does not stop the others. Each is recorded under
``_triggers/<version>/<action id>.json`` as it ends; a rerun fires only the actions
whose record is missing or failed, and once all succeeded the version's
``_triggers/<version>.json`` says the firing is complete. Delivery is at least once
(a crash after a service acted and before its record is written repeats it): every
request carries the version's idempotency key.

Nothing an action meets stops the firing: any exception (an ``OSError`` starting a
command, a bug in a preset) is that action's failure, recorded like a refusal, and a
firing that cannot run at all (its records unreadable) is a failed firing, returned
with its ``error``, never raised. A shell command gets the payload as a file
(``MODZY_RETRAIN_PAYLOAD_FILE``) and only the short, scalar fields as variables: the
payload's size grows with the labels, and the kernel refuses a variable over 128 KiB.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from typing import Any

import httpx

from modzy_retrain._core.exceptions import ConfigurationError, TriggerError, TriggerRefusedError
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.manifest import Manifest

from . import records, shapes
from .command import run_command
from .credentials import Resolved, resolve
from .payload import payload
from .presets import (
    AirflowAction,
    CommandAction,
    DagsterAction,
    GitHubAction,
    GitLabAction,
    HttpAction,
    TriggerAction,
    WebhookAction,
)
from .send import TriggerRetry, send

logger = logging.getLogger("modzy_retrain")
CALLBACK_ID = "callback"


@dataclass(frozen=True)
class _Prepared:
    action: TriggerAction
    resolved: Resolved


@dataclass(frozen=True)
class TriggerActions:
    """What firing does: a callback, the legacy command and webhook, and actions.

    :meth:`prepare` reads their tokens and URLs from the environment (a missing one is
    a :class:`ConfigurationError`, before any request); :func:`fire` prepares them from
    ``os.environ`` when that was not done.
    """

    callback: Callable[[dict[str, Any]], None] | None = None
    command: str | None = None
    webhook: str | None = None
    actions: Sequence[TriggerAction] = ()
    _prepared: tuple[_Prepared, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def any(self) -> bool:
        return bool(self.callback or self.command or self.webhook or self.actions)

    def configured(self) -> list[TriggerAction]:
        """The actions after the callback, in firing order."""
        legacy: list[TriggerAction] = []
        if self.command is not None:
            legacy.append(CommandAction(command=self.command))
        if self.webhook is not None:
            legacy.append(WebhookAction(url=self.webhook))
        return [*legacy, *self.actions]

    def prepare(self, environ: Mapping[str, str]) -> TriggerActions:
        """These actions with their credentials read (from ``environ`` and files).

        Raises:
            ConfigurationError: A token, URL or file missing; two actions recorded
                under one id.
        """
        prepared = tuple(_Prepared(a, resolve(a, environ)) for a in self.configured())
        ids = [p.action.action_id for p in prepared]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice or CALLBACK_ID in ids:
            raise ConfigurationError(
                f"two trigger actions are recorded as {', '.join(twice) or CALLBACK_ID}: "
                "give them different targets or names"
            )
        return replace(self, _prepared=prepared)

    def prepared(self) -> tuple[_Prepared, ...]:
        if self._prepared is not None:
            return self._prepared
        return self.prepare(os.environ)._prepared or ()


@dataclass(frozen=True)
class ActionOutcome:
    """One action's delivery for a version.

    Attributes:
        action_id: What it is recorded under.
        action: The action as people read it (``github:acme/vision/retrain.yml@main``).
        ok: Whether it succeeded (now, or before: ``already``).
        detail: What the service answered (``204``, ``exit code 0``) or why it failed.
    """

    action_id: str
    action: str
    ok: bool
    detail: str
    already: bool = False

    def text(self) -> str:
        """``command exit code 0``, ``github:acme/vision/retrain.yml@main: 204``."""
        if self.action_id == CALLBACK_ID or self.action == "command":
            return f"{self.action} {self.detail}"
        return f"{self.action}: {self.detail}"


@dataclass
class Firing:
    """The outcome of firing the trigger for one version.

    Attributes:
        fired: Whether any action ran now.
        ok: Whether every action has now succeeded for the version.
        already: The firing had completed before: nothing ran.
        outcomes: Each action's delivery, in firing order.
        details: The legacy summary (``command_exit_code``, ``webhook_status``...).
        error: Why the firing could not run or be recorded as a whole (its records
            unreadable, the store failing), when it could not: ``ok`` is then false.
    """

    version: str
    fired: bool = False
    ok: bool = True
    already: bool = False
    outcomes: list[ActionOutcome] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def shown(self) -> bool:
        """Whether there is something to say: an action ran, or the firing failed."""
        return self.fired or self.error is not None


def fire(
    url: str,
    manifest: Manifest,
    actions: TriggerActions,
    *,
    storage_options: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry: TriggerRetry | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Firing:
    """Fire the trigger for a published, ready version: each action not yet done.

    Args:
        url: The dataset's public URL (what the payload says).
        sleep: What waits between attempts (tests pass a recorder).
        transport: An httpx transport for the requests (tests; default: the network).
    """
    assert manifest.version is not None
    assert manifest.trigger is not None
    version = manifest.version
    result = Firing(version)
    if not manifest.trigger.ready or not actions.any:
        return result
    prepared = actions.prepared()  # a missing token: ConfigurationError, as before
    try:
        fs, root = url_to_fs(url, storage_options)
        if records.completed(fs, root, version) is not None:
            result.already = True
            return result
        _fire(result, fs, root, url, manifest, actions.callback, prepared, sleep, retry, transport)
    except Exception as exc:
        # The firing as a whole (its records, the store): never the run's failure. Each
        # action's own failure is recorded by _once; this is what is left.
        result.ok = False
        result.error = f"the trigger could not fire: {type(exc).__name__}: {exc}"
        logger.warning("the retraining trigger for %s failed: %s", version, result.error)
    return result


def _fire(
    result: Firing,
    fs: Any,
    root: str,
    url: str,
    manifest: Manifest,
    callback: Callable[[dict[str, Any]], None] | None,
    prepared: tuple[_Prepared, ...],
    sleep: Callable[[float], None],
    retry: TriggerRetry | None,
    transport: httpx.BaseTransport | None,
) -> None:
    version = result.version
    data = payload(url, manifest)
    with httpx.Client(transport=transport, follow_redirects=False) as client:
        run = partial(_run, data=data, client=client, sleep=sleep, retry=retry)
        if callback is not None:
            result.outcomes.append(
                _once(
                    fs,
                    root,
                    version,
                    CALLBACK_ID,
                    "callback",
                    result,
                    lambda: _callback(callback, data),
                )
            )
        for item in prepared:
            action = item.action
            result.outcomes.append(
                _once(
                    fs,
                    root,
                    version,
                    action.action_id,
                    action.describe(),
                    result,
                    partial(run, item),
                )
            )
    for outcome in result.outcomes:
        if outcome.action.startswith("command") and outcome.detail.startswith("exit code "):
            result.details.setdefault("command_exit_code", int(outcome.detail.split()[-1]))
        elif outcome.action.startswith("webhook") and outcome.detail.isdigit():
            result.details.setdefault("webhook_status", int(outcome.detail))
        elif outcome.action_id == CALLBACK_ID:
            result.details["callback"] = outcome.detail
    result.ok = all(o.ok for o in result.outcomes)
    if result.ok:
        done = {o.action_id: o.detail for o in result.outcomes}
        when = datetime.now(timezone.utc).isoformat()
        records.write(
            fs, records.completed_path(root, version), {"fired_at": when, "actions": done}
        )
    else:
        failed = "; ".join(f"{o.action}: {o.detail}" for o in result.outcomes if not o.ok)
        logger.warning("the retraining trigger for %s failed: %s", version, failed)


def _once(
    fs: Any,
    root: str,
    version: str,
    action_id: str,
    text: str,
    result: Firing,
    go: Callable[[], tuple[bool, str]],
) -> ActionOutcome:
    """Run one action unless its record says it succeeded; record what happened."""
    before = records.action_record(fs, root, version, action_id)
    if before is not None and before.get("ok") is True:
        return ActionOutcome(action_id, text, True, str(before.get("detail", "ok")), already=True)
    result.fired = True
    try:
        ok, detail = go()
    except Exception as exc:
        # Its type only: the text of an unexpected error may quote a URL and its token.
        ok, detail = False, f"failed unexpectedly ({type(exc).__name__})"
    record = {
        "action": text,
        "ok": ok,
        "detail": detail,
        "at": datetime.now(timezone.utc).isoformat(),
    }
    try:
        records.write(fs, records.action_path(root, version, action_id), record)
    except Exception as exc:
        # Unrecorded, it fires again next run (at least once): not a success yet.
        ok, detail = False, f"{detail}; not recorded ({type(exc).__name__}: {exc})"
    return ActionOutcome(action_id, text, ok, detail)


def _callback(
    callback: Callable[[dict[str, Any]], None] | None, data: dict[str, Any]
) -> tuple[bool, str]:
    assert callback is not None
    try:
        callback(dict(data))
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"


def _run(
    item: _Prepared,
    *,
    data: dict[str, Any],
    client: httpx.Client,
    sleep: Callable[[float], None],
    retry: TriggerRetry | None,
) -> tuple[bool, str]:
    action = item.action
    if isinstance(action, CommandAction):
        return run_command(action.command, data, timeout=action.timeout)
    try:
        return True, deliver(action, item.resolved, data, client=client, sleep=sleep, retry=retry)
    except TriggerError as exc:
        return False, exc.message
    except Exception as exc:
        # Its type only: its text may quote the URL, whose query may hold a token.
        return False, f"trigger {action.describe()}: failed unexpectedly ({type(exc).__name__})"


def deliver(
    action: HttpAction,
    res: Resolved,
    data: Mapping[str, Any],
    *,
    client: httpx.Client,
    sleep: Callable[[float], None],
    retry: TriggerRetry | None = None,
) -> str:
    """Send one HTTP action; what the service answered, in a few words.

    Raises:
        TriggerRefusedError: A 4xx, or a GraphQL refusal: the message says what to fix.
        TriggerUnavailableError: 5xx or timeouts on every attempt.
    """
    send_ = partial(
        send,
        client=client,
        timeout=action.timeout,
        max_attempts=action.max_attempts,
        refused=partial(shapes.refusal, action),
        retry=retry,
        sleep=sleep,
    )
    if isinstance(action, GitHubAction):
        return str(send_(shapes.github(action, res, data)).status_code)
    if isinstance(action, GitLabAction):
        answer = send_(shapes.gitlab(action, res, data))
        pipeline = answer.body.get("id") if isinstance(answer.body, dict) else None
        return f"{answer.status_code}, pipeline {pipeline}" if pipeline else str(answer.status_code)
    if isinstance(action, AirflowAction):
        bearer = None
        if res.api == "v2" and res.token is None:
            answer = send_(shapes.airflow_token(action, res))
            token = answer.body.get("access_token") if isinstance(answer.body, dict) else None
            if not isinstance(token, str) or not token:
                raise TriggerRefusedError(
                    f"trigger {action.describe()}: POST /auth/token gave no access_token",
                    action=action.describe(),
                    status_code=answer.status_code,
                )
            bearer = token
        answer = send_(shapes.airflow(action, res, data, bearer))
        run_id = shapes.airflow_run_id(data)
        if answer.done_before:
            return f"{answer.status_code}, run {run_id} existed"
        return f"{answer.status_code}, run {run_id}"
    if isinstance(action, DagsterAction):
        return _dagster(action, res, data, send_)
    return str(send_(shapes.webhook(action, res, data)).status_code)


def _dagster(
    action: DagsterAction, res: Resolved, data: Mapping[str, Any], send_: Callable[..., Any]
) -> str:
    if action.asset_key is not None:
        return str(send_(shapes.dagster(action, res, data)).status_code)
    # A run tagged with this version's key means an earlier delivery launched it.
    found = shapes.graphql_runs(send_(shapes.dagster_existing_runs(action, res, data)).body)
    if found:
        return f"run {found[0]} existed"
    answer = send_(shapes.dagster(action, res, data))
    problem = shapes.graphql_problem(action, answer.body)
    if problem is not None:
        raise TriggerRefusedError(
            f"trigger {action.describe()} refused: {problem}", action=action.describe()
        )
    launched = answer.body["data"]["launchRun"]["run"]["runId"]
    return f"run {launched}"
