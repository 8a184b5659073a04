"""How a table is shown on the report pages: one header row, missing values marked, each fact once."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

WIDE_TABLE_COLUMNS = 8  # a table with more columns than this spans the page
MISSING = "–"  # an empty calibration bin has no confidence or accuracy: shown as a dash, never "NaN"


def _is_index_column(name: Any) -> bool:
    return isinstance(name, str) and (name == "index" or name.endswith("_index"))


def merge_equal_index_columns(frame: "pd.DataFrame") -> "pd.DataFrame":
    """``frame`` with index columns (``index``, ``*_index``) that repeat an earlier one row for row shown
    once, under both names ("index = source_index"): the rows of a test set nothing was removed from
    are their own source rows, and two equal columns read as a mistake."""
    keep, names = [], {}
    for column in frame.columns:
        twin = next((k for k in keep if _is_index_column(k) and _is_index_column(column)
                     and frame[k].equals(frame[column])), None)
        if twin is None:
            keep.append(column)
        else:
            names[twin] = f"{names.get(twin, twin)} = {column}"
    return frame[keep].rename(columns=names) if names else frame


def table_html(frame: "pd.DataFrame", text: bool = False) -> str:
    """A DataFrame as an HTML table that scrolls inside its section when wide.

    The index is shown only when it means something (named, or not 0..n-1); a named index
    becomes ordinary leading columns, so the header is one row. Missing values (an empty
    calibration bin) show as :data:`MISSING`, not "NaN"; equal index columns show once. A ``text``
    table (names, hashes, dates) is aligned left throughout; others align numbers right.
    """
    import pandas as pd

    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    named = all(name is not None for name in frame.index.names)
    show_index = named or not isinstance(frame.index, pd.RangeIndex)
    if named and not set(frame.index.names) & set(frame.columns):
        # a crosstab names its column axis too ("label" over the digits): pandas would give that name a
        # header row of its own; the table's title says what the columns are
        frame, show_index = frame.rename_axis(columns=None).reset_index(), False
    if not show_index:
        frame = merge_equal_index_columns(frame)
    html = frame.to_html(classes="data text" if text else "data", float_format=lambda v: f"{v:.4g}", border=0,
                         na_rep=MISSING, index=show_index)
    return f'<div class="table-wrap">{html}</div>'


def table_block(frame: "pd.DataFrame", title: str, wide: bool | None = None, text: bool = False) -> dict[str, Any]:
    """A table of a page section: {"title", "html", "wide"}; a wide one spans the section (by default
    when it has more than :data:`WIDE_TABLE_COLUMNS` columns); ``text`` as :func:`table_html`."""
    if wide is None:
        wide = frame.shape[1] + frame.index.nlevels > WIDE_TABLE_COLUMNS
    return {"title": title, "html": table_html(frame, text), "wide": wide}
