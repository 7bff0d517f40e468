"""Credentials in URLs: refused in a base URL, removed from every URL the library writes.

``public_url`` is what every written URL goes through (a sample's ``source_url``, the
templates in the manifest's ``stages`` and the report, a drop's detail): user-info and
the query parameters that carry credentials go, a query that only names the object
stays. The end-to-end canary run is in ``tests/test_secrets_canary.py``.
"""

from __future__ import annotations

import warnings

import pytest

from modzy_retrain import (
    AsyncModzyClient,
    ConfigurationError,
    LineageError,
    LineageResolver,
    ModzyClient,
)
from modzy_retrain._cli.main import main
from modzy_retrain._cli.settings import load_settings
from modzy_retrain._core.secrets import is_credential_param, public_url, scrub_urls
from modzy_retrain._dataset.layout import extension
from modzy_retrain._labels.client import LabelStudioClient
from modzy_retrain._stages.report import Drop

SECRET = "Canary5ecretValue"

# (given, what may be written)
CASES: list[tuple[str | None, str | None]] = [
    (None, None),
    ("", ""),
    # user-info, whatever the scheme
    (f"https://user:{SECRET}@host/a.png", "https://host/a.png"),
    (f"https://{SECRET}@host/a.png", "https://host/a.png"),
    (f"https://:{SECRET}@host:8443/a.png", "https://host:8443/a.png"),
    (f"ftp://user:{SECRET}@host/a.png", "ftp://host/a.png"),
    (f"s3://key:{SECRET}@bucket/a.png", "s3://bucket/a.png"),
    # Azure's container@account is a name, not a credential: kept (its password is not)
    ("abfs://container@account.dfs.core.windows.net/a.png", None),
    (f"az://container:{SECRET}@account/a.png", "az://container@account/a.png"),
    # Azure SAS: the signature goes, the rest of the SAS (no secret) and the path stay
    (
        f"https://acct.blob.core.windows.net/c/a.png?sv=2022-11-02&se=2030-01-01&sr=b&sp=r&sig={SECRET}",
        "https://acct.blob.core.windows.net/c/a.png?sv=2022-11-02&se=2030-01-01&sr=b&sp=r",
    ),
    # S3 presigned, signature version 4: every X-Amz-* goes, versionId stays
    (
        "https://bucket.s3.amazonaws.com/a.png?versionId=3HL4kq&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential=AKIA%2F20300101%2Fus-east-1&X-Amz-Date=20300101T000000Z"
        f"&X-Amz-Expires=900&X-Amz-Security-Token={SECRET}&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={SECRET}",
        "https://bucket.s3.amazonaws.com/a.png?versionId=3HL4kq",
    ),
    # S3 presigned, version 2; lower case and percent-encoded names too
    (
        f"https://b.s3.amazonaws.com/a.png?AWSAccessKeyId=AKIA&Expires=1&Signature={SECRET}",
        "https://b.s3.amazonaws.com/a.png?Expires=1",
    ),
    (f"https://h/a.png?x-amz-signature={SECRET}&part=1", "https://h/a.png?part=1"),
    (f"https://h/a.png?X%2DAmz%2DSignature={SECRET}", "https://h/a.png"),
    # GCS signed URLs (V4 and V2), generation kept
    (
        "https://storage.googleapis.com/b/a.png?generation=17&X-Goog-Algorithm=GOOG4-RSA-SHA256"
        f"&X-Goog-Credential=sa%40p.iam&X-Goog-Signature={SECRET}",
        "https://storage.googleapis.com/b/a.png?generation=17",
    ),
    (
        f"https://storage.googleapis.com/b/a.png?GoogleAccessId=sa&Expires=1&Signature={SECRET}",
        "https://storage.googleapis.com/b/a.png?Expires=1",
    ),
    # CloudFront, tokens and keys of every spelling
    (
        f"https://d.cloudfront.net/a.png?Policy=p&Key-Pair-Id=K2&Signature={SECRET}",
        "https://d.cloudfront.net/a.png?Policy=p",
    ),
    (f"https://h/a.png?token={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?access_token={SECRET}&alt=media", "https://h/a.png?alt=media"),
    (f"https://h/a.png?key={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?api_key={SECRET}&apiKey={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?client_secret={SECRET}&password={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?sessionToken={SECRET}&jwt={SECRET}&auth={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?sig={SECRET}", "https://h/a.png"),
    (f"https://h/a.png?SIG={SECRET}&sig={SECRET}", "https://h/a.png"),
    # a fragment holding a token (OAuth's implicit flow) goes the same way
    (f"https://h/a.png#access_token={SECRET}&state=1", "https://h/a.png#state=1"),
    # identifying queries, odd or empty parameters: kept as written
    ("https://h/a.png?versionId=7", None),
    ("https://h/a.png?a=1&a=2&b", None),
    ("https://h/a.png?", None),
    ("https://h/a%20b.png?name=caf%C3%A9", None),
    ("s3://bucket/a.png?versionId=7", None),
    ("gs://bucket/a.png?generation=17", None),
    # fsspec chaining: each URL scrubbed
    (
        f"simplecache::https://u:{SECRET}@h/a.png?sig={SECRET}&v=1",
        "simplecache::https://h/a.png?v=1",
    ),
    # local paths and file:// URLs: '?', '#' and '@' are parts of file names there
    ("/data/who@where/a?sig=1#token=2.png", None),
    ("file:///data/who@where/a?sig=1.png", None),
    ("relative/a?token=1.png", None),
    ("memory://prod/a?sig=1.png", None),
    # templates: the fields are kept
    (
        f"https://u:{SECRET}@h/{{model_id}}/{{submitted_at:%Y/%m/%d}}/{{input_name}}.png?sig={SECRET}",
        "https://h/{model_id}/{submitted_at:%Y/%m/%d}/{input_name}.png",
    ),
]


@pytest.mark.parametrize(("given", "written"), CASES)
def test_public_url(given: str | None, written: str | None) -> None:
    expected = given if written is None else written
    assert public_url(given) == expected
    assert public_url(expected) == expected  # idempotent
    if given is not None and (written is not None or "://" in given):
        assert SECRET not in str(public_url(given))


def test_the_credential_parameters() -> None:
    for name in (
        "sig",
        "Signature",
        "X-Amz-Credential",
        "x-goog-signature",
        "token",
        "access_token",
        "id_token",
        "key",
        "api-key",
        "AWSAccessKeyId",
        "GoogleAccessId",
        "Key-Pair-Id",
        "x-oss-signature",
        "security-token",
        "password",
    ):
        assert is_credential_param(name), name
    for name in ("versionId", "generation", "snapshot", "alt", "sv", "se", "sp", "part"):
        assert not is_credential_param(name), name


def test_urls_inside_a_text_are_scrubbed() -> None:
    text = (
        f"no file at https://u:{SECRET}@h/a.png?sig={SECRET}&v=1: "
        f"ClientResponseError(url=URL('https://h/b.png?token={SECRET}')), "
        f"(see s3://b/k?X-Amz-Signature={SECRET}), local /data/a?sig=1.png stays"
    )
    scrubbed = scrub_urls(text)
    assert SECRET not in scrubbed
    assert "https://h/a.png?v=1:" in scrubbed
    assert "URL('https://h/b.png')" in scrubbed
    assert "(see s3://b/k)," in scrubbed
    assert "/data/a?sig=1.png stays" in scrubbed


def test_a_drop_never_holds_a_signed_url() -> None:
    drop = Drop("resolve", "source_missing", "j", "i", f"no file at https://h/a?sig={SECRET}")
    assert drop.detail == "no file at https://h/a"
    assert SECRET not in repr(drop)


def test_the_extension_of_a_signed_url() -> None:
    assert extension(f"https://h/a.PNG?sig={SECRET}") == ".png"
    assert extension("/data/a?b.png") == ".png"  # a local name: '?' is a character


def test_the_lineage_stage_describes_its_templates_without_credentials() -> None:
    resolver = LineageResolver(
        f"https://u:{SECRET}@h/{{input_name}}?sig={SECRET}",
        templates={"m": f"https://h/{{input_name}}?X-Amz-Signature={SECRET}&versionId=1"},
    )
    described = resolver.describe()
    assert described["template"] == "https://h/{input_name}"
    assert described["templates"] == {"m": "https://h/{input_name}?versionId=1"}
    assert SECRET not in repr(resolver)


def test_a_bad_template_is_refused_without_echoing_its_credentials() -> None:
    with pytest.raises(LineageError) as caught:
        LineageResolver(f"https://u:{SECRET}@h/{{nope}}?sig={SECRET}")
    assert "{nope}" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{SECRET}@app.modzy.com",
        f"https://{SECRET}@app.modzy.com/api",
        f"https://:{SECRET}@app.modzy.com",
        f"http://user:{SECRET}@127.0.0.1:8080",
    ],
)
def test_a_base_url_with_credentials_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for cls in (ModzyClient, AsyncModzyClient):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused before any warning that names the URL
            with pytest.raises(ConfigurationError) as caught:
                cls(api_key="p.k", base_url=url)
        assert "credentials" in str(caught.value)
        assert SECRET not in str(caught.value)
    monkeypatch.setenv("MODZY_BASE_URL", url)
    with pytest.raises(ConfigurationError) as caught:
        ModzyClient(api_key="p.k")
    assert SECRET not in str(caught.value)
    # The build's settings refuse it when read (exit 2), without echoing it.
    with pytest.raises(ConfigurationError) as caught:
        load_settings(None, {"base_url": url, "out": "/tmp/x"})
    assert SECRET not in str(caught.value)
    monkeypatch.setenv("MODZY_API_KEY", "p.k")
    assert main(["build", "--base-url", url, "--out", "/tmp/never", "--input-template", "x"]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert "credentials" in captured.err
    # Label Studio's client already refuses them.
    with pytest.raises(ConfigurationError) as caught:
        LabelStudioClient(url, "a" * 40)
    assert SECRET not in str(caught.value)


def test_the_build_settings_show_no_template_credentials() -> None:
    settings = load_settings(
        None,
        {
            "out": "/tmp/x",
            "input_template": f"https://u:{SECRET}@h/{{input_name}}?sig={SECRET}",
            "input_templates": {"m": f"https://h/{{input_name}}?token={SECRET}"},
        },
    )
    assert SECRET not in repr(settings) + str(settings)
    # The values themselves are intact: the build needs them.
    assert settings.input_template is not None
    assert SECRET in settings.input_template
