"""The push without a server: arguments refused before any request, titles, configs,
where inputs are shown from, the ledger, the command line's usage errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    AnyVotes,
    ConfigurationError,
    DatasetError,
    DatasetLockedError,
    DatasetWriter,
    JobHistoryQuery,
    LabelStudioClient,
    LineageResolver,
    ModzyClient,
    PublishedSample,
    ResultFetcher,
    VoteFilter,
    push_to_label_studio,
    read_samples,
)
from modzy_retrain._cli.exit_codes import EXIT_CODES, LABEL_EXIT_CODES
from modzy_retrain._cli.main import main
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._labels.inputs import MAX_TEXT_BYTES, InputResolver
from modzy_retrain._labels.ledger import LEDGER_PATH, Ledger
from modzy_retrain._labels.projects import config_choices
from modzy_retrain._labels.tasks import (
    SKIP_INPUT_MISSING,
    SKIP_NO_URL,
    SKIP_TEXT_TOO_LARGE,
    TITLE_MAX,
    default_title,
    input_kind,
    label_config,
)
from modzy_retrain.sandbox import Sandbox

TOKEN = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("push-unit")
    sb = Sandbox(seed=3, jobs=40, data_url=str(root / "inputs"))
    sb.write_inputs()
    url = str(root / "ds")
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(url)
        ).run()
    return url


@pytest.fixture
def silent() -> Iterator[tuple[LabelStudioClient, list[httpx.Request]]]:
    """A client whose server is never reached: every request is recorded, then refused."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise AssertionError("no request expected")

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
        LabelStudioClient("http://ls.invalid", TOKEN, http_client=http) as client,
    ):
        yield client, sent


@pytest.mark.parametrize(
    "kwargs",
    [
        {"select": ["needs_label", "nonsense"]},
        {"select": "needs_label"},
        {"select": []},
        {"select": [1, "needs_label"]},
        {"project": "ab"},
        {"project": "x" * (TITLE_MAX + 1)},
        {"project": True},
        {"project": 0},
        {"project": {"": "a title"}},
        {"project": "one title"},  # the dataset has several models
        {"project": {"no-such-model": "a title"}},
        {"chunk_size": 0},
        {"chunk_size": True},
        {"local_files_root": "relative/path"},
        {"url": "http://other.invalid"},
    ],
)
def test_invalid_arguments_are_refused_before_any_request(
    dataset: str, silent: tuple[LabelStudioClient, list[httpx.Request]], kwargs: dict[str, Any]
) -> None:
    client, sent = silent
    with pytest.raises(ConfigurationError):
        push_to_label_studio(dataset, client=client, **kwargs)
    assert sent == []


def test_no_dataset_is_a_dataset_error(
    tmp_path: Path, silent: tuple[LabelStudioClient, list[httpx.Request]]
) -> None:
    client, sent = silent
    with pytest.raises(DatasetError):
        push_to_label_studio(str(tmp_path / "nothing"), client=client)
    assert sent == []


def test_titles_fit_label_studio() -> None:
    assert default_title("/data/retrain/cats", "c60c8dbd79") == "cats - c60c8dbd79"
    assert default_title("s3://bucket/sets/spam/", "m1") == "spam - m1"
    assert default_title("s3://bucket", "m1") == "bucket - m1"
    long_a = default_title("/x/" + "a" * 80, "model-id")
    long_b = default_title("/y/" + "a" * 80, "model-id")
    assert len(long_a) <= TITLE_MAX
    assert long_a.endswith(" - model-id")
    assert long_a != long_b
    assert 3 <= len(default_title("/x/" + "a" * 80, "m" * 60)) <= TITLE_MAX


def test_config_offers_classes_in_order_and_escapes_them() -> None:
    classes = ['say "hi"', "a & b", "<tag>", "plain"]
    config = label_config("text", classes)
    assert config.startswith('<View><Text name="text" value="$text"/>')
    assert config_choices(config, "label") == ("label", "text", classes)
    assert config_choices(config, "other") is None
    assert config_choices(label_config("image", ["x"]), "label") == ("label", "image", ["x"])


def _sample(**fields: Any) -> PublishedSample:
    base: dict[str, Any] = {
        "job_id": "j",
        "input_name": "i",
        "model_id": "m",
        "model_version": "1",
        "model_name": None,
        "submitted_at": None,
        "label": None,
        "label_state": "needs_label",
        "rule": "r",
        "candidates": (),
        "predicted_label": None,
        "predicted_score": None,
        "predictions": (),
        "votes_up": 0,
        "votes_down": 1,
        "source_url": None,
        "sha256": None,
        "size": None,
        "split": None,
        "file": None,
    }
    return PublishedSample.model_validate({**base, **fields})


def test_input_kind_from_the_extension() -> None:
    assert input_kind(_sample(file="data/ab/x.PNG")) == "image"
    assert input_kind(_sample(source_url="https://h/a/b.txt?sig=1")) == "text"
    assert input_kind(_sample(source_url="s3://b/k.bin")) is None


def test_where_images_are_shown_from(tmp_path: Path) -> None:
    served = tmp_path / "root" / "ds"
    served.mkdir(parents=True)
    local = InputResolver(str(served), None, str(tmp_path / "root"))
    assert local.local_folder == str(served.resolve())
    assert local.image(_sample(file="data/a b#.png"))[:2] == (
        "/data/local-files/?d=ds/data/a%20b%23.png",
        None,
    )
    # A path that climbs out of the dataset is never served.
    assert local.image(_sample(file="../secret.png")) == (None, SKIP_NO_URL, False)
    # The document root itself cannot hold a storage: not served as local files.
    assert InputResolver(str(tmp_path / "root"), None, str(tmp_path / "root")).local_folder is None
    cloud = InputResolver("s3://bucket/sets/ds", {"anon": True}, None)
    assert cloud.image(_sample(file="data/ab/x.png"))[0] == "s3://bucket/sets/ds/data/ab/x.png"
    elsewhere = InputResolver(str(tmp_path / "out"), None, None)
    assert elsewhere.image(_sample(source_url="https://cdn/x.png"))[0] == "https://cdn/x.png"
    assert elsewhere.image(_sample(source_url=str(tmp_path / "x.png")))[1] == SKIP_NO_URL


def test_texts_are_read_and_bounded(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("héllo", encoding="utf-8")
    (tmp_path / "big.txt").write_bytes(b"x" * (MAX_TEXT_BYTES + 1))
    resolver = InputResolver(str(tmp_path), None, None)
    assert resolver.text(_sample(file="ok.txt")) == ("héllo", None)
    assert resolver.text(_sample(source_url=str(tmp_path / "ok.txt"))) == ("héllo", None)
    assert resolver.text(_sample(file="big.txt")) == (None, SKIP_TEXT_TOO_LARGE)
    assert resolver.text(_sample(file="gone.txt")) == (None, SKIP_INPUT_MISSING)
    assert resolver.text(_sample()) == (None, SKIP_INPUT_MISSING)


def test_a_damaged_ledger_stops_the_push(
    dataset: str, silent: tuple[LabelStudioClient, list[httpx.Request]]
) -> None:
    fs, root = url_to_fs(dataset)
    path = Path(root) / LEDGER_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"server": "x"}\n')
    try:
        with pytest.raises(DatasetError, match="line 1"):
            Ledger(fs, root)
    finally:
        path.unlink()
    assert Ledger(fs, root).entries == []


def test_cli_usage_errors_exit_2_without_the_key(
    dataset: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    base = ["label", "push", dataset, "--label-studio-url", "http://127.0.0.1:9"]
    assert main([*base, "--project", "a title", "--project", "m=other"]) == 2
    assert main([*base, "--project", "one project"]) == 2  # several models selected
    assert main([*base, "--storage-option", "novalue"]) == 2
    assert main([*base, "--chunk-size", "0"]) == 2
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    assert main(base) == 2
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert "LABEL_STUDIO_API_KEY" in out.err
    models = {s.model_id for s in read_samples(dataset)}
    assert len(models) > 1


def test_the_push_help_shows_its_exit_codes_as_the_docs_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["label", "push", "--help"])
    shown = capsys.readouterr().out
    docs = (Path(__file__).resolve().parents[2] / "docs" / "human-labels.md").read_text()
    for code, text in LABEL_EXIT_CODES.items():
        assert f"  {code}  {text}" in shown
        if code != 141:
            assert f"| {code} | {text} |" in docs
    assert set(LABEL_EXIT_CODES) <= set(EXIT_CODES)


def test_a_second_push_of_a_dataset_waits_for_none(
    dataset: str,
    silent: tuple[LabelStudioClient, list[httpx.Request]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, sent = silent
    lock = Path(dataset) / "_labels" / "_lock.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    held = {
        "run_id": "label-push-other",
        "purpose": "label push",
        "host": "elsewhere",
        "pid": 1,
        "expires_at": "2999-01-01T00:00:00+00:00",
    }
    lock.write_text(json.dumps(held))
    try:
        with pytest.raises(DatasetLockedError, match="another label push holds"):
            push_to_label_studio(dataset, client=client)
        assert sent == []
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
        code = main(["label", "push", dataset, "--label-studio-url", "http://127.0.0.1:9"])
        assert code == 8
        assert "another label push" in capsys.readouterr().err
        assert json.loads(lock.read_text()) == held  # not ours: left alone
    finally:
        lock.unlink()


def test_the_s3_storage_flags(dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from modzy_retrain._cli.label_command import _s3_storage
    from modzy_retrain._cli.main import build_parser

    def args(*extra: str) -> Any:
        return build_parser().parse_args(["label", "push", "s3://b/ds", *extra])

    options = {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t-canary",
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
    }
    assert _s3_storage(args(), options) is None
    made = _s3_storage(args("--s3-storage"), options)
    assert made is not None
    assert (made.endpoint_url, made.region_name) == ("http://127.0.0.1:9000", "eu-west-1")
    assert made.secret_access_key is not None
    assert made.secret_access_key.get_secret_value() == "s3cr3t-canary"
    assert "s3cr3t-canary" not in repr(made) + str(made)
    other = _s3_storage(args("--s3-storage", "--s3-endpoint", "http://minio:9000"), {})
    assert other is not None
    assert (other.endpoint_url, other.access_key_id) == ("http://minio:9000", None)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    base = ["label", "push", dataset, "--label-studio-url", "http://127.0.0.1:9"]
    assert main([*base, "--s3-region", "eu-west-1"]) == 2  # without --s3-storage
    assert main([*base, "--s3-storage"]) == 2  # a local dataset
