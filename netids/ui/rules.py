"""The Rules page (``/rules``) and the "Mark as expected" dialog the event detail opens.

A rule is written from an event, prefilled with its source, destination, port and kind; each
field may be widened (a subnet, or empty for any) before saving. The page lists the rules with
what each has suppressed (events, packets, last time) and removes them. Every value is shown
as text (labels), never as HTML: addresses and kinds come from packets. Changing rules is for
admins; the login gate keeps signed-out users off the page (``netids.ui.gate``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from nicegui import run, ui

from netids.controller import Controller
from netids.store.rules import Rule, RuleError, add_rule, list_rules, remove_rule
from netids.store.tables import SuppressionRule
from netids.ui.frame import admin_only, require_admin
from netids.ui.gate import current_auth


def mark_expected(controller: Controller, record: dict[str, Any]) -> None:
    """Open the dialog that writes a rule prefilled from an event's export record."""
    port = record.get("dest_port")
    with ui.dialog() as d, ui.card().classes("w-[520px]").mark("rule-dialog"):
        ui.label("Mark as expected").classes("text-lg font-semibold")
        ui.label("Events like this are no longer stored or shown; the rule counts them. "
                 "Widen a field to a subnet (10.0.0.0/24), or empty it for any.") \
            .classes("text-sm opacity-70")
        src = ui.input("Source (address, CIDR, empty: any)",
                       value=record.get("src_ip") or "").classes("w-full").mark("rule-src")
        dst = ui.input("Destination (address, CIDR, empty: any)",
                       value=record.get("dest_ip") or "").classes("w-full").mark("rule-dst")
        dport = ui.input("Destination port (empty: any)",
                         value="" if port is None else str(port)).classes("w-full") \
            .mark("rule-port")
        kind = ui.input("Kind (empty: any)", value=record.get("kind") or "") \
            .classes("w-full").mark("rule-kind")
        days = ui.input("Expires after days (empty: never)", value="").classes("w-full") \
            .mark("rule-days")
        note = ui.input("Note", value="").classes("w-full").mark("rule-note")

        async def save() -> None:
            if not require_admin():
                return
            try:
                rule = Rule(src=src.value, dst=dst.value, dst_port=_number(dport.value, "port"),
                            kind=kind.value.strip(), note=note.value, created_by=_user(),
                            expires=_expiry(days.value))
                await run.io_bound(_store, controller, rule)
            except (RuleError, OSError) as exc:
                ui.notify(str(exc), type="warning")
                return
            except Exception as exc:  # noqa: BLE001 - database trouble is one notification
                ui.notify(f"Cannot save the rule: {str(exc).splitlines()[0]}", type="negative")
                return
            ui.notify(f"Rule saved: {rule.summary}", type="positive")
            d.close()

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=d.close).props("flat").mark("rule-cancel")
            admin_only(ui.button("Save rule", icon="check", on_click=save).mark("rule-save"))
    d.on("hide", d.delete)
    d.open()


def page(controller: Controller) -> None:
    """Every rule with its counts and a remove button."""
    ui.label("Rules: events marked as expected").classes("text-xl font-semibold")
    ui.label("Events a rule covers are not stored, shown or sent to the EVE file; each rule "
             "counts them. Remove a rule to see such events again.").classes("opacity-70")
    box = ui.column().classes("w-full gap-1").mark("rules-list")

    async def refresh() -> None:
        try:
            rows = await run.io_bound(_rows, controller)
        except Exception as exc:  # noqa: BLE001 - shown, the page stays
            rows = []
            ui.notify(f"Cannot read the rules: {str(exc).splitlines()[0]}", type="negative")
        box.clear()
        with box:
            if not rows:
                ui.label("No rules yet: open an event and press Mark as expected.") \
                    .mark("rules-empty")
            for row in rows:
                _rule_row(row, controller, refresh)

    ui.timer(0.0, refresh, once=True)


def _rule_row(row: SuppressionRule, controller: Controller, refresh: Any) -> None:
    async def remove() -> None:
        if not require_admin():
            return
        await run.io_bound(_remove, controller, row.id or 0)
        ui.notify("Rule removed", type="info")
        await refresh()

    rule = Rule(src=row.src, dst=row.dst, dst_port=row.dst_port, kind=row.kind)
    last = "never" if row.last_hit is None else _when(row.last_hit)
    expires = "" if row.expires is None else f", expires {_when(row.expires)}"
    with ui.card().classes("w-full").mark(f"rule-{row.id}"), \
            ui.row().classes("w-full items-center"):
        with ui.column().classes("gap-0"):
            ui.label(rule.summary).classes("font-semibold").mark("rule-summary")
            ui.label(f"suppressed {row.events:,} events, {row.packets:,} packets, last "
                     f"{last}{expires}").classes("text-sm").mark("rule-counts")
            ui.label(f"{row.note} (by {row.created_by or 'unknown'}, "
                     f"{_when(row.created_at)})").classes("text-sm opacity-70")
        ui.space()
        admin_only(ui.button("Remove", icon="delete", on_click=remove)
                   .props("outline color=negative").mark(f"rule-remove-{row.id}"))


def _store(controller: Controller, rule: Rule) -> None:
    if not controller.has_database():
        raise OSError("rules need the database, and it is not open")
    with controller.session() as session:
        add_rule(rule, session=session)


def _rows(controller: Controller) -> list[SuppressionRule]:
    if not controller.has_database():
        return []
    with controller.session() as session:
        return list_rules(session=session)


def _remove(controller: Controller, rule_id: int) -> None:
    with controller.session() as session:
        remove_rule(rule_id, session=session)


def _number(text: str, name: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise RuleError(f"{name} {text[:16]!r} is not a number")
    return int(text)


def _expiry(text: str) -> float | None:
    days = _number(text, "days")
    return None if days is None else time.time() + days * 86400.0


def _user() -> str:
    auth = current_auth()
    record = auth.session() if auth is not None else None
    return record.user if record is not None else ""


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
