"""Each selected sample's raw input: its kind, where it is, and its bytes.

A sample's input is the dataset's copy (``file``, relative to the root) when it has one,
else its source (``source_url``: reference mode). Copies are read with the dataset's
storage options; a source in the same kind of store as the dataset with them too (as
the Label Studio push does), a source elsewhere with fsspec's defaults (its
environment's credentials). A ``file`` that would leave the dataset's root is refused.

Kinds and paths are worked out on Arrow columns: a Python loop over every sample costs
more than the whole plain load of a Parquet table. Only the rows Arrow cannot settle
(a path to normalise or refuse, a URL with a protocol) take the per-row path, through
the same helpers the push uses (``_dataset/inputs.py``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, get_args

import fsspec

from modzy_retrain._core.concurrency import ordered_map
from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._core.fs import is_local, url_to_fs
from modzy_retrain._dataset.inputs import InputKind, kind_of, safe_relative

from .select import Selection

# Object stores answer one small GET at a time: overlap them. A local disk is read in
# the caller's thread: threads there only add their own cost (measured: 47 us a small
# file with 4 threads, 20 us in one, 9 us with open() instead of fsspec's wrapper).
REMOTE_READERS = 16
# A file or URL's extension, before any query or fragment; what kind_of then judges.
EXTENSION = r"(?P<ext>\.[A-Za-z0-9]{1,10})(?:[?#][^/]*)?$"
# A ``file`` that safe_relative would change or refuse: absolute, a backslash, an empty,
# ``.`` or ``..`` segment, a trailing slash. The others are joined to the root as they are.
UNCLEAN = r"^/|\\|//|(^|/)\.\.?(/|$)|/$"


def check_kind(kind: str | None) -> InputKind | None:
    if kind is not None and kind not in get_args(InputKind):
        raise ConfigurationError(
            f"input_kind: {kind!r} is not one of {', '.join(get_args(InputKind))}"
        )
    return kind  # type: ignore[return-value]


def _kinds(pa: Any, pc: Any, column: Any) -> Any:
    """Each value's kind by its extension (null: none), judged once per extension."""
    ext = pc.utf8_lower(pc.struct_field(pc.extract_regex(column, EXTENSION), [0]))
    seen = [e for e in pc.unique(ext).to_pylist() if e is not None]
    kinds = pa.array([kind_of("input" + e, None) for e in seen], pa.string())
    return pc.take(kinds, pc.index_in(ext, value_set=pa.array(seen, pa.string())))


def model_kind(table: Any, wanted: InputKind | None, selection: Selection) -> InputKind | None:
    """The kind of the model's inputs: ``wanted`` if given, else what the extensions say
    (the copy's, else the source's; ``None`` for a selection without samples).

    Raises:
        DatasetError: The extensions say nothing, or say both (pass ``input_kind``).
    """
    if wanted is not None or table.num_rows == 0:
        return wanted
    import pyarrow as pa
    import pyarrow.compute as pc

    kinds = pc.coalesce(
        _kinds(pa, pc, table.column("file")), _kinds(pa, pc, table.column("source_url"))
    )
    counts = {
        row["values"]: row["counts"] for row in pc.value_counts(kinds).to_pylist()
    }  # null counted under None
    found = sorted(k for k in counts if k is not None)
    if len(found) == 1:
        return found[0]  # type: ignore[no-any-return]
    said = ", ".join(f"{n} {k or 'unknown'}" for k, n in sorted(counts.items(), key=str))
    raise DatasetError(
        f"{selection.where}: the inputs of model {selection.model_id} are not all one kind "
        f"by their extensions ({said}); pass input_kind='image' or 'text'"
    )


@dataclass(frozen=True)
class Inputs:
    """Where each selected sample's raw input is, in the table's order.

    Attributes:
        kind: ``image`` or ``text``.
        paths: Per sample, its input's path in its filesystem (an Arrow string array).
        filesystems: Per sample, that filesystem.
        samples: The samples' ``job_id`` and ``input_name`` columns, for messages.
        where: The dataset (and version), for messages.
    """

    kind: InputKind
    paths: Any
    filesystems: list[Any]
    samples: Any
    where: str

    def __len__(self) -> int:
        return len(self.filesystems)

    @property
    def all_local(self) -> bool:
        distinct = {id(fs): fs for fs in self.filesystems}.values()
        return all(is_local(fs) for fs in distinct)

    def url(self, index: int, path: str | None = None) -> str:
        path = self.paths[index].as_py() if path is None else path
        return str(self.filesystems[index].unstrip_protocol(path))

    def key(self, index: int) -> str:
        row = self.samples.slice(index, 1).to_pylist()[0]
        return f"{row['job_id']}/{row['input_name']}"

    def read(self, index: int, path: str | None = None) -> bytes:
        """One input's bytes.

        Raises:
            DatasetError: It is missing or unreadable (names the sample).
        """
        path = self.paths[index].as_py() if path is None else path
        fs = self.filesystems[index]
        try:
            if is_local(fs):
                with open(path, "rb") as handle:
                    return handle.read()
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            problem = "is missing"
        except (OSError, ValueError) as exc:
            problem = f"cannot be read ({type(exc).__name__}: {exc})"
        raise DatasetError(
            f"{self.where}: the input of sample {self.key(index)} {problem}: "
            f"{self.url(index, path)}"
        )

    def read_all(self) -> Iterator[bytes]:
        """Every input's bytes, in order (from an object store, several at once)."""
        paths = self.paths.to_pylist()
        readers = 1 if self.all_local else REMOTE_READERS
        return ordered_map(lambda i: self.read(i, paths[i]), range(len(paths)), concurrency=readers)

    def text(self, index: int, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(
                f"{self.where}: the input of sample {self.key(index)} is not UTF-8 text: "
                f"{self.url(index)}"
            ) from None


def locate(
    table: Any,
    kind: InputKind,
    selection: Selection,
    storage_options: Mapping[str, Any] | None,
) -> Inputs:
    """Where each sample's input is.

    Raises:
        DatasetError: A sample with neither a copy nor a source, or whose ``file``
            leaves the dataset's root.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    fs, root = url_to_fs(selection.url, storage_options)
    files, sources = table.column("file"), table.column("source_url")
    has_file = pc.fill_null(pc.not_equal(files, ""), False)
    # Copies named as the writer names them (data/ab/<sha256>.png): joined in Arrow.
    plain_file = pc.and_kleene(has_file, pc.invert(pc.match_substring_regex(files, UNCLEAN)))
    # Sources on a local disk, as LineageResolver records them (an absolute path).
    plain_source = pc.and_kleene(
        pc.invert(has_file),
        pc.fill_null(
            pc.and_kleene(
                pc.starts_with(sources, "/"),
                pc.invert(pc.match_substring(sources, "::")),
            ),
            False,
        ),
    )
    joined = pc.binary_join_element_wise(root.rstrip("/") + "/", files, "")
    paths = pc.if_else(plain_file, joined, pc.if_else(plain_source, sources, None))
    if isinstance(paths, pa.ChunkedArray):  # one array: cheaper to index, and to nest
        paths = paths.combine_chunks()
    local = fs if is_local(fs) else fsspec.filesystem("file")
    filesystems: list[Any] = [
        fs if f else local if s else None
        for f, s in zip(plain_file.to_pylist(), plain_source.to_pylist(), strict=True)
    ]
    samples = table.select(["job_id", "input_name"])
    inputs = Inputs(kind, paths, filesystems, samples, selection.where)
    if paths.null_count:
        inputs = _settle(inputs, table, fs, root, selection, storage_options)
    return inputs


def _settle(
    inputs: Inputs,
    table: Any,
    fs: Any,
    root: str,
    selection: Selection,
    storage_options: Mapping[str, Any] | None,
) -> Inputs:
    """The rows Arrow left open, one by one: a path to normalise or refuse, a source
    URL with a protocol, or a sample with no input at all."""
    import pyarrow as pa

    paths = inputs.paths.to_pylist()
    files = table.column("file").to_pylist()
    sources = table.column("source_url").to_pylist()
    protocol = _protocol(selection.url)
    by_protocol: dict[str, Any] = {protocol: fs}
    for i, path in enumerate(paths):
        if path is not None:
            continue
        if files[i]:
            relative = safe_relative(files[i])
            if relative is None:
                raise DatasetError(
                    f"{selection.where}: sample {inputs.key(i)} has a file outside the "
                    f"dataset: {files[i]!r}"
                )
            inputs.filesystems[i], paths[i] = fs, root.rstrip("/") + "/" + relative
        elif sources[i]:
            inputs.filesystems[i], paths[i] = _source(
                sources[i], protocol, storage_options, by_protocol
            )
        else:
            raise DatasetError(
                f"{selection.where}: sample {inputs.key(i)} has neither a copy nor a source URL"
            )
    return Inputs(
        inputs.kind,
        pa.array(paths, pa.string()),
        inputs.filesystems,
        inputs.samples,
        inputs.where,
    )


def _protocol(url: str) -> str:
    return fsspec.core.split_protocol(url)[0] or "file"


def _source(
    url: str,
    dataset_protocol: str,
    storage_options: Mapping[str, Any] | None,
    by_protocol: dict[str, Any],
) -> tuple[Any, str]:
    if "::" in url:  # a chained URL builds its own filesystems
        return url_to_fs(url, storage_options)
    protocol = _protocol(url)
    fs = by_protocol.get(protocol)
    if fs is None:
        options = storage_options if protocol == dataset_protocol else None
        fs, path = url_to_fs(url, options)
        by_protocol[protocol] = fs
        return fs, path
    return fs, str(fs._strip_protocol(url))
