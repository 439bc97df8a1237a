"""The tracker keeps ids through the sampling backpressure grants: irregular intervals, gaps, low rates, crowds.

Scenes are synthetic and exact: walkers move at known speeds in pixels per second, sampled at the capture times given;
a detection's box tells which walker it came from, so each test checks that a track's id stays on one walker.
"""

from __future__ import annotations

import math
import random

import msgspec
import pytest
from framewatch.actors.analytics.track import Track
from framewatch.actors.analytics.tracker import Tracker, TrackerConf, TrackUpdate
from framewatch.actors.core.messages import Detection


class Walker(msgspec.Struct, frozen=True):
    """A box moving in a straight line: centre ``(x, y)`` at t = 0, velocity in pixels per second."""

    x: float
    y: float
    vx: float
    vy: float
    w: int = 40
    h: int = 100
    label: str = "person"

    def at(self, t: float, jitter: tuple[float, float, float, float] = (0, 0, 0, 0)) -> Detection:
        cx, cy = self.x + self.vx * t, self.y + self.vy * t
        j1, j2, j3, j4 = jitter
        box = (round(cx - self.w / 2 + j1), round(cy - self.h / 2 + j2),
               round(cx + self.w / 2 + j3), round(cy + self.h / 2 + j4))
        return Detection(self.label, 0.9, box)


def centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2


def times(dts: list[float]) -> list[float]:
    """Capture times from intervals, starting at 100 s (a monotonic clock is not zero at start)."""
    t, out = 100.0, []
    for dt in dts:
        out.append(t)
        t += dt
    return out


def walker_ids(tracker: Tracker, walkers: list[Walker], at: list[float], origin: float | None = None,
               jitter: random.Random | None = None, px: float = 0) -> list[dict[int, int]]:
    """Feed every walker's detection at each time (walkers start at ``origin``, by default the first time); per
    update, walker index -> id of the track holding its box.

    Asserts on the way that each update reports one matched track per walker and nothing else.
    """
    seen = []
    start = at[0] if origin is None else origin
    for t in at:
        dets = [walker.at(t - start, shake(jitter, px)) for walker in walkers]
        update = tracker.update(dets, t)
        assert update.lost == ()
        assert len(update.tracks) == len(walkers) and all(track.matched for track in update.tracks)
        by_box = {tuple(map(float, det.box)): i for i, det in enumerate(dets)}
        assert len(by_box) == len(dets)  # no two walkers share a box: the box names its walker
        seen.append({by_box[track.box]: track.id for track in update.tracks})
    return seen


def shake(rng: random.Random | None, px: float) -> tuple[float, float, float, float]:
    """Each box coordinate moved by up to ``px`` pixels either way."""
    if rng is None:
        return (0, 0, 0, 0)
    return (rng.uniform(-px, px), rng.uniform(-px, px), rng.uniform(-px, px), rng.uniform(-px, px))


def only(update: TrackUpdate) -> Track:
    assert len(update.tracks) == 1, update.tracks
    return update.tracks[0]


def test_walkers_sampled_at_irregular_intervals_keep_their_ids_and_get_their_speed_in_pixels_per_second():
    rng = random.Random(7)
    walkers = [Walker(100, 150, 60, 0), Walker(900, 450, -45, 5), Walker(300, 750, 30, 10)]
    at = times([rng.uniform(0.1, 2.0) for _ in range(30)])
    tracker = Tracker()

    ids = walker_ids(tracker, walkers, at[:-1])
    last = tracker.update([walker.at(at[-1] - at[0]) for walker in walkers], at[-1])

    assert all(update == {0: 1, 1: 2, 2: 3} for update in ids)
    assert [(track.id, track.matched, track.hits) for track in last.tracks] == [(1, True, 30), (2, True, 30),
                                                                                (3, True, 30)]
    for walker, track in zip(walkers, last.tracks):
        # Per second of capture time, not per sample: a frame-counting tracker would be off by the mean interval.
        assert track.velocity == pytest.approx((walker.vx, walker.vy), abs=1.5)


def test_two_people_crossing_paths_keep_their_ids():
    # Walking toward each other 4 px apart vertically, they pass at t = 2.5 s, between two samples (2.3 s, 2.7 s):
    # after it, each stands where the other was, and only the motion model tells them apart.
    walkers = [Walker(100, 300, 80, 0), Walker(500, 304, -80, 0)]
    at = times([0.3, 0.25, 0.4, 0.2, 0.35, 0.3, 0.5, 0.4, 0.3, 0.4, 0.3, 0.35, 0.3, 0.3, 0.3])
    assert [round(t - at[0], 6) for t in at[7:9]] == [2.3, 2.7]
    assert walkers[0].at(2.7).box[0::2] == walkers[1].at(2.3).box[0::2]  # A now where B was, 4 px higher

    ids = walker_ids(Tracker(), walkers, at)

    assert all(update == {0: 1, 1: 2} for update in ids)


def test_when_one_of_two_people_walking_close_is_missed_the_other_keeps_its_own_detection():
    # The follower (id 1) is hidden behind the leader for a sample; the leader's detection is inside both gates. The
    # assignment is solved as a whole: the leader keeps it, and the follower coasts instead of taking it over.
    follower, leader = Walker(100, 300, 120, 0), Walker(150, 300, 120, 0)
    at = times([0.2] * 8)
    tracker = Tracker()
    for t in at[:4]:
        tracker.update([follower.at(t - at[0]), leader.at(t - at[0])], t)

    hidden = tracker.update([leader.at(at[4] - at[0])], at[4])
    assert [(track.id, track.matched) for track in hidden.tracks] == [(1, False), (2, True)]
    assert hidden.tracks[1].box == tuple(map(float, leader.at(at[4] - at[0]).box))

    assert walker_ids(tracker, [follower, leader], at[5:], origin=at[0]) == [{0: 1, 1: 2}] * 3


@pytest.mark.parametrize(("dt", "missed"), [(0.1, 1), (0.1, 2), (0.5, 1), (0.5, 2)])
def test_a_person_missed_in_one_or_two_samples_coasts_on_the_prediction_and_keeps_the_id(dt, missed):
    walker = Walker(100, 300, 100, 0)
    at = times([dt] * 12)
    tracker = Tracker()
    for t in at[:6]:
        assert only(tracker.update([walker.at(t - at[0])], t)).id == 1

    for t in at[6:6 + missed]:
        coasting = only(tracker.update([], t))
        assert coasting.id == 1 and not coasting.matched and coasting.hits == 6
        # The box moved on with the walker (prediction), it was not left where it was last seen.
        assert centre(coasting.box) == pytest.approx(centre(tuple(map(float, walker.at(t - at[0]).box))), abs=8)

    for t in at[6 + missed:]:
        track = only(tracker.update([walker.at(t - at[0])], t))
        assert track.id == 1 and track.matched
    assert track.hits == 12 - missed


def test_a_track_unseen_longer_than_max_age_is_dropped_reported_lost_once_and_a_new_detection_there_is_a_new_track():
    here = Walker(200, 300, 0, 0).at(0)
    tracker = Tracker(TrackerConf(max_age_sec=2.0))
    for t in (10.0, 10.5, 11.0):
        tracker.update([here], t)

    coasting = tracker.update([], 12.9)  # 1.9 s unseen: still there
    assert [(track.id, track.matched) for track in coasting.tracks] == [(1, False)] and coasting.lost == ()
    gone = tracker.update([], 13.1)  # 2.1 s unseen
    assert gone == TrackUpdate(tracks=(), lost=(1,))
    assert tracker.update([], 13.2) == TrackUpdate(tracks=(), lost=())

    back = only(tracker.update([here], 13.5))
    assert (back.id, back.hits, back.first_seen) == (2, 1, 13.5)


def test_a_label_with_a_lifetime_of_its_own_outlives_max_age_and_the_other_labels_do_not():
    bag, person = Walker(200, 300, 0, 0, w=40, h=50, label="backpack").at(0), Walker(500, 300, 0, 0).at(0)
    tracker = Tracker(TrackerConf(max_age_sec=5.0, label_max_age_sec={"backpack": 7.0}))
    tracker.update([bag, person], 10.0)

    # At 0.5 fps, two missed samples in a row: the bag is unseen 6 s, still there; the person is lost.
    update = tracker.update([], 16.0)
    assert [(track.id, track.label) for track in update.tracks] == [(1, "backpack")] and update.lost == (2,)
    assert only(tracker.update([bag], 16.0)).id == 1
    assert tracker.update([], 23.1).lost == (1,)  # 7.1 s unseen


def test_a_track_past_max_age_is_dropped_before_matching_so_a_detection_on_its_spot_does_not_revive_it():
    here = Walker(200, 300, 0, 0).at(0)
    tracker = Tracker(TrackerConf(max_age_sec=2.0))
    tracker.update([here], 10.0)

    update = tracker.update([here], 12.5)

    assert update.lost == (1,)
    assert [(track.id, track.first_seen) for track in update.tracks] == [(2, 12.5)]


def test_a_track_matched_exactly_every_max_age_sec_survives_float_rounding_of_the_capture_times():
    walker = Walker(200, 300, 20, 0)
    tracker = Tracker(TrackerConf(max_age_sec=0.2))
    t = 1000.1
    for _ in range(30):
        assert only(tracker.update([walker.at(t)], t)).id == 1
        t += 0.2  # 1000.3 - 1000.1 is not exactly 0.2


def test_labels_never_mix():
    tracker = Tracker()
    person = Walker(200, 300, 50, 0)
    bag = Walker(215, 330, 50, 0, w=30, h=40, label="bag")  # carried: inside the person's box

    first = only(tracker.update([person.at(0)], 10.0))
    swapped = tracker.update([bag.at(0.5)], 10.5)  # only the bag detected, right where the person is
    assert [(track.id, track.label, track.matched) for track in swapped.tracks] == [
        (1, "person", False), (2, "bag", True)]

    for t in (11.0, 11.3, 11.9, 12.2):
        update = tracker.update([bag.at(t - 10), person.at(t - 10)], t)
        assert [(track.id, track.label, track.matched) for track in update.tracks] == [
            (1, "person", True), (2, "bag", True)]
    assert first.label == "person"


def test_time_going_back_raises_and_leaves_the_tracker_as_it_was():
    tracker = Tracker()
    walker = Walker(200, 300, 50, 0)
    tracker.update([walker.at(0)], 5.0)

    with pytest.raises(ValueError) as info:
        tracker.update([walker.at(0.1)], 4.9)
    assert str(info.value) == ("capture time went back from 5.0 to 4.9 s; feed samples in capture order "
                               "(reorder them first), or reset() the tracker after a clock change")
    with pytest.raises(ValueError, match=r"^capture time must be a finite number of seconds, got nan$"):
        tracker.update([], math.nan)

    same_time = only(tracker.update([walker.at(0)], 5.0))  # equal capture times are allowed
    later = only(tracker.update([walker.at(0.5)], 5.5))
    assert (same_time.id, later.id, later.hits) == (1, 1, 3)


@pytest.mark.parametrize("height", [100, 40])
def test_at_two_samples_per_second_a_person_moving_60_px_per_sample_with_a_40_px_wide_box_keeps_the_id(height):
    # 120 px/s: successive boxes never overlap (IoU 0), so only the distance term and the prediction can match them.
    # A second person walks the other way 150 px below, so a loose gate that swapped them would show.
    walkers = [Walker(100, 300, 120, 0, h=height), Walker(1500, 450, -120, 0, h=height)]
    at = times([0.5] * 20)
    a, b = walkers[0].at(0).box, walkers[0].at(0.5).box
    assert b[0] - a[2] >= 20  # the scene is what it claims: 20 px of gap between successive boxes

    ids = walker_ids(Tracker(), walkers, at)

    assert all(update == {0: 1, 1: 2} for update in ids)


def test_twenty_people_with_5_px_jitter_keep_their_ids_over_100_updates():
    # Two rows of ten, 70 px apart in a row, walking opposite ways; boxes 30 x 80, every corner shaken by up to 5 px.
    walkers = [Walker(100 + 70 * i, 200, 20, 0, w=30, h=80) for i in range(10)]
    walkers += [Walker(100 + 70 * i, 300, -20, 0, w=30, h=80) for i in range(10)]
    rng = random.Random(3)
    at = times([rng.uniform(0.1, 1.0) for _ in range(100)])

    ids = walker_ids(Tracker(), walkers, at, jitter=rng, px=5)

    assert all(update == {i: i + 1 for i in range(20)} for update in ids)


def test_a_detection_beyond_the_motion_gate_starts_a_track_instead_of_taking_the_one_nearby():
    tracker = Tracker()
    tracker.update([Walker(100, 300, 0, 0).at(0)], 10.0)

    update = tracker.update([Walker(800, 300, 0, 0).at(0)], 10.1)  # 7 box heights away 0.1 s later

    assert [(track.id, track.matched) for track in update.tracks] == [(1, False), (2, True)]


def test_of_two_detections_as_far_from_the_prediction_the_one_of_the_tracks_size_continues_it():
    tracker = Tracker()
    adult = Walker(300, 300, 0, 0)
    for t in (10.0, 10.2, 10.4):
        tracker.update([adult.at(0)], t)
    child, moved = Walker(285, 300, 0, 0, w=20, h=50), Walker(315, 300, 0, 0)  # both centres 15 px away

    update = tracker.update([child.at(0), moved.at(0)], 10.6)

    assert [(track.id, track.box) for track in update.tracks] == [
        (1, tuple(map(float, moved.at(0).box))), (2, tuple(map(float, child.at(0).box)))]


def test_a_track_unseen_for_long_does_not_take_a_detection_beyond_the_widest_gate():
    conf = TrackerConf(max_age_sec=10.0)
    tracker = Tracker(conf)
    for t in (10.0, 10.5, 11.0):
        tracker.update([Walker(100, 300, 0, 0).at(0)], t)

    # 4 s unseen: 1 + 3 x 4 = 13 sizes uncapped; the gate stops at max_gate_sizes (3), and 5 sizes away is a new
    # person, 2.5 sizes away may still be this one.
    far = tracker.update([Walker(600, 300, 0, 0).at(0)], 15.0)
    assert [(track.id, track.matched) for track in far.tracks] == [(1, False), (2, True)]
    near = tracker.update([Walker(600, 300, 0, 0).at(0), Walker(350, 300, 0, 0).at(0)], 15.5)
    assert [(track.id, track.matched, centre(track.box)) for track in near.tracks] == [
        (1, True, (350.0, 300.0)), (2, True, (600.0, 300.0))]


def test_a_track_whose_person_is_missed_does_not_take_a_newcomer_and_push_its_own_person_onto_another_track():
    # A stands; B walks past 2.2 sizes away. In the sample where B is missed and C appears 1 size from A, pairing
    # A's track with C and B's track with A would match both tracks (each within its gate), at the price of two bad
    # pairs; the solver keeps A with A, lets B's track coast and starts a track for C.
    tracker = Tracker()
    a, b = Walker(600, 300, 0, 0), Walker(450, 300, -110, 0)
    for t in (10.0, 10.5, 11.0, 11.5):
        tracker.update([a.at(0), b.at(t - 10.0)], t)
    c = Walker(650, 200, 0, 0).at(0)

    update = tracker.update([a.at(0), c], 12.0)

    assert [(track.id, track.matched, centre(track.box)) for track in update.tracks] == [
        (1, True, centre(tuple(map(float, a.at(0).box)))), (2, False, pytest.approx((230.0, 300.0), abs=15)),
        (3, True, centre(tuple(map(float, c.box))))]


def test_a_track_coasting_after_its_person_left_does_not_take_the_detection_of_someone_standing_next_to_it():
    # A and B stand 0.6 sizes apart; A leaves the view at 11.0. A's coasting track soon reaches B (its gate widens
    # to 3 sizes), but B's own track, matched a sample ago and right on B, keeps B's detection in every sample: a
    # coasting track's miss costs no more than a fresh one's. (When it cost the track's own gate edge, the ghost took
    # B once its gate had widened, and the two tracks then took B in turn, the staler one each time: B seen twice.)
    tracker = Tracker()
    a, b = Walker(300, 300, 0, 0), Walker(360, 300, 0, 0)
    at = times([0.1] * 35)  # 100.0 .. 103.4
    for t in at[:11]:
        tracker.update([a.at(0), b.at(0)], t)

    updates = [tracker.update([b.at(0)], t) for t in at[11:]]

    assert all([(tr.id, tr.matched) for tr in update.tracks] == [(1, False), (2, True)] for update in updates[:19])
    assert [update.lost for update in updates if update.lost] == [(1,)]  # 2 s unseen (max_age_sec): lost
    assert all([(tr.id, tr.matched) for tr in update.tracks] == [(2, True)] for update in updates[20:])


def test_one_bad_match_does_not_fling_the_track():
    conf = TrackerConf()
    tracker = Tracker(conf)
    still, jumped = Walker(300, 300, 0, 0), Walker(380, 300, 0, 0)  # 0.8 box heights aside: inside the gate
    at = times([0.1] * 12)
    for t in at[:10]:
        tracker.update([still.at(0)], t)

    flung = only(tracker.update([jumped.at(0)], at[10]))  # measured: 800 px/s
    assert flung.id == 1
    cap = conf.max_speed_sizes_per_sec * still.h
    speed = math.hypot(*flung.velocity)
    assert 0 < speed <= (1 - math.exp(-0.1 / conf.velocity_tau_sec)) * cap + 1e-6  # capped, then smoothed

    back = only(tracker.update([still.at(0)], at[11]))
    assert (back.id, back.matched) == (1, True)


def test_min_hits_holds_a_track_back_and_a_tentative_track_that_misses_goes_without_being_reported_lost():
    tracker = Tracker(TrackerConf(min_hits=3))
    walker, flicker = Walker(200, 300, 30, 0), Walker(700, 300, 0, 0)

    assert tracker.update([walker.at(0), flicker.at(0)], 10.0).tracks == ()
    assert tracker.update([walker.at(0.2)], 10.2) == TrackUpdate(tracks=(), lost=())  # the flicker is forgotten
    third = tracker.update([walker.at(0.4)], 10.4)
    assert [(track.id, track.hits) for track in third.tracks] == [(1, 3)]
    coasting = only(tracker.update([], 10.6))  # once reported, a track coasts like any other
    assert (coasting.id, coasting.matched) == (1, False)

    late = tracker.update([flicker.at(0)], 10.8)
    assert [track.id for track in late.tracks] == [1]  # the flicker's new track (id 3) is not reported yet


def test_reset_forgets_the_tracks_and_the_clock_but_never_reuses_an_id():
    tracker = Tracker()
    here = Walker(200, 300, 0, 0).at(0)
    tracker.update([here, Walker(600, 300, 0, 0).at(0)], 500.0)

    tracker.reset()
    fresh = only(tracker.update([here], 3.0))  # a new clock after a reconnect

    assert (fresh.id, fresh.hits, fresh.first_seen) == (3, 1, 3.0)


@pytest.mark.parametrize(("conf", "error"), [
    ({"max_age_sec": 0}, "Expected `float` > 0.0 - at `$.max_age_sec`"),
    ({"label_max_age_sec": {"backpack": 0}}, "Expected `float` > 0.0 - at `$.label_max_age_sec[...]`"),
    ({"min_hits": 0}, "Expected `int` >= 1 - at `$.min_hits`"),
    ({"iou_weight": 1.5}, "Expected `float` <= 1.0 - at `$.iou_weight`"),
    ({"iou_min": 0.1}, "Object contains unknown field `iou_min`"),
    ({"max_gate_sizes": 0}, "Expected `float` > 0.0 - at `$.max_gate_sizes`"),
    ({"gate_sizes": 4}, "max_gate_sizes (3) is below gate_sizes (4): the gate only widens - at `$.max_gate_sizes`"),
])
def test_a_bad_tracker_conf_fails_when_decoded_with_its_key_path(conf, error):
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(conf, TrackerConf)
    assert str(info.value) == error
