"""The live view: the zone, the hand, the arm, separation monitoring and the policy's decision as
a 3D scene (RViz markers from the ``live_view`` node, or a Foxglove WebSocket server)."""
