"""The slot book: reservations, give-backs, epochs, lateness and the adaptive rate, no loop."""

from __future__ import annotations

import threading

import pytest

from edges_async._slot_book import Slot, SlotBook

pytestmark = pytest.mark.looptime(False)  # no event loop at all: every time is passed in


def book(per_minute: float = 60, headroom: float = 1.0, **kwargs: float) -> SlotBook:
    """A book pacing at one request per second by default (interval 1 s)."""
    return SlotBook(per_minute, per_minute / 60, headroom=headroom, **kwargs)


def test_slots_go_out_in_order_one_interval_apart() -> None:
    """Callers asking at the same moment get consecutive slots, FIFO."""
    slots = book()
    assert [slots.reserve(10.0) for _ in range(4)] == [
        Slot(10.0, 0),
        Slot(11.0, 0),
        Slot(12.0, 0),
        Slot(13.0, 0),
    ]


def test_the_tighter_cap_sets_the_interval() -> None:
    """The stream respects min(per minute, per second * 60), times the headroom."""
    slots = SlotBook(600, 5, headroom=0.5)  # 300/min binds, at half: 150/min
    assert slots.nominal_rate == 300
    assert slots.current_rate == 150
    assert slots.interval == pytest.approx(0.4)


def test_no_burst_after_an_idle_spell() -> None:
    """After idling, one caller goes at once and the next waits a full interval."""
    slots = book()
    slots.reserve(0.0)
    assert slots.reserve(100.0) == Slot(100.0, 0)
    assert slots.reserve(100.0) == Slot(101.0, 0)
    assert slots.reserve(100.5) == Slot(102.0, 0)


def test_the_last_slot_given_back_goes_to_the_next_caller() -> None:
    """Releasing the latest reservation rolls the stream back: nothing is lost."""
    slots = book()
    first, second = slots.reserve(0.0), slots.reserve(0.0)
    slots.release(second)
    assert slots.reserve(0.2) == second
    assert slots.reserve(0.2) == Slot(2.0, 0)
    del first


def test_a_middle_slot_given_back_is_reused_while_in_the_future() -> None:
    """An earlier slot given back goes to the next caller, before the stream's next one."""
    slots = book()
    _, middle, _ = slots.reserve(0.0), slots.reserve(0.0), slots.reserve(0.0)
    slots.release(middle)
    assert slots.reserve(0.5) == middle
    assert slots.reserve(0.5) == Slot(3.0, 0)


def test_a_slot_given_back_too_late_is_not_reused() -> None:
    """A given-back slot already in the past would bunch with the next one: dropped."""
    slots = book()
    _, middle, _ = slots.reserve(0.0), slots.reserve(0.0), slots.reserve(0.0)
    slots.release(middle)
    assert slots.reserve(1.5) == Slot(3.0, 0)


def test_giving_back_several_slots() -> None:
    """Two slots given back, the last then a middle one, are both reused, earliest first."""
    slots = book()
    reserved = [slots.reserve(0.0) for _ in range(4)]  # 0, 1, 2, 3
    slots.release(reserved[3])
    slots.release(reserved[1])
    assert [slots.reserve(0.5) for _ in range(3)] == [Slot(1.0, 0), Slot(3.0, 0), Slot(4.0, 0)]


def test_a_slot_is_admitted_on_time_not_late() -> None:
    """A caller woken within the lateness tolerance uses its slot; later, it must ask again."""
    slots = book()
    slot = slots.reserve(0.0)
    slot = slots.reserve(0.0)
    assert slots.admits(slot, 1.0)
    assert slots.admits(slot, 1.0 + slots.lateness)
    assert not slots.admits(slot, 1.0 + slots.lateness + 1e-3)


def test_lateness_is_half_the_slack_at_least_20_ms() -> None:
    """Trial (2 s nominal, 2.105 s paced) tolerates ~53 ms; Titanium's tiny slack gets 20 ms."""
    trial = SlotBook(30, 0.5, headroom=0.95)
    assert trial.lateness == pytest.approx((60 / 28.5 - 2.0) / 2)
    titanium = SlotBook(600, 10, headroom=0.95)
    assert titanium.lateness == pytest.approx(0.02)
    assert SlotBook(600, 10, headroom=1.0).lateness == pytest.approx(0.02)


def test_a_429_voids_older_slots_and_pauses() -> None:
    """A 429 bumps the epoch: sleepers ask again, and get slots after the pause."""
    slots = book()
    held = [slots.reserve(0.0) for _ in range(5)]
    assert slots.refused(0.5, 10.0) == pytest.approx(10.0)
    assert slots.epoch == 1
    assert not any(slots.admits(slot, slot.at) for slot in held)
    slots.release(held[-1])  # void: changes nothing
    again = slots.reserve(1.0)
    assert again == Slot(10.5, 1)
    assert slots.reserve(1.0).at == pytest.approx(10.5 + 1 / 0.75)
    assert slots.admits(again, 10.5)
    assert not slots.admits(Slot(10.0, 1), 10.0)  # before the pause ends


def test_a_429_during_a_pause_extends_it_without_stepping_down_again() -> None:
    """Requests in flight with the refused one say nothing new: one step per pause."""
    slots = book()
    slots.refused(0.0, 5.0)
    slots.refused(1.0, 2.0)  # inside the pause, shorter: no change
    assert slots.epoch == 1
    assert slots.paused_until == 5.0
    slots.refused(2.0, 10.0)  # inside the pause, longer: extended, void slots again
    assert slots.epoch == 2
    assert slots.paused_until == 12.0
    assert slots.current_rate == pytest.approx(60 * 0.75)
    assert slots.rate_limited == 3
    slots.refused(20.0, 1.0)  # a new pause: a new step
    assert slots.current_rate == pytest.approx(60 * 0.75 * 0.75)


def test_retry_after_absent_or_huge() -> None:
    """Without Retry-After the pause is 60 s; a longer one is capped at 120 s."""
    slots = book()
    assert slots.refused(0.0, None) == 60.0
    assert book().refused(0.0, 600.0) == 120.0


def test_the_factor_never_falls_below_a_quarter() -> None:
    """Step after step, the rate stays at least a quarter of the plan's."""
    slots = book()
    for moment in range(0, 1000, 100):
        slots.refused(float(moment), 1.0)
    assert slots.current_rate == pytest.approx(60 * 0.25)


def test_successes_recover_fast_to_90_percent_then_probe() -> None:
    """+0.02 per success up to 0.9 of the refused factor, then +5 % of the plan per minute."""
    slots = book()
    slots.refused(0.0, 1.0)  # factor 0.75
    slots.succeeded(1.0)
    assert slots.current_rate == pytest.approx(60 * 0.77)
    for moment in range(2, 9):  # 0.79, 0.81 ... 0.89, then capped at 0.9
        slots.succeeded(float(moment))
    assert slots.current_rate == pytest.approx(60 * 0.9)
    slots.succeeded(68.0)  # 60 s after the previous success: +5 %
    assert slots.current_rate == pytest.approx(60 * 0.95)
    slots.succeeded(1000.0)
    assert slots.current_rate == pytest.approx(60)


def test_remaining_below_our_own_traffic_makes_room() -> None:
    """X-RateLimit-Remaining lower than our grants explain shrinks our share, then restores it."""
    slots = book(per_minute=150)
    for moment in range(10):
        slots.note_grant(float(moment))
    slots.remaining("100", 10.0)  # we explain 140: 40 are someone else's
    assert slots.current_rate == pytest.approx(150 * (110 / 150))
    slots.remaining("garbage", 10.0)
    assert slots.current_rate == pytest.approx(110)
    slots.remaining("139", 11.0)  # within the tolerance of 2
    assert slots.current_rate == pytest.approx(150)
    slots.remaining("150", 100.0)  # our grants are more than a minute old
    assert slots.current_rate == pytest.approx(150)


def test_snapshot_counts_and_pause() -> None:
    """The snapshot has the counters, the rates, and the pause only while it lasts."""
    slots = book(headroom=0.5)
    slots.note_grant(1.0)
    slots.note_wait(0.25)
    slots.note_wait(0.5)
    slots.refused(2.0, 3.0)
    paused = slots.snapshot(3.0)
    assert (paused.granted, paused.waited, paused.rate_limited) == (1, 0.75, 1)
    assert paused.current_rate == pytest.approx(22.5)
    assert paused.nominal_rate == 60
    assert paused.paused_until == 5.0
    assert slots.snapshot(5.0).paused_until is None


def test_scale_sizes_a_book_for_one_of_several_processes() -> None:
    """scale = 1/n paces at plan x headroom / n, and can change later."""
    slots = book(per_minute=600, headroom=0.95, scale=0.25)
    assert slots.current_rate == pytest.approx(600 * 0.95 / 4)
    slots.scale = 0.5
    assert slots.current_rate == pytest.approx(600 * 0.95 / 2)


@pytest.mark.parametrize(
    "kwargs", [{"headroom": 0.0}, {"headroom": 1.5}, {"headroom": 1.0, "scale": 0.0}]
)
def test_bad_fractions_are_refused(kwargs: dict[str, float]) -> None:
    """Headroom and scale must be fractions in (0, 1]."""
    with pytest.raises(ValueError, match="must be in"):
        SlotBook(60, 1, **kwargs)


def test_threads_reserving_at_once_get_distinct_evenly_spaced_slots() -> None:
    """The lock makes reservations from many threads one stream: no slot given twice."""
    slots = book(per_minute=6000)  # 0.01 s apart
    got: list[float] = []
    lock = threading.Lock()

    def reserve_many() -> None:
        for _ in range(500):
            slot = slots.reserve(0.0)
            with lock:
                got.append(slot.at)

    threads = [threading.Thread(target=reserve_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == pytest.approx([index * 0.01 for index in range(4000)])


def test_a_book_for_one_of_n_processes_leaves_the_others_share_alone() -> None:
    """A fallback book (1/4 of the plan): the other three's traffic is not foreign, nor ours
    sent through the shared book before (adopted); only traffic beyond that shrinks it."""
    book = SlotBook(1200, 40, headroom=0.95, scale=0.25)
    full = book.current_rate
    book.adopt_own([float(t) / 5 for t in range(285)])  # 285 of ours in the last minute
    book.remaining("60", 57.0)  # 1200 - 4 x 285: everyone at 95 % of their share
    assert book.current_rate == pytest.approx(full)
    book.remaining("0", 57.0)  # the others counted at their whole share (900): 15 foreign
    assert book.current_rate == pytest.approx(full * (1200 - 15) / 1200)
