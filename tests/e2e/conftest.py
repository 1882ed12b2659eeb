"""Session-wide real SLURM clusters for the end-to-end tests (scripts/slurm-dev.sh).

`dbd_cluster`: one node, slurmdbd + MariaDB accounting (full sacct).
`filetxt_cluster`: two nodes, no accounting database (jobcomp file only).
`small_array_cluster`: one node, slurmdbd accounting, MaxArraySize=10 (runs past it are chunked).
Each is started once per test session in a temporary folder on free ports and
stopped by pid at the end; a session that needs neither never starts them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster import Cluster, bring_up


@pytest.fixture(scope="session")
def dbd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from bring_up(tmp_path_factory.mktemp("slurm-dbd"), "--accounting", "dbd")


@pytest.fixture(scope="session")
def filetxt_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from bring_up(tmp_path_factory.mktemp("slurm-filetxt"), "--accounting", "filetxt", "--nodes", "2")


@pytest.fixture(scope="session")
def small_array_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from bring_up(tmp_path_factory.mktemp("slurm-small-array"), "--accounting", "dbd", "--max-array-size", "10")
