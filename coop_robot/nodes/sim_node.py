"""``coop_sim``: the PyBullet simulation as a ROS 2 node.

Steps :class:`coop_robot.sim.core.InteractionSim` on a wall-clock loop paced by
:class:`coop_robot.sim.pacing.SimPacer` (``real_time_factor``, perception sync) and publishes
what a real cell would (``/clock``, joint states, RGB-D images with camera info) plus, in
simulation only, ground truth for scoring. It accepts
``trajectory_msgs/JointTrajectory`` with joint_trajectory_controller semantics.

Time: this node is the clock source. It runs on wall time (``use_sim_time`` is forced to false
for it, with a warning if set) and stamps everything it publishes with the physics time.

``mode: cell`` (hardware mode, ``coop-robot rehearse``): the sim poses as a lab cell instead and
publishes only what a RealSense driver and ros2_control would, on the wall clock, with noise and
latency, and writes the ground truth to a file (:mod:`coop_robot.nodes.cell_io`).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import PublisherEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState, TimeReference
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from coop_robot.control.controller import (
    SSM_PARAMETERS,
    controller_parameter,
    parse_state_text,
    ssm_config_from_params,
)
from coop_robot.control.kinematics import PandaKinematics
from coop_robot.control.planning import JointLimits
from coop_robot.control.ssm import GroundTruthMonitor, SeparationMonitor
from coop_robot.geometry import world_geometry  # geometry defaults: config/world.yaml
from coop_robot.nodes.cell_io import CellIO, declare_cell, image_message
from coop_robot.nodes.common import (
    COMMAND_QOS,
    EVENT_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    LatencyReporter,
    ParameterError,
    declare,
    declare_zone,
    run_node,
    s_to_stamp,
    ssm_message,
    stamp_to_s,
)
from coop_robot.partner.profile import ProfileError
from coop_robot.perception.hand_tracker import depth_to_16uc1
from coop_robot.sim.core import InteractionSim, world_config_from_params
from coop_robot.sim.pacing import (
    FRAME_RELEASED,
    PERCEPTION_TIMED_OUT,
    STARTUP_WAIT_EXPIRED,
    SYNC_STALL_S,
    TICK_BUDGET_S,
    TICK_PERIOD_S,
    OutputSchedule,
    PacingConfig,
    SimPacer,
    check_real_time_factor,
)
from coop_robot.sim.trajectory import TrajectoryRejected
from coop_robot.tasks import DEFAULT_TASK, TASKS
from coop_robot.timing.ssm_sample import GROUND_TRUTH_SSM, SsmSample
from coop_robot.timing.sync import (
    SYNC_CUE,
    SYNC_TARGET,
    SYNC_TRIAL,
    SYNC_TRIAL_STATUS,
    SyncTrials,
    advance_sync_trials,
    sync_task_config,
    trial_key_values,
)

GROUND_TRUTH_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
HAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def publish_time_reference(pub, source: str, time_ref_s: float, stamp_s: float) -> None:
    """A ground-truth ``TimeReference`` (``source`` names the event, ``time_ref`` its sim time)."""
    msg = TimeReference(source=source, time_ref=s_to_stamp(time_ref_s))
    msg.header.stamp = s_to_stamp(stamp_s)
    msg.header.frame_id = "ground_truth"
    pub.publish(msg)


def camera_images(rgb: np.ndarray, depth_m: np.ndarray, stamp, frame_id: str) -> tuple[Image, Image]:
    """One rendered frame as the colour (``rgb8``) and aligned depth images a RealSense driver
    publishes: depth as ``16UC1`` millimetres, not ``32FC1`` metres. At the default 320x240 a
    ``32FC1`` frame (colour + depth, 537,600 B of pixels) does not fit Fast DDS's default 512 KiB
    shared-memory segment per participant: measured, about 1 frame in 10 was lost on the way to
    perception, and each loss held the sim for ``SYNC_STALL_S`` and left the controller a hand too
    old to trust (protective stops). ``16UC1`` is 384,000 B and rounds depth to 1 mm."""
    return (image_message(stamp, frame_id, rgb, "rgb8"),
            image_message(stamp, frame_id, depth_to_16uc1(depth_m), "16UC1"))


class SimNode(Node):
    """Thin wrapper: parameters and messages in, :class:`InteractionSim` steps, messages out."""

    def __init__(self, **kwargs) -> None:
        super().__init__("coop_sim", **kwargs)
        if self.get_parameter("use_sim_time").value:
            self.get_logger().warning(
                "use_sim_time is true, but coop_sim is the /clock source and runs on wall time; ignoring it")
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, False)])

        self._mode = declare(self, "mode", "sim", "sim: the simulation with /clock and ground-truth topics; "
                             "cell: pose as a lab cell (RealSense and ros2_control topics only, wall clock, noise "
                             "and latency, ground truth to the truth_log file)", choices=("sim", "cell"))
        gui = declare(self, "gui", False, "Open the PyBullet GUI window (needs a display)")
        seed = declare(self, "seed", 0, "Seed of the simulated partner's random generator", low=0)
        partner = declare(self, "partner", "typical",
                          "Partner profile: a name under config/partners (typical, fast, slow, hesitant, "
                          "erratic) or a path to a profile YAML file")
        physics_rate_hz = declare(self, "physics_rate_hz", 240, "Physics steps per simulated second",
                                  low=60, high=2000)
        camera_period_s = 1.0 / declare(
            self, "camera_rate_hz", 30.0, "Camera frames per simulated second", low=1.0, high=240.0)
        joint_state_period_s = 1.0 / declare(
            self, "joint_state_rate_hz", 100.0, "Joint state messages per simulated second", low=1.0, high=1000.0)
        clock_period_s = 1.0 / declare(
            self, "clock_rate_hz", 250.0, "Most /clock messages per simulated second (clock resolution)",
            low=1.0, high=10000.0)
        pacing = PacingConfig(
            real_time_factor=declare(
                self, "real_time_factor", PacingConfig.real_time_factor,
                "Simulated seconds per wall second; 0 runs as fast as possible", low=0.0, high=100.0),
            perception_sync=declare(
                self, "perception_sync", PacingConfig.perception_sync,
                "Do not run more than max_perception_lag_s of sim time ahead of the newest /partner/hand stamp "
                "(a stamp ahead of the sim's own time is spoofed or on another clock: ignored, logged)"),
            max_perception_lag_s=declare(
                self, "max_perception_lag_s", PacingConfig.max_perception_lag_s,
                "Allowed sim-time lead over perception when perception_sync is on (s)", low=0.0, high=10.0),
            perception_startup_wait_s=declare(
                self, "perception_startup_wait_s", PacingConfig.perception_startup_wait_s,
                "With perception_sync, advance only frame by frame until the first /partner/hand arrives, "
                "at most this long after start (wall s); 0 starts at full speed", low=0.0, high=600.0),
            perception_timeout_s=declare(
                self, "perception_timeout_s", PacingConfig.perception_timeout_s,
                "Wall time without /partner/hand after which perception_sync stops holding the sim back (s)",
                low=0.1, high=60.0),
            startup_waits_for_policy=declare(
                self, "startup_waits_for_policy", PacingConfig.startup_waits_for_policy,
                "With perception_sync, the start-up hold also lasts until the policy's first /policy/decision "
                "(the mirror policy loads a network), so the partner's first turn is not run before it is up"),
            camera_period_s=camera_period_s)
        trajectory_topic = declare(self, "trajectory_topic", "/panda_arm_controller/joint_trajectory",
                                   "JointTrajectory command topic (joint_trajectory_controller interface)")
        partner_hand_topic = declare(self, "partner_hand_topic", "/partner/hand",
                                     "Perceived partner hand (PointStamped), used by perception_sync")
        self._camera_frame = declare(self, "camera_frame_id", "camera_color_optical_frame",
                                     "frame_id of the colour and (aligned) depth images")
        zone = declare_zone(self)
        camera_position_m = declare(self, "camera_position_m", list(world_geometry().camera_position_m),
                                    "Camera optical frame position in the world frame (m)")
        camera_orientation = declare(self, "camera_orientation_xyzw", list(world_geometry().camera_orientation_xyzw),
                                     "Camera optical frame orientation in the world frame, quaternion [x, y, z, w]")
        home = declare(self, "robot_home_joint_positions_rad", list(world_geometry().robot_home_joint_positions_rad),
                       "Arm configuration at start, panda_joint1..7 (rad)")
        width = declare(self, "image_width", 320, "Rendered image width (px)", low=16, high=1920)
        height = declare(self, "image_height", 240, "Rendered image height (px)", low=16, high=1080)
        vfov_deg = declare(self, "vertical_fov_deg", 58.0, "Camera vertical field of view (deg)", low=10.0, high=120.0)
        low_poly = declare(self, "low_poly_robot", True,
                           "Render the Panda with its low-poly collision meshes (much faster software rendering)")
        self._task = declare(self, "task", DEFAULT_TASK, "The interaction task: turn_taking, or sync (the person is "
                             "the sync task's, cued on /sync/cue; the trials are scored here and sent on /sync/trial)",
                             choices=TASKS)
        window_s = declare(self, "sync_window_s", sync_task_config().window_s,
                           "sync: success window of a trial (s); default: config/sync.yaml's", low=0.01, high=5.0)
        sync_config = None
        if self._task == "sync":
            try:
                sync_config = sync_task_config({"sync_window_s": window_s})
            except ValueError as exc:
                raise ParameterError(f"parameter 'sync_window_s': {exc}") from exc
        cell = declare_cell(self, self._mode == "cell")
        if self._mode == "cell" and sync_config is not None:
            raise ParameterError("parameter 'task' = 'sync': the sync task runs in simulation mode only (mode: sim)")
        if self._mode == "cell":  # a real cell neither waits for perception nor runs faster than the clock
            pacing = dataclasses.replace(pacing, real_time_factor=1.0, perception_sync=False)

        try:
            config = world_config_from_params(
                zone_min_m=zone.min_m, zone_max_m=zone.max_m, camera_position_m=camera_position_m,
                camera_orientation_xyzw=camera_orientation, robot_home_joint_positions_rad=home,
                physics_rate_hz=float(physics_rate_hz), image_width=width, image_height=height,
                vertical_fov_deg=vfov_deg, low_poly_robot=low_poly)
        except ValueError as exc:
            raise ParameterError(f"world geometry: {exc}") from exc
        try:
            self._sim = InteractionSim.from_params(partner=partner, seed=seed, gui=gui, world_config=config,
                                                   sync_config=sync_config)
        except (ProfileError, OSError) as exc:
            raise ParameterError(f"parameter 'partner' = {partner!r}: {exc}") from exc
        except ValueError as exc:  # e.g. a zone that does not hold the partner's hand target
            raise ParameterError(f"cannot build the simulation: {exc}") from exc
        except RuntimeError as exc:  # PyBullet connection, e.g. gui without a display
            raise ParameterError(f"parameter 'gui' = {gui}: {exc}") from exc

        try:
            ssm = ssm_config_from_params({spec.name: declare(self, spec.name, spec.default, spec.description,
                                                             spec.low, spec.high) for spec in SSM_PARAMETERS})
        except ValueError as exc:
            raise ParameterError(f"separation monitoring: {exc}") from exc
        # Ground-truth separation monitoring: the controller's S_p on the true hand and arm state,
        # with the nominal perception age as the perception part of the reaction time.
        monitor = SeparationMonitor(ssm, PandaKinematics(world_geometry().robot_base_m),
                                    JointLimits.panda().acceleration_rad_s2)
        self._ssm_truth = GroundTruthMonitor(monitor, config.glove_radius_m,
                                             controller_parameter("ssm_waiting_perception_age_s").default)
        self._camera_info = self._make_camera_info()
        self._pacing = pacing
        self._schedule = OutputSchedule(clock_period_s, joint_state_period_s, camera_period_s)
        self._phase = None
        self._latest_plan: dict[str, float] = {}
        self._closed = False
        self._cell: CellIO | None = None
        self._latency: LatencyReporter | None = None
        self._camera_pending = False
        if self._mode == "cell":
            self._cell = CellIO(self, self._sim, cell, self._camera_info, {
                "partner": partner, "seed": seed, "zone_min_m": list(zone.min_m), "zone_max_m": list(zone.max_m),
                "clock": "wall (UNIX s, the stamps of the cell's messages)"}, seed, partner_hand_topic,
                joint_state_period_s, camera_period_s)
        else:
            self._make_sim_publishers(pacing, partner_hand_topic)
        self._sync: _SyncScoring | None = _SyncScoring(self, sync_config) if sync_config is not None else None
        self.create_subscription(JointTrajectory, trajectory_topic, self._on_trajectory, COMMAND_QOS)

        self._pacer = SimPacer(pacing, time.monotonic())
        self._stats_wall_s = time.monotonic()
        self._stats_cpu_s = time.process_time()
        self._stats_steps = 0

        # Registered after all declarations: from here on only real_time_factor may change.
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self._cell is None:
            self._publish_outputs()  # t = 0: clock, joint state, first frame, phase
        # A steady (wall) clock timer: the node's own clock would follow /clock, which it publishes.
        self._timer = self.create_timer(TICK_PERIOD_S, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._stats_timer = self.create_timer(10.0, self._log_stats, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"coop_sim ready{' as a lab cell' if self._cell else ''}: partner {partner!r}, seed {seed}, "
            f"physics {physics_rate_hz} Hz, real_time_factor {pacing.real_time_factor:g}"
            f"{' (as fast as possible)' if pacing.real_time_factor == 0 else ''}, "
            f"perception_sync {'on' if pacing.perception_sync else 'off'}")

    def _make_sim_publishers(self, pacing: PacingConfig, partner_hand_topic: str) -> None:
        """Simulation mode: /clock, the sim's camera and joint topics, ground truth."""
        self._ssm_pub = self.create_publisher(DiagnosticArray, GROUND_TRUTH_SSM, HAND_QOS)
        self._clock_pub = self.create_publisher(ClockMsg, "/clock", 10)
        self._joint_pub = self.create_publisher(JointState, "/joint_states", COMMAND_QOS)
        self._color_pub = self.create_publisher(Image, "/camera/color/image_raw", SENSOR_QOS)
        self._color_info_pub = self.create_publisher(CameraInfo, "/camera/color/camera_info", SENSOR_QOS)
        self._depth_pub = self.create_publisher(Image, "/camera/depth/image_rect_raw", SENSOR_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, "/camera/depth/camera_info", SENSOR_QOS)
        self._event_pub = self.create_publisher(TimeReference, "/sim/ground_truth/events", EVENT_QOS)
        self._hand_pub = self.create_publisher(PointStamped, "/sim/ground_truth/partner_hand", GROUND_TRUTH_QOS)
        self._ee_pub = self.create_publisher(PointStamped, "/sim/ground_truth/robot_ee", GROUND_TRUTH_QOS)
        # The partner plans its first turn at t = 0, before other nodes are up: a subscriber that
        # joins later gets the current plan re-sent when it matches.
        self._plan_pub = self.create_publisher(
            TimeReference, "/sim/ground_truth/partner_plan", EVENT_QOS,
            event_callbacks=PublisherEventCallbacks(matched=self._on_plan_subscriber_matched))
        self._phase_pub = self.create_publisher(String, "/sim/partner/phase", LATCHED_QOS)
        # A stamped trajectory's stamp (the controller's clock when it sent it) -> this arm receives it.
        # (Sim mode only: a lab cell's arm publishes nothing of the kind.)
        self._latency = LatencyReporter(self, ["command->arm"])
        if pacing.perception_sync:
            self.create_subscription(PointStamped, partner_hand_topic, self._on_partner_hand, HAND_QOS)
            if pacing.startup_waits_for_policy:
                self._decision_sub = self.create_subscription(String, "/policy/decision", self._on_decision,
                                                              COMMAND_QOS)

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """real_time_factor can be changed live; everything else is read once at start-up."""
        for param in params:
            if param.name == "real_time_factor" and self._cell is not None:
                return SetParametersResult(successful=False, reason="a cell runs on the wall clock (mode: cell)")
            if param.name == "real_time_factor":
                try:
                    check_real_time_factor(param.value)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            elif not (param.name == "use_sim_time" and param.value is False):
                return SetParametersResult(
                    successful=False, reason=f"{param.name} is read at start-up; restart coop_sim to change it")
        for param in params:
            if param.name == "real_time_factor":
                self._pacer.set_real_time_factor(param.value, self._sim.t_s, time.monotonic())
                self.get_logger().info(f"real_time_factor set to {self._pacer.real_time_factor:g}")
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ subscriptions
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        stamp_s = stamp_to_s(msg.header.stamp)
        if stamp_s > 0.0 and self._latency is not None:
            self._latency.stats["command->arm"].add(self._sim.t_s - stamp_s)
        try:
            for i, pt in enumerate(msg.points):
                if len(pt.effort):
                    raise TrajectoryRejected(f"point #{i} has effort values; this position-controlled arm "
                                             "accepts positions, velocities and accelerations only")
            points = [(pt.time_from_start.sec + 1e-9 * pt.time_from_start.nanosec, list(pt.positions),
                       list(pt.velocities) or None, list(pt.accelerations) or None) for pt in msg.points]
            start_s = stamp_to_s(msg.header.stamp)
            if self._cell is not None and start_s > 0.0:  # a wall-clock stamp; 0 = start on receipt
                start_s = max(0.0, self._cell.stamps.sim_time_s(start_s)) if self._cell.started else 0.0
            warnings = self._sim.command_trajectory(list(msg.joint_names), points, start_s)
        except TrajectoryRejected as exc:
            self.get_logger().error(f"rejected trajectory: {exc}")
            return
        for warning in warnings:
            self.get_logger().warning(f"trajectory accepted, but {warning}")
        self.get_logger().debug(f"trajectory with {len(msg.points)} points accepted at t={self._sim.t_s:.3f} s")

    def _on_plan_subscriber_matched(self, status) -> None:
        if status.current_count_change > 0 and not self._closed:
            for source, time_ref_s in self._latest_plan.items():
                publish_time_reference(self._plan_pub, source, time_ref_s, self._sim.t_s)

    def _on_decision(self, _msg: String) -> None:
        self._pacer.policy_heard()
        # Only the first one matters (the start-up hold): stop listening.
        self.destroy_subscription(self._decision_sub)

    def _on_partner_hand(self, msg: PointStamped) -> None:
        if self._pacer.perception_heard(stamp_to_s(msg.header.stamp), time.monotonic(), self._sim.t_s):
            self.get_logger().info("perception is publishing again; perception_sync holds the sim back again")
        future = self._pacer.take_future_stamp()
        if future is not None:
            stamp_s, sim_t_s = future
            self.get_logger().error(
                f"perception_sync ignores a /partner/hand stamped {stamp_s - sim_t_s:.3f} s ahead of the sim "
                f"({stamp_s:.3f} s at sim time {sim_t_s:.3f} s): no camera frame is stamped after the sim's "
                "time, so it is spoofed or on another clock (use_sim_time)", throttle_duration_sec=5.0)

    # ------------------------------------------------------------------ stepping loop
    def _tick(self) -> None:
        if self._closed:
            return
        if self._cell is not None and not self._cell.started:
            if self._cell.hold(time.time()):  # the graph is up: the world starts moving now
                self._pacer = SimPacer(self._pacing, time.monotonic(), self._sim.t_s)
            return
        wall_start = time.monotonic()
        while True:
            wall_now = time.monotonic()
            if wall_now - wall_start > TICK_BUDGET_S or not self._pacer.may_step(self._sim.t_s, self._sim.dt_s,
                                                                                  wall_now):
                break
            if self._sync is not None:
                self._sync.before_step(self._sim)
            events = self._sim.step()
            if self._sync is not None:
                self._sync.after_step(self._sim)
            for event in events:
                if self._cell is not None:
                    self._cell.truth.event(event.name, self._cell.stamps.stamp_s(event.t_s))
                else:
                    publish_time_reference(self._event_pub, event.name, event.t_s, event.t_s)
            self._stats_steps += 1
            self._publish_outputs()
        self._pacer.end_tick(self._sim.t_s, time.monotonic())
        if self._cell is not None:
            self._cell_after_tick(time.time())
        for event in self._pacer.take_events():
            cfg = self._pacer.config
            if event == STARTUP_WAIT_EXPIRED:
                self.get_logger().warning(f"no /partner/hand within {cfg.perception_startup_wait_s:g} s (wall) of "
                                          "start; running without perception_sync until it arrives")
            elif event == PERCEPTION_TIMED_OUT:
                self.get_logger().warning(f"no /partner/hand for {cfg.perception_timeout_s:g} s (wall); "
                                          "perception_sync no longer holds the sim back")
            elif event == FRAME_RELEASED:
                self.get_logger().warning(
                    f"perception answered no camera frame for {SYNC_STALL_S:g} s (wall) while the sim waited; "
                    f"releasing the next frame ({self._pacer.frames_released} so far). Frames lost on the way "
                    "(images too large for the DDS transport's buffers) or dropped by perception: each costs "
                    "the controller a fresh hand, and it brakes", throttle_duration_sec=10.0)

    def _cell_after_tick(self, wall_s: float) -> None:
        """Cell mode: render the camera frame that fell due; when the physics fell behind the wall
        clock, the world paused (stamps move on, the pacer re-anchors) and the joint states repeat
        its still state; then deliver what is due."""
        cell = self._cell
        if self._camera_pending:
            # One frame of the newest state: a CPU that cannot render every frame and keep the physics
            # on time drops frames, as an overloaded camera host does, rather than slowing the world.
            self._camera_pending = False
            cell.publish_camera(cell.stamps.stamp_s(self._sim.t_s))
        overdue = cell.joint_state_overdue(wall_s)
        if overdue:
            cell.stamps.pause_to(wall_s, self._sim.t_s)
        if overdue or cell.stamps.catch_up(wall_s, self._sim.t_s):
            self._pacer.set_real_time_factor(1.0, self._sim.t_s, time.monotonic())
        if overdue:  # the world stood still: its joints are where they were
            cell.publish_joint_state(wall_s)
        cell.deliver(wall_s)

    def _publish_outputs(self) -> None:
        """Everything due at the current physics time, clock first."""
        if self._cell is not None:
            self._publish_cell_outputs()
            return
        stamp = s_to_stamp(self._sim.t_s)
        due = self._schedule.due(self._sim.t_s)
        if due.clock:
            self._clock_pub.publish(ClockMsg(clock=stamp))
        for update in self._sim.take_plan_updates():
            self._latest_plan[update.source] = update.time_ref_s
            publish_time_reference(self._plan_pub, update.source, update.time_ref_s, update.t_s)
        phase = self._sim.partner_phase
        if phase != self._phase:
            self._phase = phase
            self._phase_pub.publish(String(data=phase))
        if due.joint_state:
            self._publish_joint_state(stamp)
            self._publish_ground_truth_separation()
        if due.camera:
            self._publish_camera(stamp)

    def _publish_cell_outputs(self) -> None:
        """Cell mode: sensor messages stamped with the wall clock, the truth to the log only."""
        cell = self._cell
        stamp_s = cell.stamps.stamp_s(self._sim.t_s)
        due = self._schedule.due(self._sim.t_s)
        self._sim.take_plan_updates()  # a person's plans are nowhere to be read in a lab
        phase = self._sim.partner_phase
        if phase != self._phase:
            self._phase = phase
            cell.truth.phase(phase, stamp_s)
        if due.joint_state:
            cell.publish_joint_state(stamp_s)
            sample = self._ground_truth_separation()
            cell.truth.ssm(stamp_s, sample.separation_m, sample.protective_distance_m, sample.robot_closing_mps,
                           sample.human_closing_mps)
        if due.camera:  # rendered once the physics has caught up with the wall clock (_cell_after_tick)
            self._camera_pending = True

    # ------------------------------------------------------------------ message building
    def _ground_truth_separation(self) -> SsmSample:
        q, _ = self._sim.world.arm_state()
        t = self._sim.t_s
        sep = self._ssm_truth.sample(t, q, self._sim.partner_hand_m())
        # Ground truth has no speed mode of its own: the controller's is on /controller/ssm.
        return SsmSample(t, sep.separation_m, sep.protective_m, sep.robot_closing_mps, sep.human_closing_mps,
                         1.0, "free")

    def _publish_ground_truth_separation(self) -> None:
        sample = self._ground_truth_separation()
        self._ssm_pub.publish(ssm_message(sample))
        if self._sync is not None:
            self._sync.separation(sample)

    def _publish_joint_state(self, stamp) -> None:
        names, position, velocity, effort = self._sim.world.joint_state()
        msg = JointState(name=names, position=position.tolist(), velocity=velocity.tolist(), effort=effort.tolist())
        msg.header.stamp = stamp
        self._joint_pub.publish(msg)

    def _make_camera_info(self) -> CameraInfo:
        intr = self._sim.world.intrinsics
        info = CameraInfo(width=intr.width, height=intr.height, distortion_model="plumb_bob")
        info.header.frame_id = self._camera_frame
        info.d = [0.0] * 5
        info.k = intr.k
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _publish_camera(self, stamp) -> None:
        color, depth = camera_images(*self._sim.render(), stamp, self._camera_frame)
        self._camera_info.header.stamp = stamp
        self._color_pub.publish(color)
        self._color_info_pub.publish(self._camera_info)
        self._depth_pub.publish(depth)
        self._depth_info_pub.publish(self._camera_info)
        for pub, point in ((self._hand_pub, self._sim.partner_hand_m()), (self._ee_pub, self._sim.ee_position_m())):
            msg = PointStamped(point=Point(x=float(point[0]), y=float(point[1]), z=float(point[2])))
            msg.header.stamp, msg.header.frame_id = stamp, "world"
            pub.publish(msg)

    def _log_stats(self) -> None:
        wall, cpu = time.monotonic(), time.process_time()
        dw = wall - self._stats_wall_s
        if dw <= 0.0:
            return
        cpu_percent = 100.0 * (cpu - self._stats_cpu_s) / dw
        self.get_logger().info(
            f"t={self._sim.t_s:.1f} s sim, {self._stats_steps / dw:.0f} steps/s "
            f"(x{self._stats_steps * self._sim.dt_s / dw:.2f} real time), CPU {cpu_percent:.0f}%, "
            f"partner {self._sim.partner_phase}"
            + (f", camera frames released unanswered: {released}" if (released := self._pacer.frames_released) else ""))
        self._stats_wall_s, self._stats_cpu_s, self._stats_steps = wall, cpu, 0

    def close(self) -> None:
        """Stop stepping and disconnect PyBullet (called by run_node on shutdown)."""
        if not self._closed:
            self._closed = True
            if self._cell is not None:
                self._cell.close()
            self._sim.close()


class _SyncScoring:
    """The sync task in the sim node (``task: sync``): the person sees the robot, the trials are cued
    (``/sync/cue``) and scored on ground truth (``/sync/trial``) with :mod:`coop_robot.timing.sync`,
    the one definition the fast environment uses. Cueing waits for the controller: its sync target
    (``/controller/sync_target``) and its state at home (``/controller/state``)."""

    def __init__(self, node: SimNode, config) -> None:
        self._node = node
        self._config = config
        self.trials: SyncTrials | None = None
        self._robot_state = "unknown"
        # A stream of events, not a state: a history of one let a recorder that matched the sim
        # after the first cue (discovery is slow on a loaded host) start the bag without it.
        self._cue_pub = node.create_publisher(TimeReference, SYNC_CUE, EVENT_QOS)
        self._trial_pub = node.create_publisher(DiagnosticArray, SYNC_TRIAL, EVENT_QOS)
        node.create_subscription(PointStamped, SYNC_TARGET, self._on_target, LATCHED_QOS)
        node.create_subscription(String, "/controller/state", self._on_state, LATCHED_QOS)

    def _on_target(self, msg: PointStamped) -> None:
        if self.trials is None:
            self.trials = SyncTrials(self._config, (msg.point.x, msg.point.y, msg.point.z))
            self._node.get_logger().info(
                f"sync task: robot target {[round(v, 3) for v in self.trials.robot_target_m.tolist()]} m, partner "
                f"target {list(self._config.partner_target_m)} m, window {self._config.window_s:g} s")

    def _on_state(self, msg: String) -> None:
        self._robot_state = parse_state_text(msg.data)[0]

    def before_step(self, sim: InteractionSim) -> None:
        # The person sees the arm as of the last step (as in the fast environment).
        sim.partner.see_robot(sim.t_s + sim.dt_s, sim.ee_position_m())

    def after_step(self, sim: InteractionSim) -> None:
        if self.trials is None:
            return
        t = sim.t_s
        step = advance_sync_trials(self.trials, sim.partner, t, sim.ee_position_m(), sim.partner_hand_m(),
                                   contact=sim.in_contact, robot_at_rest=self._robot_state == "home")
        for trial in step.ended:  # sent when it ends, and again once the next cue closes its window
            self._publish_trial(trial, t)
            self._publish_cue("trial_end", trial.cue_s, t)
        if step.closed is not None:
            self._publish_trial(step.closed, t)
        if step.cued:
            self._publish_cue("cue", t, t)

    def separation(self, sample: SsmSample) -> None:
        if self.trials is not None:
            self.trials.add_separation(sample.t_s, sample.separation_m, sample.protective_distance_m,
                                       sample.robot_closing_mps)

    def _publish_cue(self, source: str, cue_s: float, stamp_s: float) -> None:
        publish_time_reference(self._cue_pub, source, cue_s, stamp_s)

    def _publish_trial(self, trial, stamp_s: float) -> None:
        status = DiagnosticStatus(name=SYNC_TRIAL_STATUS, message=f"trial {trial.trial}",
                                  level=DiagnosticStatus.ERROR if trial.contact or trial.ssm_violations
                                  else DiagnosticStatus.OK,
                                  values=[KeyValue(key=k, value=v) for k, v in trial_key_values(trial)])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = s_to_stamp(stamp_s)
        self._trial_pub.publish(arr)


def main(args=None) -> None:
    sys.exit(run_node(lambda: SimNode(), args=args))


if __name__ == "__main__":
    main()
