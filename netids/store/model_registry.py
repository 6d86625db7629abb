"""Model versions in the database: how the controller lists, records and activates them."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from netids.store.queries import activate_model_version, add_model_version, list_model_versions
from netids.store.tables import ModelVersion


class ModelRegistry:
    """Blocking calls (run them off the event loop). Without a database (``engine`` None)
    nothing is listed or recorded: the app then runs the configured model only."""

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine

    def versions(self) -> list[ModelVersion]:
        """Stored model versions, newest first."""
        if self.engine is None:
            return []
        with Session(self.engine) as session:
            return list_model_versions(session=session)

    def add(self, name: str, path: Path, details: dict | None = None,
            active: bool = False) -> None:
        """Record a version; its metadata is stored as plain JSON types."""
        if self.engine is None:
            return
        with Session(self.engine) as session:
            add_model_version(name, str(path), session=session, activate=active,
                              details=json.loads(json.dumps(details or {}, default=str)))

    def activate(self, name: str) -> None:
        if self.engine is None:
            return
        with Session(self.engine) as session:
            activate_model_version(name, session=session)
