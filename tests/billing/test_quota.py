"""Exact quota: never more than the limit, never a refusal while room remains."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from billing.models import Usage
from billing.services import get_workspace_limits, limits_of, quota_state, reserve_quota
from workspaces.services import create_workspace


@pytest.fixture
def limited(db):
    """A Free workspace whose contract allows 10 events a month."""
    return create_workspace("Tiny", "free", event_limit=10)


def reserve(workspace, n: int, now=None) -> int:
    with transaction.atomic():
        return reserve_quota(limits_of(workspace), n, now).granted


def used(workspace) -> int:
    return sum(Usage.objects.filter(workspace=workspace).values_list("events", flat=True))


def test_everything_fits_and_is_granted(limited):
    assert reserve(limited, 4) == 4
    assert reserve(limited, 6) == 6
    assert used(limited) == 10


def test_only_the_room_left_is_granted(limited):
    assert reserve(limited, 7) == 7
    assert reserve(limited, 5) == 3
    assert used(limited) == 10


def test_nothing_is_granted_when_full(limited):
    assert reserve(limited, 10) == 10
    assert reserve(limited, 1) == 0
    state = quota_state(limits_of(limited))
    assert (state.limit, state.used, state.remaining) == (10, 10, 0)
    assert used(limited) == 10


def test_asking_for_nothing_reserves_nothing(limited):
    assert reserve(limited, 0) == 0
    assert used(limited) == 0


def test_a_new_billing_period_starts_from_zero(limited):
    assert reserve(limited, 10) == 10
    _, end = limits_of(limited).period()
    assert reserve(limited, 4, now=end) == 4
    assert reserve(limited, 1) == 0
    periods = list(Usage.objects.filter(workspace=limited).order_by("period_start")
                   .values_list("events", flat=True))
    assert periods == [10, 4]


def test_the_override_replaces_the_plans_limit(db):
    workspace = create_workspace("Contract", "free", event_limit=25_000)
    assert get_workspace_limits(workspace.pk).monthly_event_limit == 25_000
    assert reserve(workspace, 20_000) == 20_000  # past Free's 10,000
    assert reserve(workspace, 6_000) == 5_000


def test_the_plans_limit_applies_without_an_override(db):
    workspace = create_workspace("Plain", "free")
    assert reserve(workspace, 10_001) == 10_000


@pytest.mark.django_db(transaction=True)
def test_a_reservation_outside_a_transaction_is_refused():
    workspace = create_workspace("Loose", "free")
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        reserve_quota(limits_of(workspace), 1)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_returns_its_reservation():
    workspace = create_workspace("Rollback", "free", event_limit=5)
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        assert reserve_quota(limits_of(workspace), 5).granted == 5
        1 / 0  # noqa: B018 - the store failed after the reservation
    assert used(workspace) == 0
    assert reserve(workspace, 5) == 5


def race(workspace, requests: list[int]) -> list[int]:
    """Each request reserves in its own thread, connection and transaction, all at once."""
    limits = limits_of(workspace)
    start = threading.Barrier(len(requests))
    granted = [0] * len(requests)
    errors: list[BaseException] = []

    def worker(index: int, n: int) -> None:
        try:
            start.wait()
            with transaction.atomic():
                granted[index] = reserve_quota(limits, n).granted
        except BaseException as error:  # reported below, never swallowed
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, n)) for i, n in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return granted


def assert_exact_under_concurrency(limit: int) -> None:
    workspace = create_workspace("Race", "free", event_limit=limit)
    rng = random.Random(limit)
    requests = [rng.randint(1, 6) for _ in range(16)]
    granted = race(workspace, requests)
    assert sum(granted) == min(limit, sum(requests))
    assert all(0 <= g <= n for g, n in zip(granted, requests, strict=True))
    assert used(workspace) == sum(granted)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit", [20, 1000])
def test_concurrent_reservations_never_exceed_nor_waste_the_limit(limit):
    assert_exact_under_concurrency(limit)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("limit", [7, 20, 50])
def test_concurrent_reservations_are_exact_on_postgresql(limit):
    assert connection.vendor == "postgresql"
    for _ in range(3):  # fresh workspaces, so the first-reservation path races too
        assert_exact_under_concurrency(limit)


@pytest.mark.django_db(transaction=True)
def test_reservations_in_a_new_period_race_to_create_one_counter():
    workspace = create_workspace("Rollover", "free", event_limit=12)
    _, end = limits_of(workspace).period()
    later = end + timedelta(seconds=1)
    limits = limits_of(workspace)
    barrier = threading.Barrier(8)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait()
            with transaction.atomic():
                got = reserve_quota(limits, 3, later).granted
            with lock:
                granted.append(got)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(granted) == 12 and len(granted) == 8
    assert Usage.objects.filter(workspace=workspace).count() == 1
    assert Usage.objects.get(workspace=workspace).period_start > timezone.now()
