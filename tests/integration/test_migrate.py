"""The migration runner: idempotent, and refuses an edited applied migration by name."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from pipeline.dev.layout import DevLayout
from pipeline.errors import MigrationError
from pipeline.migrate import MIGRATIONS_DIR, migrate
from tests.integration.conftest import create_database, drop_database

pytestmark = pytest.mark.integration


def test_migrate_twice_is_a_noop_and_an_edit_is_refused(
    dev_layout: DevLayout, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    name = f"test_{uuid.uuid4().hex[:12]}"
    dsn = create_database(dev_layout, name, migrated=False)
    try:
        first = migrate(dsn, folder)
        assert first == [p.stem for p in sorted(folder.glob("*.sql"))]
        assert migrate(dsn, folder) == []
        edited = sorted(folder.glob("*.sql"))[0]
        edited.write_text(edited.read_text() + "\n-- an innocent-looking edit\n")
        with pytest.raises(MigrationError, match=edited.stem):
            migrate(dsn, folder)
    finally:
        drop_database(dev_layout, name)
