"""Synthetic shop clickstream: users browsing in sessions through a view/cart/purchase funnel."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np

from sources.generators.base import (
    DEFAULT_EVENT_RATE,
    Draws,
    EventGenerator,
    GeneratorConfigError,
    cumulative,
    epoch_ms,
    format_epoch_ms,
    pick,
)


@dataclass
class _Session:
    user_id: str
    session_id: str
    last_viewed: int = -1
    cart: dict[int, int] = field(default_factory=dict)
    """Carted product index -> quantity, in carting order."""


class AnalyticsGenerator(EventGenerator):
    """Shop events ``{ts, user_id, session_id, event_type, product_id, category, price, quantity}``.

    Callers can rely on: ``ts`` never decreases; on average ``events_per_second``
    events per second of event time (exactly Poisson while ``events_per_second`` is
    between ``1 / MEAN_EVENT_GAP_S`` and ``MAX_SESSIONS / MEAN_EVENT_GAP_S``);
    consecutive events of a session are less than ``MAX_EVENT_GAP`` apart; a user's
    next session starts at least ``SESSION_GAP`` after their previous session's last
    event; every session starts with a view; a purchase is of a product carted
    earlier in the same session, with the carted quantity; product ``pNNNN`` always
    has the same category and price (independent of the seed), and lower numbers
    are more popular (Zipf). ``users`` sizes the pool of returning users; when all
    the users drawn are busy, a new user id beyond the pool is used.
    """

    name: ClassVar[str] = "analytics"
    default_topic: ClassVar[str] = "shop"
    key_field: ClassVar[str] = "user_id"

    SESSION_GAP: ClassVar[timedelta] = timedelta(minutes=30)
    MEAN_EVENT_GAP_S: ClassVar[float] = 30.0
    MAX_EVENT_GAP: ClassVar[timedelta] = timedelta(minutes=10)
    MAX_SESSIONS: ClassVar[int] = 50_000
    CONTINUE_PROBABILITY: ClassVar[float] = 0.92
    CART_PROBABILITY: ClassVar[float] = 0.11
    PURCHASE_PROBABILITY: ClassVar[float] = 0.12
    """Probability of a purchase at an event after the first while the cart is not empty."""
    USER_TRIES: ClassVar[int] = 8
    PRODUCTS: ClassVar[int] = 1000
    ZIPF_EXPONENT: ClassVar[float] = 1.1
    CATALOG_SEED: ClassVar[int] = 20240501
    CATEGORIES: ClassVar[tuple[tuple[str, float], ...]] = (
        ("electronics", 120.0),
        ("books", 15.0),
        ("home", 40.0),
        ("fashion", 35.0),
        ("sports", 50.0),
        ("toys", 25.0),
        ("beauty", 20.0),
        ("grocery", 6.0),
    )
    """Category names with the median price of their products."""

    def __init__(
        self,
        seed: int = 0,
        start: datetime | None = None,
        events_per_second: float = DEFAULT_EVENT_RATE,
        users: int = 100_000,
    ) -> None:
        super().__init__(seed, start, events_per_second)
        if users < 1:
            raise GeneratorConfigError(f"users must be at least 1, got {users!r}")
        self.users = users

    @classmethod
    def catalog(cls) -> list[tuple[str, str, float]]:
        """``(product_id, category, price)`` per product, most popular first; fixed forever."""
        rng = np.random.default_rng(cls.CATALOG_SEED)
        category = rng.integers(0, len(cls.CATEGORIES), cls.PRODUCTS).tolist()
        noise = rng.normal(0.0, 0.6, cls.PRODUCTS).tolist()
        medians = [median for _, median in cls.CATEGORIES]
        return [
            (
                f"p{index:04d}",
                cls.CATEGORIES[c][0],
                max(0.99, round(medians[c] * float(np.exp(z)), 2)),
            )
            for index, (c, z) in enumerate(zip(category, noise, strict=True))
        ]

    def events(self) -> Iterator[dict[str, Any]]:
        """Analytics events forever, in non-decreasing ``ts`` order."""
        return iter(_Simulation(self))


class _Simulation:
    """One run of the session model: concurrent session slots in a heap by next event time."""

    def __init__(self, gen: AnalyticsGenerator) -> None:
        rng = np.random.default_rng(gen.seed)
        slots = min(gen.MAX_SESSIONS, max(1, round(gen.events_per_second * gen.MEAN_EVENT_GAP_S)))
        mean_gap_ms = slots * 1000.0 / gen.events_per_second
        max_gap_ms = gen.MAX_EVENT_GAP / timedelta(milliseconds=1) - 1
        weights = 1.0 / np.arange(1, gen.PRODUCTS + 1) ** gen.ZIPF_EXPONENT
        product_cdf = cumulative(weights)
        self._gen = gen
        self._uniform = Draws(lambda n: rng.random(n).tolist())
        self._gap_ms = Draws(
            lambda n: np.minimum(rng.exponential(mean_gap_ms, n), max_gap_ms).astype(int).tolist()
        )
        self._product = Draws(lambda n: pick(product_cdf, rng.random(n)).tolist())
        self._quantity = Draws(lambda n: rng.integers(1, 4, n).tolist())
        self._user = Draws(lambda n: rng.integers(0, gen.users, n).tolist())
        self._catalog = gen.catalog()
        start_ms = epoch_ms(gen.start)
        self._heap = [(start_ms + self._gap_ms(), slot) for slot in range(slots)]
        heapq.heapify(self._heap)
        self._sessions: list[_Session | None] = [None] * slots
        self._session_count = 0
        self._next_new_user = gen.users
        self._active: set[str] = set()
        self._cooling: set[str] = set()
        self._ended: deque[tuple[int, str]] = deque()
        self._session_gap_ms = gen.SESSION_GAP // timedelta(milliseconds=1)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            now, slot = self._heap[0]
            session = self._sessions[slot] or self._open(now)
            yield self._event(session, now)
            if self._uniform() < self._gen.CONTINUE_PROBABILITY:
                self._sessions[slot] = session
            else:
                self._close(session, now)
                self._sessions[slot] = None
            heapq.heapreplace(self._heap, (now + self._gap_ms(), slot))

    def _open(self, now: int) -> _Session:
        user = self._free_user(now)
        self._active.add(user)
        self._session_count += 1
        return _Session(user, f"{user}-s{self._session_count}")

    def _close(self, session: _Session, now: int) -> None:
        self._active.discard(session.user_id)
        self._cooling.add(session.user_id)
        self._ended.append((now, session.user_id))

    def _free_user(self, now: int) -> str:
        while self._ended and self._ended[0][0] + self._session_gap_ms <= now:
            self._cooling.discard(self._ended.popleft()[1])
        for _ in range(self._gen.USER_TRIES):
            user = f"u{self._user():06d}"
            if user not in self._active and user not in self._cooling:
                return user
        self._next_new_user += 1
        return f"u{self._next_new_user - 1:06d}"

    def _event(self, session: _Session, now: int) -> dict[str, Any]:
        event_type, product, quantity = self._action(session)
        product_id, category, price = self._catalog[product]
        return {
            "ts": format_epoch_ms(now),
            "user_id": session.user_id,
            "session_id": session.session_id,
            "event_type": event_type,
            "product_id": product_id,
            "category": category,
            "price": price,
            "quantity": quantity,
        }

    def _action(self, session: _Session) -> tuple[str, int, int]:
        u = self._uniform() if session.last_viewed >= 0 else 1.0
        if u < self._gen.CART_PROBABILITY:
            quantity = self._quantity()
            session.cart[session.last_viewed] = quantity
            return "add_to_cart", session.last_viewed, quantity
        if session.cart and u < self._gen.CART_PROBABILITY + self._gen.PURCHASE_PROBABILITY:
            product = next(iter(session.cart))
            return "purchase", product, session.cart.pop(product)
        session.last_viewed = self._product()
        return "view", session.last_viewed, 1
