"""The goals report (benchmarks/goals.py) judges each goal from two runs, the way issue 16 asks.

A goal is met only when it holds in both runs, and a run of an old commit measured later for
comparison must not pass for the newest figure. Every goal names a case and subjects that the
kept history really has: a renamed case would otherwise read as "no run" for good.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.goals import GOALS, Goal, Reading, judge, read, report
from benchmarks.history import HISTORY, commit_time, load

GOAL = Goal("memory sequential, vs node", "memory", "sequential set+get", ("node",), 1.2)


def _run(commit: str, *ratios: tuple[str, float]) -> dict[str, Any]:
    return {
        "commit": commit,
        "load": [0.5],
        "load_after": [0.7],
        "results": [
            {
                "suite": "memory",
                "case": "sequential set+get",
                "subject": subject,
                "ours_ratio": ratio,
                "ours_low": ratio - 0.1,
                "ours_high": ratio + 0.1,
            }
            for subject, ratio in ratios
        ],
    }


def test_a_goal_is_met_in_both_runs_missed_in_neither_and_mixed_otherwise() -> None:
    def reading(ratio: float) -> Reading:
        return Reading(ratio, None, None, "node")

    assert judge(GOAL, [reading(1.3), reading(1.2)]) == "met"
    assert judge(GOAL, [reading(1.1), reading(0.9)]) == "missed"
    assert judge(GOAL, [reading(1.3), reading(1.1)]) == "mixed"
    assert judge(GOAL, [reading(1.3)]) == "one run"
    assert judge(GOAL, []) == "no run"


def test_of_several_subjects_the_lowest_ratio_counts() -> None:
    goal = Goal("vs the fastest peer", "memory", "sequential set+get", ("a", "b"), 2.0)
    found = read(goal, _run("c", ("a", 7.5), ("b", 3.1), ("other", 0.5)))
    assert found is not None
    assert (found.ratio, found.subject) == (3.1, "b")
    assert str(found) == "3.10x [3.00-3.20]"
    assert read(goal, _run("c", ("other", 1.0))) is None


def test_the_report_pairs_the_newest_run_with_one_of_its_own_commit() -> None:
    # A made-up commit is unknown to git: the order is then the time in the file names.
    runs = [
        (Path("20260101-000000-new-memory.json"), _run("new", ("node", 1.3))),
        (Path("20260102-000000-other-memory.json"), _run("other", ("node", 0.5))),
        (Path("20260103-000000-new-memory.json"), _run("new", ("node", 1.25))),
    ]
    text = report(runs, [GOAL])
    assert "| 1.25x [1.15-1.35] | 1.30x [1.20-1.40] | met |" in text
    assert "20260102-000000-other-memory.json" not in text
    assert "1 met" in text


def test_an_old_commit_measured_later_does_not_count_as_the_newest() -> None:
    made = {"old": 1_000, "new": 2_000}
    runs = [
        (Path("20260101-000000-a-memory.json"), _run("new", ("node", 1.3))),
        (Path("20260101-000001-b-memory.json"), _run("new", ("node", 1.3))),
        (Path("20260102-000000-c-memory.json"), _run("old", ("node", 0.5))),
    ]
    text = report(runs, [GOAL], made=made.__getitem__)
    assert "| 1.30x [1.20-1.40] | 1.30x [1.20-1.40] | met |" in text
    assert "c-memory" not in text


def test_commits_are_dated_by_git() -> None:
    head = load(sorted(HISTORY.glob("*.json"))[-1])["commit"]
    assert commit_time(head) > 1_700_000_000 or commit_time(head) == 0  # 0: a shallow clone
    assert commit_time("0" * 40) == 0


def test_every_goal_is_measured_in_the_kept_history() -> None:
    runs = [load(path) for path in sorted(HISTORY.glob("*.json"))]
    unmeasured = [goal.title for goal in GOALS if all(read(goal, run) is None for run in runs)]
    assert not unmeasured, f"goals that no kept run measures (renamed case?): {unmeasured}"
