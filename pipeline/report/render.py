"""The Jinja environment of the report pages, and how a value is shown in a cell."""
from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


def cell(value: Any) -> str:
    """A headline value as text: integers with thousands separators, floats to 6 significant digits;
    strings (formatted by the stage where the format matters) as they are."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def template_digest(template: str) -> str:
    """sha256 of ``templates/<template>``: a page depends on its template as on code."""
    import hashlib

    return hashlib.sha256((TEMPLATES / template).read_bytes()).hexdigest()


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` to an HTML string (every value autoescaped)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda x, digits=2: f"{100.0 * float(x):.{digits}f}%"
    env.filters["num"] = lambda x: f"{int(x):,}"
    env.filters["cell"] = cell
    return env.get_template(template).render(**context)
