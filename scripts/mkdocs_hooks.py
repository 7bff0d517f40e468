"""MkDocs hooks of the documentation site (mkdocs.yml, `hooks:`).

Two things MkDocs and mkdocstrings do not check, each reported as a warning, so a
strict build (`make test`) fails:

1. Links that leave docs/. The Markdown files are read on GitHub as well as on the
   site, so a page links a repository file by its relative path (``../bench/RESULTS.md``),
   which GitHub follows. ``REPOSITORY_PAGES`` makes such a file a page of the site too,
   and links to it are rewritten to that page; a link to any other file outside docs/
   would break on the site and is a warning.
2. The API reference is complete. Every public name (what ``__all__`` lists in
   ``modzy_retrain`` and in each public subpackage, such as ``modzy_retrain.sandbox``)
   must be rendered by exactly one ``::: package.Name`` line of a page, and must have
   a docstring. A ``:::`` line naming anything else is a warning too. The names and
   docstrings are read with griffe, as mkdocstrings reads them.
"""

from __future__ import annotations

import logging
import posixpath
import re
import sys
from collections import Counter
from pathlib import Path

import griffe
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

# A repository file outside docs/ that the site shows as a page: its path from the
# repository's root, and the page's path on the site. One line each.
REPOSITORY_PAGES = {
    "bench/RESULTS.md": "benchmarks.md",
}

# The packages whose public names the API reference documents (their public
# subpackages are found by walking them).
PACKAGES = ("modzy_retrain",)

log = logging.getLogger("mkdocs.hooks.modzy_retrain")

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)
LINK = re.compile(r"(\]\()([^()\s]+)(\))")
SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:")
AUTODOC = re.compile(r"^:::[ \t]+([\w.]+)", re.M)


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def _docs_prefix(config: MkDocsConfig) -> str:
    return Path(config.docs_dir).resolve().relative_to(_root(config)).as_posix()


# -- 1. pages from outside docs/, and links that leave it -----------------------------


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = _root(config)
    for repo_path, src_uri in REPOSITORY_PAGES.items():
        if files.get_file_from_path(src_uri) is not None:
            log.warning("docs/%s exists and %s would be the same page", src_uri, repo_path)
            continue
        files.append(
            File.generated(config, src_uri, abs_src_path=str(root / repo_path)),
        )
    check_reference(files, config)
    return files


def _repository_path(page: Page, config: MkDocsConfig) -> str:
    """Where the page's Markdown lives in the repository (what its links are relative to)."""
    for repo_path, src_uri in REPOSITORY_PAGES.items():
        if page.file.src_uri == src_uri:
            return repo_path
    return posixpath.join(_docs_prefix(config), page.file.src_uri)


def _prose(markdown: str) -> list[tuple[bool, str]]:
    """The Markdown cut into (is prose, text) pieces: code blocks and spans are not prose."""
    pieces: list[tuple[bool, str]] = []
    at = 0
    for block in FENCE.finditer(markdown):
        pieces.extend(_spans(markdown[at : block.start()]))
        pieces.append((False, block.group(0)))
        at = block.end()
    pieces.extend(_spans(markdown[at:]))
    return pieces


def _spans(text: str) -> list[tuple[bool, str]]:
    pieces: list[tuple[bool, str]] = []
    at = 0
    for span in INLINE_CODE.finditer(text):
        pieces.append((True, text[at : span.start()]))
        pieces.append((False, span.group(0)))
        at = span.end()
    pieces.append((True, text[at:]))
    return pieces


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, **_: object) -> str:
    root = _root(config)
    docs = _docs_prefix(config)
    here = _repository_path(page, config)
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match.group(2)
        if target.startswith(("#", "/")) or SCHEME.match(target):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(here), path))
        if resolved.startswith(docs + "/"):
            on_site = resolved[len(docs) + 1 :]
        elif resolved in REPOSITORY_PAGES:
            on_site = REPOSITORY_PAGES[resolved]
        elif (root / resolved).exists():
            log.warning(
                "%s links to %s, outside %s/, which the site does not have: link a page "
                "inside %s/, or make it a page of the site (REPOSITORY_PAGES in "
                "scripts/mkdocs_hooks.py)",
                here,
                resolved,
                docs,
                docs,
            )
            return match.group(0)
        else:
            log.warning("%s links to %s, which does not exist", here, target)
            return match.group(0)
        new = posixpath.relpath(on_site, page_dir or ".")
        return f"{match.group(1)}{new}{hash_}{anchor}{match.group(3)}"

    return "".join(
        LINK.sub(rewrite, text) if is_prose else text for is_prose, text in _prose(markdown)
    )


# -- 2. the API reference is complete -------------------------------------------------


def public_names(search_paths: list[str]) -> dict[str, griffe.Object | griffe.Alias]:
    """Every public name, by its public path (``modzy_retrain.sandbox.Sandbox``)."""
    loader = griffe.GriffeLoader(search_paths=[*search_paths, *sys.path], docstring_parser="google")
    out: dict[str, griffe.Object | griffe.Alias] = {}
    for package in PACKAGES:
        module = loader.load(package)
        assert isinstance(module, griffe.Module)
        out.update(_exports(module))
    return out


def _exports(module: griffe.Module) -> dict[str, griffe.Object | griffe.Alias]:
    out: dict[str, griffe.Object | griffe.Alias] = {}
    if module.exports is None:
        log.warning("%s is public but declares no __all__", module.path)
    else:
        for export in module.exports:
            name = export if isinstance(export, str) else export.name
            out[f"{module.path}.{name}"] = module[name]
    for name, sub in module.modules.items():
        if not name.startswith("_") and isinstance(sub, griffe.Module):
            out.update(_exports(sub))
    return out


def _docstring(obj: griffe.Object | griffe.Alias) -> str:
    try:
        target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    except griffe.AliasResolutionError:
        return ""
    return target.docstring.value.strip() if target.docstring else ""


def documented_names(files: Files) -> list[str]:
    """Each ``::: identifier`` of the pages, outside code blocks, as often as it occurs."""
    found: list[str] = []
    for file in files.documentation_pages():
        text = file.content_string
        if ":::" in text:
            for is_prose, piece in _prose(text):
                if is_prose:
                    found.extend(AUTODOC.findall(piece))
    return found


def reference_problems(
    public: dict[str, griffe.Object | griffe.Alias], documented: list[str]
) -> list[str]:
    """What keeps the reference from documenting every public name once, with a docstring."""
    problems = []
    counts = Counter(documented)
    for path in sorted(public):
        if counts[path] == 0:
            problems.append(f"{path} is public but no '::: {path}' line documents it")
        elif counts[path] > 1:
            problems.append(f"{path} is documented by {counts[path]} '::: {path}' lines")
        if not _docstring(public[path]):
            problems.append(f"{path} is public but has no docstring")
    for path in sorted(set(counts) - set(public)):
        problems.append(f"'::: {path}' documents no public name (see the packages' __all__)")
    return problems


def check_reference(files: Files, config: MkDocsConfig) -> None:
    for problem in reference_problems(public_names([str(_root(config))]), documented_names(files)):
        log.warning("API reference: %s", problem)
