"""The `migrator` fixture: data migrations tested on real migrations.

`migrate(targets)` moves the test database to `targets` (a list of
`(app, migration)` pairs) and answers the historical apps at that point; when
the test ends, the database is migrated back to the latest state.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.fixture
def migrator(transactional_db):
    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    yield migrate
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
