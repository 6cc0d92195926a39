"""The live view's scene on a Foxglove WebSocket server (foxglove-sdk), for machines without RViz.

:class:`FoxgloveSink` starts the SDK's WebSocket server and, for every
:class:`~coop_robot.live_view.scene.Scene` it is given, logs

* :data:`SCENE_TOPIC`: a ``foxglove.SceneUpdate`` (protobuf) with one entity per shape, for
  Foxglove's 3D panel (display frame ``world``);
* :data:`STATUS_TOPIC`: the scene's status as JSON (decision, P(act), forecast, S_p, separation,
  margin, mode, zone, hand, end effector), for the plot and raw-message panels.

Open Foxglove, *Open connection* -> *Foxglove WebSocket* -> ``ws://HOST:PORT``. foxglove-sdk is an
optional dependency (``pip install foxglove-sdk==0.30.3``); :func:`require_foxglove` says so
when it is missing. No ROS here.
"""

from __future__ import annotations

import math

from coop_robot.live_view.scene import Scene, Shape

SCENE_TOPIC = "/coop_robot/scene"
STATUS_TOPIC = "/coop_robot/status"
DEFAULT_PORT = 8765
INSTALL_HINT = "pip install foxglove-sdk==0.30.3"


class FoxgloveUnavailable(RuntimeError):
    """foxglove-sdk is not installed."""


def require_foxglove():
    """The ``foxglove`` module, or :class:`FoxgloveUnavailable` saying how to install it."""
    try:
        import foxglove  # noqa: PLC0415 -- optional dependency
    except ImportError as exc:
        raise FoxgloveUnavailable(f"the Foxglove live view needs foxglove-sdk, which is not installed "
                                  f"({exc}); install it with: {INSTALL_HINT}") from None
    return foxglove


def check_port(port: int) -> int:
    """A TCP port number 0..65535 (0: any free port) or ValueError."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"Foxglove port must be an integer 0..65535 (0 = any free port), got {port!r}")
    return port


class FoxgloveSink:
    """A Foxglove WebSocket server streaming the live view (a private SDK context: channels of
    other code in the process are not served). ``port`` 0 picks a free one (:attr:`port`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, name: str = "coop_robot live view") -> None:
        foxglove = require_foxglove()
        from foxglove.channels import SceneUpdateChannel  # noqa: PLC0415

        self._context = foxglove.Context()
        self._scene = SceneUpdateChannel(SCENE_TOPIC, context=self._context)
        self._status = foxglove.Channel(STATUS_TOPIC, context=self._context)   # schemaless JSON
        self._server = foxglove.start_server(name=name, host=host, port=check_port(port), context=self._context)

    @property
    def port(self) -> int:
        return self._server.port

    def log(self, scene: Scene) -> None:
        """Send ``scene`` to every subscribed client (nothing is encoded when none is)."""
        log_time = int(round(scene.t_s * 1e9)) if math.isfinite(scene.t_s) and scene.t_s > 0 else None
        if self._scene.has_sinks():
            self._scene.log(scene_update(scene), log_time=log_time)
        if self._status.has_sinks():
            self._status.log(scene.status, log_time=log_time)

    def close(self) -> None:
        self._server.stop()


def scene_update(scene: Scene):
    """The scene as a ``foxglove.messages.SceneUpdate``: one entity per shape, id = the shape's key."""
    from foxglove.messages import SceneUpdate  # noqa: PLC0415

    return SceneUpdate(entities=[_entity(shape, scene) for shape in scene.shapes])


def _entity(shape: Shape, scene: Scene):
    from foxglove.messages import (  # noqa: PLC0415
        Color,
        CubePrimitive,
        LinePrimitive,
        Point3,
        Pose,
        Quaternion,
        SceneEntity,
        SpherePrimitive,
        TextPrimitive,
        Timestamp,
        Vector3,
    )

    pose = Pose(position=Vector3(x=shape.position_m[0], y=shape.position_m[1], z=shape.position_m[2]),
                orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0))
    colour = Color(r=shape.colour_rgba[0], g=shape.colour_rgba[1], b=shape.colour_rgba[2], a=shape.colour_rgba[3])
    size = Vector3(x=shape.size_m[0], y=shape.size_m[1], z=shape.size_m[2])
    parts: dict = {}
    if shape.kind == "box":
        parts["cubes"] = [CubePrimitive(pose=pose, size=size, color=colour)]
    elif shape.kind == "sphere":
        parts["spheres"] = [SpherePrimitive(pose=pose, size=size, color=colour)]
    elif shape.kind == "line_strip":
        # Points in world: the line's own pose is the identity.
        parts["lines"] = [LinePrimitive(pose=Pose(position=Vector3(x=0.0, y=0.0, z=0.0),
                                                  orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
                                        thickness=shape.size_m[0], points=[Point3(x=p[0], y=p[1], z=p[2])
                                                                           for p in shape.points_m],
                                        color=colour)]
    else:
        parts["texts"] = [TextPrimitive(pose=pose, billboard=True, font_size=shape.size_m[2], color=colour,
                                        text=shape.text)]
    stamp = Timestamp.from_epoch_secs(scene.t_s) if math.isfinite(scene.t_s) and scene.t_s >= 0 else None
    return SceneEntity(timestamp=stamp, frame_id=scene.frame_id, id=shape.key, **parts)
