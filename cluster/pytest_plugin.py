"""A pytest fixture for users' own tests: `pytest_plugins = ["cluster.pytest_plugin"]`.

    async def test_my_app(spanlite_cluster):
        async with spanlite_cluster.client() as db:
            await db.put(b"k", b"v")

Needs pytest-trio (trio_mode, or mark the test with @pytest.mark.trio).
"""

from __future__ import annotations

import pytest

from cluster.embedded import EmbeddedCluster


@pytest.fixture
async def spanlite_cluster():
    """A 3-node embedded cluster with in-memory stores, torn down after the test."""
    async with EmbeddedCluster(nodes=3) as cluster:
        yield cluster
