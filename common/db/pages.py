"""Keyset pagination: one page of an ordered query and whether more rows follow, in one statement.

The table-owning modules compose the query (their own columns, conditions and
cursor); this is the one place that turns it into a page, so every list the
admin API serves pages the same way; `like_contains` is the search pattern
those lists filter by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.db.pool import Database


def keyset_page(
    db: Database,
    select: str,
    where: Sequence[str],
    args: Sequence[Any],
    order_by: str,
    descending: bool,
    limit: int,
    backwards: bool = False,
) -> tuple[list[tuple[Any, ...]], bool]:
    """Rows of `select WHERE where… ORDER BY order_by`, at most `limit`, and whether more follow.

    `where` holds constant SQL fragments only (values go in `args`);
    `order_by` is one or more comma-separated columns, all sorted in the
    one direction `descending` says (the keyset is unique). One row
    beyond `limit` tells `has_more`; a `backwards` page (before a cursor) is
    read in the opposite order and flipped back, so every page lists in the
    same order.
    """
    direction = "DESC" if descending != backwards else "ASC"
    order = ", ".join(f"{column.strip()} {direction}" for column in order_by.split(","))
    condition = " AND ".join(where) or "TRUE"
    rows = db.execute(f"{select} WHERE {condition} ORDER BY {order} LIMIT %s", (*args, limit + 1))
    has_more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    return rows, has_more


def like_contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere (its own wildcards escaped; LIKE's default escape `\\`)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
