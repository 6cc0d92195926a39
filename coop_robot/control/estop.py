"""The software e-stop latch: which stop or release command is in force (no ROS).

Stop and release commands reach the controller node three ways (docs/lab_deployment.md, "E-stop"):
``/emergency_stop`` from any publisher (a volatile subscription), the same topic latched (a
transient-local subscription: a stop published before the controller matched its publisher, or
before the controller started, arrives when they match), and the acknowledged service
``/controller/emergency_stop``. A latched sample can arrive late, or again (when the controller
matches its publisher anew), after a newer command. The rules:

- a stop always engages, except the very message that a release already ended, delivered
  again: an old latched ``true`` whose publisher is still alive does not re-engage after a release;
- a release frees the arm only if it was issued (its DDS source timestamp) after the newest stop
  in force: an old latched ``false`` never releases a newer stop. Clocks out of sync can make a
  fresh release look older and be ignored -- the safe side, and the node says so;
- a service call is the operator's command now (this host's clock): it always applies.

A stop is never judged by its timestamp: a publisher whose clock lags could otherwise see a fresh
stop taken for an old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The stop/release topic (std_msgs/Bool: true = stop, false = release).
ESTOP_TOPIC = "/emergency_stop"
#: The acknowledged path (std_srvs/SetBool: data true = stop, false = release).
ESTOP_SERVICE = "/controller/emergency_stop"


@dataclass
class EstopLatch:
    """Whether the e-stop is engaged, from the stop and release commands seen so far."""

    engaged: bool = False
    #: Issue time (ns, the issuer's clock) of the newest stop in force; None while released.
    stop_ns: int | None = None
    _in_force: set = field(default_factory=set)    # ids of the stop messages of the stop in force
    _ended: set = field(default_factory=set)       # ids of stop messages a release ended

    def command(self, stop: bool, issued_ns: int, message_id: object = None) -> bool:
        """A stop (``stop`` true) or release from the topic, issued at ``issued_ns`` (ns since the
        epoch, the publisher's clock); ``message_id`` tells a message delivered again from a new
        one (e.g. its source timestamp and sequence number). Returns whether it was applied."""
        if stop:
            if message_id is not None and message_id in self._ended:
                return False
            self._stop(issued_ns)
            if message_id is not None:
                self._in_force.add(message_id)
            return True
        if self.stop_ns is not None and issued_ns <= self.stop_ns:
            return False
        self._release()
        return True

    def request(self, stop: bool, now_ns: int) -> None:
        """A stop or release requested over the service at ``now_ns`` (this host's clock): applies."""
        if stop:
            self._stop(now_ns)
        else:
            self._release()

    def _stop(self, issued_ns: int) -> None:
        self.stop_ns = issued_ns if self.stop_ns is None else max(self.stop_ns, issued_ns)
        self.engaged = True

    def _release(self) -> None:
        self._ended |= self._in_force
        self._in_force = set()
        self.stop_ns = None
        self.engaged = False
