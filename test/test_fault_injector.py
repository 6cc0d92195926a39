"""The fault injector builds and sends every kind and variant of fault (no graph: nothing listens)."""

import signal

import pytest

from coop_robot.faults.plan import FAULT_KINDS, LINKS, Fault


def _every_fault() -> list[Fault]:
    faults = []
    for kind, spec in FAULT_KINDS.items():
        for variant in spec.variants:
            for target in spec.targets if spec.category != "message" else spec.targets[:1]:
                faults.append(Fault(kind, target, "reach", variant=variant, duration_s=0.03,
                                    fault_id=f"{kind}-{variant}-{target}"))
    return faults


def test_every_fault_kind_and_variant_can_be_injected(ros_domain):
    from coop_robot.faults.injector import FaultInjector

    signals = []

    def signal_node(name: str, sig: int) -> int:
        signals.append((name, sig))
        return 4242

    faults = _every_fault()
    injector = FaultInjector(faults, ros_domain, signal_node, tuple(LINKS))
    try:
        for record in injector.records:
            steps = injector._steps(record)
            for wait_s in steps:  # the waits are wall time; nothing listens, so skip them
                assert 0.0 <= wait_s <= 5.0
            assert record.detail and "error" not in record.detail, (record.fault.label(), record.detail)
    finally:
        injector.close()
    kills = [s for s in signals if s[1] in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)]
    assert len(kills) == 3 * len(FAULT_KINDS["kill"].targets)
    stops = [s for s in signals if s[1] == signal.SIGSTOP]
    conts = [s for s in signals if s[1] == signal.SIGCONT]
    assert sorted(stops) == sorted((n, signal.SIGSTOP) for n, _ in conts) and stops


def test_a_stall_cut_short_continues_the_process(ros_domain):
    from coop_robot.faults.injector import FaultInjector

    signals = []
    injector = FaultInjector([Fault("stall", "controller", "reach", duration_s=5.0)], ros_domain,
                             lambda name, sig: signals.append((name, sig)) or 1)
    try:
        record = injector.records[0]
        steps = injector._steps(record)
        assert next(steps) == pytest.approx(5.0)
        injector._end(record, steps)   # the session ended meanwhile
    finally:
        injector.close()
    assert signals == [("controller", signal.SIGSTOP), ("controller", signal.SIGCONT)]
    assert "cut short" in record.detail
