"""The nemesis' schedule: drawn from the fault kinds table, the same for the same seed, one fault
at a time per slot, all within the duration."""

import pytest

from harness.faults.kinds import KINDS
from harness.nemesis.schedule import MOVES, draw

pytestmark = pytest.mark.harness


def test_the_same_seed_draws_the_same_schedule_and_another_seed_another():
    assert draw(7, 20.0) == draw(7, 20.0)
    assert draw(7, 20.0).ops != draw(8, 20.0).ops


@pytest.mark.parametrize("seed", range(30))
def test_faults_never_overlap_on_one_slot_and_stay_within_the_duration(seed):
    schedule = draw(seed, 20.0)
    assert schedule.ops, "a schedule with no fault proves nothing"
    by_slot = {}
    for op in schedule.ops:
        assert 0 <= op.start < op.end <= 20.0, op
        by_slot.setdefault(op.move.slot, []).append(op)
    for ops in by_slot.values():
        for before, after in zip(ops, ops[1:], strict=False):
            assert before.end <= after.start, (before, after)


def test_every_move_is_a_row_of_the_kinds_table_with_its_parameters():
    for move in MOVES:
        assert move.kind in KINDS, move
        assert set(move.params) <= set(KINDS[move.kind].params), move


def test_the_schedules_draw_every_move_and_overlap_across_slots():
    ops = [op for seed in range(50) for op in draw(seed, 20.0).ops]
    assert {op.move.name for op in ops} == {m.name for m in MOVES}
    overlapping = [
        s
        for s in range(50)
        if any(
            a.move.slot != b.move.slot and a.start < b.end and b.start < a.end
            for a in draw(s, 20.0).ops
            for b in draw(s, 20.0).ops
        )
    ]
    assert len(overlapping) >= 40, overlapping


def test_a_duration_that_is_not_positive_is_refused_by_name():
    with pytest.raises(ValueError, match="duration: expected seconds > 0"):
        draw(1, 0)


def test_a_kept_seed_is_written_and_read_back_and_a_wrong_field_is_named(tmp_path):
    from harness.errors import ConfigurationError
    from harness.nemesis.schedule import keep_regression, load_regressions

    kept = keep_regression(tmp_path, 17, 20.0, ["k: 2 rows"], "python -m harness nemesis --seed 17")
    (back,) = load_regressions(tmp_path)
    assert (back.seed, back.duration, back.source) == (17, 20.0, str(kept))
    kept.write_text("seed: seventeen\nduration: 20\n")
    with pytest.raises(ConfigurationError, match=r"(?s)seed-17.yaml: seed.*'seventeen'.*a whole number"):
        load_regressions(tmp_path)
    kept.write_text("seed: 17\nduration: 0\n")
    with pytest.raises(ConfigurationError, match=r"(?s)duration.*0.*above 0"):
        load_regressions(tmp_path)
