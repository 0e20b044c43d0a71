"""Request bytes held in memory at once, across all requests: one budget, taken as bodies arrive
(or at once, for the length a request declares) and given back when the request ends. Beyond
it a request is refused with 503 and `Retry-After` instead of holding more memory.

Used from the event loop only, so plain counters suffice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import Overloaded


class BufferBudget:
    """At most `capacity` request bytes held at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0

    @contextmanager
    def permit(self) -> Iterator[BufferPermit]:
        """A permit for one request; what it took is given back on exit, whatever happens."""
        permit = BufferPermit(self)
        try:
            yield permit
        finally:
            self.held -= permit.held


class BufferPermit:
    """The bytes one request holds."""

    def __init__(self, budget: BufferBudget) -> None:
        self._budget = budget
        self.held = 0

    def hold_at_least(self, size: int) -> None:
        """Hold `size` bytes in all, or raise Overloaded (503) when the budget has no room."""
        more = size - self.held
        if more <= 0:
            return
        if self._budget.held + more > self._budget.capacity:
            raise Overloaded(
                f"the server holds {self._budget.held} bytes of requests already (limit "
                f"{self._budget.capacity}); retry shortly"
            )
        self._budget.held += more
        self.held = size
