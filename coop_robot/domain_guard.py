"""Keep two graphs with the same node names off one ROS domain.

Two sessions on one domain merge into one graph: every controller drives every arm, and each turn
tracker scores both sessions' events as one. Before a session starts its nodes,
:meth:`GraphProbe.refuse_if_in_use` looks for nodes with its node names on the domain it will use
and refuses (:class:`DomainInUse`); while it runs, :meth:`GraphProbe.duplicated` finds a second
node with one of its names (rclpy lists every node, duplicates included).

Discovery takes time: a new participant sees an existing node once that one's participant
announces itself, every 3 s in Fast DDS (measured on two cores: 0 to 2.4 s, and past 3 s under
load), so the check waits up to :data:`DISCOVERY_WAIT_S` -- unless discovery stays on this host
and no socket here is bound to one of the domain's RTPS ports, which means no participant it
could discover exists, and it does not wait at all. Two sessions that start within that time of each other both
pass the check; the running check then ends both as soon as they see each other's nodes.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

#: How long the start check waits for discovery before it concludes that the domain is free (s).
DISCOVERY_WAIT_S = 5.0
#: The RTPS well-known port mapping: domain d uses UDP ports PB + DG * d + offset, offset < DG.
RTPS_PORT_BASE, RTPS_DOMAIN_GAIN = 7400, 250
#: Environment variables that decide what a participant discovers (read by rmw at init).
DISCOVERY_VARIABLES = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY",
                       "RMW_IMPLEMENTATION", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                       "CYCLONEDDS_URI")


class DomainInUse(RuntimeError):
    """Nodes with the session's node names already run on its ROS domain."""

    def __init__(self, domain_id: int, nodes: list[str],
                 remedy: str = "Use --domain-id with a free domain, or unset ROS_DOMAIN_ID for a random one") -> None:
        self.domain_id, self.nodes = domain_id, list(nodes)
        super().__init__(
            f"ROS_DOMAIN_ID={domain_id} already has nodes named {', '.join(self.nodes)} (another coop_robot "
            f"session, or a graph with the same node names); a second graph there would merge with it. {remedy}")


def rtps_ports_in_use(domain_id: int) -> list[int]:
    """UDP ports of ROS domain ``domain_id``'s block that some socket on this host is bound to.

    Every DDS participant of domain d binds ports 7400 + 250 d + offset (offset < 250), whatever
    the vendor, so a bound port in the block is a participant on that domain, seen at once.
    """
    first = RTPS_PORT_BASE + RTPS_DOMAIN_GAIN * domain_id
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            port = int(line.split()[1].rsplit(":", 1)[1], 16)
            if first <= port < first + RTPS_DOMAIN_GAIN:
                ports.add(port)
    return sorted(ports)


def discovery_is_local(env: dict) -> bool:
    """Does discovery stay on this host (so this host's sockets show every peer)?"""
    local = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST" or env.get("ROS_LOCALHOST_ONLY") == "1"
    return local and not env.get("ROS_STATIC_PEERS") and Path("/proc/net/udp").is_file()


class GraphProbe:
    """A hidden node (its name starts with an underscore) on a ROS domain that reads the names of
    the nodes in the graph; it needs no spinning (the graph is kept by the middleware)."""

    def __init__(self, domain_id: int, env: dict | None = None) -> None:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        env = dict(os.environ if env is None else env)
        # Discover what the session's nodes will discover: their settings, read when rclpy starts.
        for key in DISCOVERY_VARIABLES:
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        self.domain_id = domain_id
        self._nothing_there = discovery_is_local(env) and not rtps_ports_in_use(domain_id)
        self._context = rclpy.Context()
        # No signal handlers: Ctrl-C stays the caller's KeyboardInterrupt.
        rclpy.init(context=self._context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self._node = rclpy.create_node(f"_coop_robot_graph_probe_{os.getpid()}", context=self._context)

    def node_counts(self) -> Counter:
        """How many nodes of each name the graph holds in the root namespace (the probe left out)."""
        own = self._node.get_name()
        return Counter(name for name, ns in self._node.get_node_names_and_namespaces() if ns == "/" and name != own)

    def refuse_if_in_use(self, names: Iterable[str], wait_s: float = DISCOVERY_WAIT_S, poll_s: float = 0.1,
                         **remedy: str) -> None:
        """Raise :class:`DomainInUse` naming the nodes of ``names`` found on the domain within
        ``wait_s`` (at once when nothing can be there: see the module docstring); ``remedy``:
        what to tell the user to do instead."""
        names = set(names)
        deadline = time.monotonic() + (0.0 if self._nothing_there else wait_s)
        while True:
            found = sorted(names & set(self.node_counts()))
            if found:
                raise DomainInUse(self.domain_id, found, **remedy)
            if time.monotonic() >= deadline:
                return
            time.sleep(poll_s)

    def duplicated(self, names: Iterable[str]) -> list[str]:
        """The names of ``names`` that more than one node in the graph has."""
        counts = self.node_counts()
        return sorted(n for n in set(names) if counts[n] > 1)

    def close(self) -> None:
        import rclpy

        self._node.destroy_node()
        rclpy.shutdown(context=self._context)
