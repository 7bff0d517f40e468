"""The lineage settings of ``modzy-retrain build``: templates or queries, checked, and
the stage they make (a model uses the one it is given)."""

from __future__ import annotations

from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._stages.lineage import LineageResolver
from modzy_retrain._stages.sql_lineage import SqlLineageResolver

from .settings import BuildSettings


def template_roots(settings: BuildSettings) -> list[str]:
    """The fixed part of each input template (what is before its first field)."""
    templates = [settings.input_template, *settings.input_templates.values()]
    return [t.split("{", 1)[0] or "." for t in templates if t]


def check_lineage(settings: BuildSettings) -> None:
    """Each model has one way to its inputs: a template or a query, not both.

    Raises:
        ConfigurationError: None at all, a query without a database (or the other
            way), two defaults, or one model given both.
    """
    s = settings
    queries = bool(s.input_query or s.input_queries)
    if s.input_database and not queries:
        raise ConfigurationError("--input-database is read by --input-query: give one")
    if not (s.input_template or s.input_templates or queries):
        raise ConfigurationError(
            "no lineage: give --input-template (per model: MODEL_ID=...) or "
            "--input-query with --input-database"
        )
    if queries and not s.input_database:
        raise ConfigurationError("--input-query needs --input-database (a SQLAlchemy URL)")
    if s.input_template and s.input_query:
        raise ConfigurationError(
            "both a default --input-template and a default --input-query: give one "
            "(per model, MODEL_ID=... of either)"
        )
    both = sorted(set(s.input_templates) & set(s.input_queries))
    if both:
        raise ConfigurationError(f"model {both[0]} has an --input-template and an --input-query")


def lineage_stage(
    settings: BuildSettings, in_options: dict[str, Any]
) -> LineageResolver | SqlLineageResolver:
    """The lineage stage: templates alone, or queries (with the templates of the
    models that have one as their fallback)."""
    templates = None
    if settings.input_template or settings.input_templates:
        templates = LineageResolver(
            settings.input_template,
            templates=settings.input_templates,
            storage_options=in_options,
            max_bytes=settings.max_input_bytes,
        )
    if not (settings.input_query or settings.input_queries):
        assert templates is not None  # check_lineage: templates or queries
        return templates
    return SqlLineageResolver(
        settings.input_database,
        settings.input_query,
        queries=settings.input_queries,
        root=settings.input_root,
        fallback=templates,  # the models given a template use it
        storage_options=in_options,
        max_bytes=settings.max_input_bytes,
        password_env=settings.input_database_password_env,
    )
