"""Eye-to-hand extrinsic calibration of the camera against the robot base with a ChArUco board.

The board rides on the arm's flange through a set of poses; the camera stays put. From each
image the board's pose in the camera follows (:mod:`.board`), from each joint state the flange's
pose in ``world`` (Panda forward kinematics), and the hand-eye solve (:mod:`.solve`) recovers
the camera's optical frame in ``world`` -- ``camera_position_m`` / ``camera_orientation_xyzw`` of
the cell file (:mod:`.cellfile`). Samples are read from and written to a directory
(:mod:`.samples`), which the live capture (:mod:`.capture_node`, ROS) and the simulator
(:mod:`.sim_capture`) both produce. ``coop-robot calibrate`` (:mod:`.command`) drives it all.

No ROS imports outside :mod:`.capture_node`.
"""
