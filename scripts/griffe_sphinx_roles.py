"""A griffe extension for the API reference (mkdocs.yml): the docstrings' Sphinx roles.

The docstrings cite names the reST way (``:class:`RetryPolicy```, ``:meth:`Stage.process```),
which Markdown would show as ``:class:RetryPolicy``. Each role becomes a link to the
name's entry in the reference when the name is public and documented there (the
reference renders members that have a docstring), and plain code otherwise (a private
helper, a method named without its class, another library's name).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|obj|mod):`~?([^`]+)`")
PACKAGE = "modzy_retrain"


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring in the package, once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        public = _public_paths(pkg)
        for obj in _objects(pkg):
            if obj.docstring is not None and ":`" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(
                    lambda m: _markdown(m.group(1), public), obj.docstring.value
                )


def _public_paths(pkg: griffe.Module) -> dict[str, griffe.Object | griffe.Alias]:
    """Each public name (``Sandbox``) to its object, found under its public path."""
    out: dict[str, griffe.Object | griffe.Alias] = {}
    for module in (pkg, *(m for n, m in pkg.modules.items() if not n.startswith("_"))):
        for export in module.exports or ():
            name = export if isinstance(export, str) else export.name
            out.setdefault(name, module[name])
    return out


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _markdown(target: str, public: dict[str, griffe.Object | griffe.Alias]) -> str:
    name = target.removeprefix(f"{PACKAGE}.")
    head, *rest = name.split(".")
    found = public.get(head)
    if found is None:
        return f"`{target}`"
    path = found.path
    try:
        for part in rest:
            if part.startswith("_"):
                return f"`{target}`"
            found = found.final_target if isinstance(found, griffe.Alias) else found
            found = found.members[part]
            path = f"{path}.{part}"
        documented = bool(found.docstring)
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return f"`{target}`"
    return f"[`{target}`][{path}]" if documented else f"`{target}`"
