"""What is special about fs across processes: two processes writing one store share its
``tmp`` directory, and leave nothing in it. Counters and locks across processes are
tests/test_across_processes.py's, for fs as for every store other processes reach."""

from __future__ import annotations

import json
import os
from pathlib import Path

from drivers.fs import INTERNAL
from tests.processes import children, race


def test_increments_from_two_processes_leave_no_temporary_file(tmp_path: Path) -> None:
    with children(f"file://{tmp_path / 'store'}?sweep_interval=0", 2) as pair:
        counted = [json.loads(got)["values"] for got in race(pair, "count hits 10 10")]
        assert [len(values) for values in counted] == [100, 100]
    assert os.listdir(tmp_path / "store" / INTERNAL / "tmp") == []
