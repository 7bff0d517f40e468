"""Properties of the transports' response reader (``_http11.ResponseReader``, shared by
the sync and the async transport), fed bytes as a socket may deliver them.

- Any well-formed response, framed by ``Content-Length``, ``chunked`` (any chunk sizes,
  extensions, trailers) or the connection's end, and cut into any pieces as they may
  arrive from a socket, reads back as the status, headers and body that were sent.
- Any bytes at all, then the end of the stream: the reader gives a response or an
  ``httpx`` transport error, never another exception and never a hang.
"""

from __future__ import annotations

import contextlib
import itertools

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modzy_retrain._client.http11 import ResponseReader

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)

_token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
    min_size=1,
    max_size=12,
)
_value = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20).map(
    lambda v: v.encode("ascii")
)
_reserved = {b"content-length", b"transfer-encoding", b"connection"}


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[bytes, bytes]], bytes, bool]:
    """(wire bytes, status, the non-framing headers, body, whether the stream must end)."""
    status = draw(st.sampled_from([200, 201, 400, 404, 429, 500, 503]))
    headers = [
        (name.encode("ascii"), value)
        for name, value in draw(st.lists(st.tuples(_token, _value), max_size=5))
        if name.lower().encode("ascii") not in _reserved
    ]
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    head = b"HTTP/1.1 %d Reason\r\n" % status
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    if framing == "length":
        wire = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    elif framing == "chunked":
        wire = head + b"Transfer-Encoding: chunked\r\n\r\n"
        rest = body
        while rest:
            size = draw(st.integers(min_value=1, max_value=len(rest)))
            ext = draw(st.sampled_from([b"", b";a=b", b" ; x"]))
            wire += b"%x%s\r\n%s\r\n" % (size, ext, rest[:size])
            rest = rest[size:]
        wire += b"0\r\n"
        if draw(st.booleans()):
            wire += b"X-Checksum: abc\r\n"
        wire += b"\r\n"
    else:
        wire = head + b"\r\n" + body
    return wire, status, headers, body, framing == "close"


def _pieces(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _read(pieces: list[bytes], end: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Feed ``pieces`` to a reader only as it asks for more, the way both transports do."""
    reader = ResponseReader()
    arriving = iter(pieces)

    def more() -> None:
        piece = next(arriving, None)
        if piece is not None:
            reader.feed(piece)
        elif end and not reader.eof:
            reader.end()
        else:
            raise AssertionError("the reader asked for more after the end: it would hang")

    while (head := reader.head("GET")) is None:
        more()
    status, _, headers = head
    body = b""
    while (piece := reader.body()) != b"":
        if piece is None:
            more()
        else:
            body += piece
    assert reader.complete
    return status, headers, body


@SETTINGS
@given(st.data())
def test_any_well_formed_response_in_any_pieces_reads_back_as_sent(data: st.DataObject) -> None:
    wire, status, headers, body, must_end = data.draw(responses())
    cut = _pieces(data.draw, wire)
    got_status, got_headers, got_body = _read(cut, must_end)
    assert got_status == status
    assert got_body == body
    framing_names = {b"content-length", b"transfer-encoding"}
    assert [h for h in got_headers if h[0].lower() not in framing_names] == headers


@SETTINGS
@given(st.binary(max_size=400), st.data())
def test_any_bytes_give_a_response_or_a_transport_error(raw: bytes, data: st.DataObject) -> None:
    prefix = data.draw(
        st.sampled_from(
            [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
        )
    )
    with contextlib.suppress(httpx.RemoteProtocolError, httpx.ReadError):
        _read(_pieces(data.draw, prefix + raw), True)
