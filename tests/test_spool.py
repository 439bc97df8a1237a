"""The alert spool: a bounded, crash-safe FIFO on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from framewatch.actors.alerts.sinks import encode_alert
from framewatch.actors.alerts.spool import Spool
from framewatch.actors.core.messages import Alert

from tests.servers import make_alert


def alert(seq: int, task_id: str = "cam-01") -> Alert:
    # fixed-width seqs, one image_stored: every alert encodes to the same size
    return make_alert(task_id, 100_000 + seq, image_stored=False)


def seqs(alerts: list[Alert]) -> list[int]:
    return [a.frame_seq - 100_000 for a in alerts]


SIZE = len(encode_alert(alert(0))) + 1  # one spooled line


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def test_alerts_come_back_oldest_first_and_drop_removes_the_oldest(spool_dir: Path) -> None:
    spool = Spool(spool_dir)
    sent = [alert(i) for i in range(7)]
    assert spool.append(sent[:5]) == 0
    assert spool.append(sent[5:]) == 0

    assert len(spool) == 7 and spool.bytes == 7 * SIZE
    assert seqs(spool.peek(3)) == [0, 1, 2]
    assert spool.peek(100) == sent  # every field survives the round trip, the numeric id too
    assert [encode_alert(a) for a in spool.peek(100)] == [encode_alert(a) for a in sent]  # and replays the same bytes

    spool.drop(3)
    assert seqs(spool.peek(100)) == [3, 4, 5, 6]
    assert len(spool) == 4 and spool.bytes == 4 * SIZE
    spool.drop(100)
    assert len(spool) == 0 and spool.bytes == 0 and spool.peek(5) == []
    spool.close()


def test_a_full_spool_drops_the_oldest_alerts_and_says_how_many(spool_dir: Path) -> None:
    spool = Spool(spool_dir, max_bytes=10 * SIZE)
    assert spool.append([alert(i) for i in range(8)]) == 0

    assert spool.append([alert(8), alert(9), alert(10), alert(11)]) == 2

    assert seqs(spool.peek(100)) == list(range(2, 12))
    assert spool.bytes == 10 * SIZE
    assert spool.statistics().dropped_total == 2
    spool.close()


def test_a_batch_larger_than_the_bound_keeps_only_its_newest_alerts(spool_dir: Path) -> None:
    spool = Spool(spool_dir, max_bytes=3 * SIZE)
    spool.append([alert(100)])

    assert spool.append([alert(i) for i in range(5)]) == 3  # 2 of the batch + the one spooled before

    assert seqs(spool.peek(10)) == [2, 3, 4]
    spool.close()


def test_a_new_spool_on_the_same_directory_sees_the_undelivered_alerts_in_order(spool_dir: Path) -> None:
    spool = Spool(spool_dir, segment_bytes=4 * SIZE)  # several segments
    sent = [alert(i) for i in range(20)]
    for start in range(0, 20, 5):
        spool.append(sent[start : start + 5])
    spool.drop(7)
    spool.close()

    reopened = Spool(spool_dir, segment_bytes=4 * SIZE)
    assert seqs(reopened.peek(100)) == list(range(7, 20))
    assert reopened.peek(100) == sent[7:]  # a process that reopens the spool replays the same alerts, ids included
    assert len(reopened) == 13 and reopened.bytes == 13 * SIZE
    reopened.append([alert(20)])
    reopened.drop(2)
    reopened.close()

    again = Spool(spool_dir, segment_bytes=4 * SIZE)
    assert seqs(again.peek(100)) == list(range(9, 21))
    assert again.statistics().segments <= 5  # segments wholly delivered were deleted
    again.close()


def test_a_torn_last_line_is_ignored_and_later_appends_stay_readable(spool_dir: Path) -> None:
    spool = Spool(spool_dir)
    spool.append([alert(0), alert(1)])
    spool.close()
    (segment,) = spool_dir.glob("*.seg")
    with open(segment, "ab") as f:  # a crash in the middle of an append
        f.write(encode_alert(alert(2))[:25])

    reopened = Spool(spool_dir)
    assert seqs(reopened.peek(10)) == [0, 1]
    reopened.append([alert(3)])
    reopened.close()

    assert seqs(Spool(spool_dir).peek(10)) == [0, 1, 3]


def test_a_line_that_does_not_decode_is_skipped_and_counted(spool_dir: Path) -> None:
    spool = Spool(spool_dir)
    spool.append([alert(0)])
    spool.close()
    (segment,) = spool_dir.glob("*.seg")
    with open(segment, "ab") as f:
        f.write(b'{"not": "an alert"}\n')
    Spool(spool_dir).append([alert(1)])  # appended after the bad line

    reopened = Spool(spool_dir)
    assert seqs(reopened.peek(10)) == [0, 1]
    assert reopened.statistics().corrupt_skipped == 1


def test_an_emptied_spool_leaves_no_delivered_segment_behind(spool_dir: Path) -> None:
    spool = Spool(spool_dir, segment_bytes=2 * SIZE)
    spool.append([alert(i) for i in range(9)])
    assert len(list(spool_dir.glob("*.seg"))) == 5

    spool.drop(9)
    assert list(spool_dir.glob("*.seg")) == []
    spool.append([alert(9)])
    spool.close()

    assert seqs(Spool(spool_dir).peek(10)) == [9]
