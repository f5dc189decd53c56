"""Packaging: ``pip install chargetracker`` alone gives the embedded product (API and
dashboard); extras only add the scale-out parts; ``[server]`` still resolves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=\[;! ]", s, maxsplit=1)[0].lower() for s in specs}


def test_the_embedded_product_is_in_the_base_install() -> None:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = _names(project["dependencies"])
    for name in ("fastapi", "uvicorn", "dash", "dash-ag-grid", "plotly", "python-multipart",
                 "prometheus-client", "pydantic", "duckdb", "polars"):
        assert name in base, name
    extras = project["optional-dependencies"]
    assert extras["server"] == []  # compat: old commands keep working
    scale = _names(extras["scale"])
    assert {"psycopg", "confluent-kafka", "pyspark"} <= scale
    assert not scale & {"fastapi", "uvicorn", "dash", "plotly"}


def test_every_module_of_the_embedded_product_imports() -> None:
    import chargetracker.api.app  # noqa: F401
    import chargetracker.api.server  # noqa: F401
    import chargetracker.dashboard  # noqa: F401
    import chargetracker.logs  # noqa: F401
