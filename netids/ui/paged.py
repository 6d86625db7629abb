"""What the history page's two views share: a filter read from the page, a page of rows
queried, sorted and counted by the database in ``run.io_bound``, paging, and export of
everything the filter matches. A view says what it queries, shows and exports.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

from nicegui import events, run, ui

from netids.controller import Controller
from netids.store.queries import address_range

log = logging.getLogger(__name__)

PAGE_SIZE = 100


class PagedView(ABC):
    """The commands of a view over stored rows. Subclasses set ``noun`` ("events"), the
    ``grid``, ``default_sort`` and implement ``_read_filter``, ``_query`` (a page object with
    ``total``, or None while the app shuts down), ``_show``, ``_export`` and ``_file_name``."""

    noun = "rows"
    default_sort = "ts"
    page_size = PAGE_SIZE
    grid: ui.aggrid

    def __init__(self, controller: Controller, filter: Any) -> None:
        self.c = controller
        self.offset = 0
        self.sort, self.descending = self.default_sort, True
        self.filter = filter

    async def apply(self) -> None:
        try:
            self.filter = self._read_filter()
        except ValueError as exc:
            ui.notify(str(exc), type="negative")
            return
        self.offset = 0
        await self.reload()

    async def turn(self, step: int) -> None:
        self.offset = max(0, self.offset + step * self.page_size)
        await self.reload()

    async def reload(self) -> None:
        if not self.c.has_database():
            return
        try:
            data = await run.io_bound(self._query)
        except Exception as exc:  # noqa: BLE001 - database trouble is a notification
            log.warning("%s query failed: %s", self.noun, exc)
            ui.notify(f"Cannot read the stored {self.noun}: {exc}", type="negative",
                      multi_line=True)
            return
        if data is None:  # the app is shutting down
            return
        if self.offset and self.offset >= data.total:
            self.offset = max(0, (data.total - 1) // self.page_size * self.page_size)
        self._show(data)

    async def export(self, fmt: str) -> None:
        if not self.c.has_database():
            ui.notify("No database: nothing to export.", type="warning")
            return
        try:
            self.filter = self._read_filter()
            result = await run.io_bound(self._export, fmt)
        except ValueError as exc:
            ui.notify(str(exc), type="negative")
            return
        except Exception as exc:  # noqa: BLE001 - database trouble, in words
            ui.notify(f"Export failed: {exc}", type="negative")
            return
        if result is None:  # the app is shutting down
            return
        content, n = result
        ui.download.content(content, self._file_name(fmt, datetime.now(UTC)
                                                     .strftime("%Y%m%d-%H%M%S")))
        ui.notify(f"Exported {n:,} {self.noun}")

    async def _sort_changed(self, _: events.GenericEventArguments) -> None:
        try:
            state = await self.grid.run_grid_method("getColumnState")
        except TimeoutError:
            return
        columns: list[dict[str, Any]] = state if isinstance(state, list) else []
        chosen = [s for s in columns if s.get("sort")]
        await self.sort_by(chosen[0]["colId"] if chosen else self.default_sort,
                           chosen[0]["sort"] == "desc" if chosen else True)

    async def sort_by(self, column: str, descending: bool) -> None:
        """Order all matching rows by ``column`` and show the first page."""
        if (column, descending) == (self.sort, self.descending):
            return
        self.sort, self.descending, self.offset = column, descending, 0
        await self.reload()

    def _show_sort(self, field_of: dict[str, str] | None = None) -> None:
        """Mark the sorted column in the grid (``field_of``: grid field -> stored column)."""
        for col in self.grid.options["columnDefs"]:
            field = (field_of or {}).get(col["field"], col["field"])
            col["sort"] = ("desc" if self.descending else "asc") if field == self.sort else None

    @abstractmethod
    def _read_filter(self) -> Any:
        """The filter the page's fields say; ValueError in words when one is wrong."""

    @abstractmethod
    def _query(self) -> Any:
        """One page of rows and what goes with them (blocking: run in ``run.io_bound``)."""

    @abstractmethod
    def _show(self, data: Any) -> None:
        """Put a queried page on the screen."""

    @abstractmethod
    def _export(self, fmt: str) -> tuple[bytes, int]:
        """Everything the filter matches as a file's bytes, and how many (blocking)."""

    @abstractmethod
    def _file_name(self, fmt: str, stamp: str) -> str:
        """The downloaded file's name."""


def parse_time(text: str | None) -> datetime | None:
    """A datetime-local field's value as UTC (None when empty)."""
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a date and time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def address_problem(text: str) -> str | None:
    """What is wrong with an address or CIDR field's value, or None."""
    if not text or not text.strip():
        return None
    try:
        address_range(text)
    except ValueError as exc:
        return str(exc)
    return None
