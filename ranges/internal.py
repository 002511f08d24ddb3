"""Node-to-node requests from inside the Store (sans-I/O): how a Store asks another range
(today: the meta range) to do something, e.g. during a split.

A call is sent to one replica of the target range inside the peer frame (`rq` field) and
answered in a peer frame back (`rs` field). The router follows `NotLeaseholder` hints,
rotates through the replicas on other retryable errors and on attempt timeouts, and gives
up at the call's deadline. Every write it sends carries an op_id, so a retried attempt is
applied at most once.

Time is the caller's physical clock in ns; the router is driven by `tick(now_ns)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ranges.api import (
    NotLeaseholder,
    Request,
    SpanliteError,
    Unavailable,
    decode_error,
    encode_request,
)

ATTEMPT_TIMEOUT_NS = 500_000_000
RETRY_BACKOFF_NS = 20_000_000
MAX_CALLS_IN_FLIGHT = 1_000

Done = Callable[[Any], None]  # called once, with the result or a SpanliteError


@dataclass
class InternalCall:
    call_id: int
    request: Request
    replicas: tuple[int, ...]
    on_done: Done
    deadline_ns: int
    target: int
    attempt_sent_ns: int | None = None  # None: waiting to be (re)sent at retry_at_ns
    retry_at_ns: int = 0
    rotation: int = 0


class InternalRouter:
    def __init__(self, node_id: int, send: Callable[[int, list], None]) -> None:
        self.node_id = node_id
        self._send = send  # send(to_node, [call_id, encoded_request])
        self._calls: dict[int, InternalCall] = {}
        self._next_id = 0
        self.leaseholder_hint: dict[tuple[int, ...], int] = {}

    def call(self, request: Request, replicas: tuple[int, ...], on_done: Done, now_ns: int,
             timeout_ns: int) -> None:
        assert replicas, "an internal call needs the target range's replicas"
        if len(self._calls) >= MAX_CALLS_IN_FLIGHT:
            on_done(Unavailable("too many internal calls in flight; retry later"))
            return
        self._next_id += 1
        target = self.leaseholder_hint.get(replicas, replicas[self._next_id % len(replicas)])
        call = InternalCall(self._next_id, request, replicas, on_done, now_ns + timeout_ns, target)
        self._calls[call.call_id] = call
        self._send_attempt(call, now_ns)

    def _send_attempt(self, call: InternalCall, now_ns: int) -> None:
        call.attempt_sent_ns = now_ns
        self._send(call.target, [call.call_id, encode_request(call.request)])

    def on_response(self, from_node: int, call_id: object, raw: object) -> None:
        """A peer answered `rs` item `[call_id, {"ok": ..} | {"err": ..}]`. Never raises."""
        call = self._calls.get(call_id) if isinstance(call_id, int) else None
        if call is None or from_node != call.target or call.attempt_sent_ns is None:
            return  # Late, duplicate or unknown answer.
        if not isinstance(raw, dict):
            return
        if "err" not in raw:
            del self._calls[call.call_id]
            self.leaseholder_hint[call.replicas] = from_node
            call.on_done(raw.get("ok"))
            return
        self._retry_after_error(call, decode_error(raw["err"]))

    def _retry_after_error(self, call: InternalCall, error: SpanliteError) -> None:
        if not error.retryable:
            del self._calls[call.call_id]
            call.on_done(error)
            return
        hint = error.details.get("leaseholder") if isinstance(error, NotLeaseholder) else None
        call.attempt_sent_ns = None
        if isinstance(hint, int) and hint in call.replicas and hint != call.target:
            call.target = hint
            call.retry_at_ns = 0  # A fresh hint: follow it on the next tick.
        else:
            self._rotate(call)
            call.retry_at_ns = -1  # Resolved to now + backoff on the next tick.

    def _rotate(self, call: InternalCall) -> None:
        call.rotation += 1
        call.target = call.replicas[(call.replicas.index(call.target) + 1) % len(call.replicas)] \
            if call.target in call.replicas else call.replicas[0]

    def tick(self, now_ns: int) -> None:
        for call in list(self._calls.values()):
            if now_ns >= call.deadline_ns:
                del self._calls[call.call_id]
                call.on_done(Unavailable(f"internal {type(call.request).__name__} did not complete in time"))
                continue
            if call.attempt_sent_ns is not None:
                if now_ns - call.attempt_sent_ns >= ATTEMPT_TIMEOUT_NS:
                    self._rotate(call)
                    self._send_attempt(call, now_ns)
                continue
            if call.retry_at_ns == -1:
                call.retry_at_ns = now_ns + RETRY_BACKOFF_NS
            if now_ns >= call.retry_at_ns:
                self._send_attempt(call, now_ns)

    def fail_all(self, error: SpanliteError) -> None:
        calls, self._calls = self._calls, {}
        for call in calls.values():
            call.on_done(error)

    def __len__(self) -> int:
        return len(self._calls)
