"""A faster LIBERO control step, with the same results as robosuite's ``step``.

robosuite 1.4's ``MujocoEnv.step`` runs, for each of the 25 physics substeps of a
20 Hz control step (``control_timestep / model_timestep`` = 0.05 s / 0.002 s)::

    sim.forward()                     # 1st full forward pass (kinematics ... constraint solver)
    env._pre_action(action)           # OSC controller: controller.update() calls sim.forward() again
    sim.step()                        # mj_step: a 3rd forward pass, then integration
    env._update_observables()         # a Python loop over ~40 observables

:class:`FastStepper` runs the same arithmetic with less work:

- ``mj_step1`` (position and velocity stages of the forward pass), then the
  controller reads the kinematics, Jacobians, mass matrix and bias forces that
  ``mj_step1`` just computed from the current state (the values two ``mj_forward``
  calls would have recomputed identically), then ``mj_step2`` (actuation,
  acceleration, constraint solver, integration). ``mj_step1`` + ``mj_step2`` is
  what ``mj_step`` does; the two dropped ``mj_forward`` passes only write derived
  quantities that the next pass overwrites (the solver's warm start, ``qacc_warmstart``,
  is written by the integrator only). The controller is robosuite's
  ``OperationalSpaceController``: its own ``set_goal``/``run_controller`` on the
  first substep of a control step, :class:`libero_gym._osc.OscStep` on the others
  (the same calls with less Python overhead: its ``update()`` without the forward
  pass, one ``mj_jacSite`` call instead of four, the arm's 7x7 mass-matrix block
  read from ``qM`` instead of the dense nv x nv matrix).
- Observables: all of LIBERO's observables sample at the control rate with no
  delay, filter or corruption, so their timers move in lockstep. One timer is
  advanced with robosuite's float arithmetic and the sensors run only on the
  substep where robosuite would run them (the first substep of each control step),
  and only if the caller wants the observation (``observe=True``): the inner steps
  of an action chunk compute and render nothing.
- Torque limits and the gripper's actuator ids and control ranges are read once,
  not by name at every substep, and ``PandaGripper.format_action`` is inlined with
  the same float arithmetic (robosuite's ``SingleArm.control`` runs as is on
  the first substep of each control step, which also sets the new goal and fills
  the robot's history buffers).

The simulator states, rewards, success flags and observations are bit-identical
to robosuite's ``step`` (``tests/libero_gym/test_fast_physics.py`` checks this on
every suite). :func:`FastStepper.supports` says when a scene falls outside these
assumptions; the env then keeps robosuite's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from libero_gym._osc import OscStep

_RENDER_FIELDS: tuple[str, ...] = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "geom_xpos", "geom_xmat", "site_xpos", "site_xmat",
    "cam_xpos", "cam_xmat", "light_xpos", "light_xdir", "subtree_com",
)
"""MjData pose arrays that rendering reads (mjv_updateScene), swapped by observe_snapshot."""

PHYSICS_MODES: tuple[str, ...] = ("fast", "upstream")
"""``fast``: :class:`FastStepper`'s loop; ``upstream``: robosuite's ``step``."""


class FastStepper:
    """Steps one robosuite/LIBERO env by control steps, as its ``step`` would.

    Args:
        env: the robosuite env (``ControlEnv.env``), already built and reset.
        fast: use ``mj_step1``/``mj_step2`` around the controller (True), or
            robosuite's own substep (``forward``, ``_pre_action``, ``step``; False).
            Either way the observables are handled as described in the module
            docstring.
    """

    def __init__(self, env: Any, fast: bool = True) -> None:
        from robosuite.models.grippers.panda_gripper import PandaGripper

        self.env = env
        self.fast = fast
        self.model = env.sim.model._model
        self.data = env.sim.data._data
        self._ctrl = self.data.ctrl  # a view into MjData's fixed buffer
        self.substeps = int(env.control_timestep / env.model_timestep)
        self.robot = robot = env.robots[0]
        controller = robot.controller
        # Constant model quantities robosuite re-reads at every substep (Robot.torque_limits,
        # Manipulator.grip_action), computed with the same expressions.
        ctrlrange = env.sim.model.actuator_ctrlrange
        self.joint_actuators = robot._ref_joint_actuator_indexes
        self.torque_low = ctrlrange[self.joint_actuators, 0]
        self.torque_high = ctrlrange[self.joint_actuators, 1]
        self.gripper_actuators = [env.sim.model.actuator_name2id(name) for name in robot.gripper.actuators]
        gripper_range = ctrlrange[self.gripper_actuators]
        self.gripper_bias = 0.5 * (gripper_range[:, 1] + gripper_range[:, 0])
        self.gripper_weight = 0.5 * (gripper_range[:, 1] - gripper_range[:, 0])
        self.site_id = env.sim.model.site_name2id(controller.eef_name)
        self.observables = [obs for obs in env._observables.values() if obs.is_enabled()]
        self.state_observables = [obs for obs in self.observables if obs.modality != "image"]
        self.image_observables = [obs for obs in self.observables if obs.modality == "image"]
        # Kinematics the cameras would have seen at the last skipped sample (see step()).
        self._snapshot_qpos: np.ndarray | None = None
        self._snapshot_mocap: tuple[np.ndarray, np.ndarray] | None = None
        self._scratch: Any = None
        self._osc: OscStep | None = None
        gripper = robot.gripper
        # PandaGripper.format_action, inlined in _control (same float arithmetic).
        self._panda_gripper = type(gripper).format_action is PandaGripper.format_action and gripper.dof == 1
        self._gripper_step = float(np.array([-1.0, 1.0])[1] * gripper.speed) if self._panda_gripper else 0.0

    @staticmethod
    def supports(env: Any) -> bool:
        """Whether ``env`` meets the assumptions of the fast loop (see the module docstring)."""
        from robosuite.controllers.osc import OperationalSpaceController
        from robosuite.utils.observables import NO_CORRUPTION, NO_DELAY, NO_FILTER

        if len(env.robots) != 1 or not env.robots[0].has_gripper:
            return False
        controller = env.robots[0].controller
        if not isinstance(controller, OperationalSpaceController):
            return False
        if controller.interpolator_pos is not None or controller.interpolator_ori is not None:
            return False  # libero_gym._osc.OscStep implements the interpolator-free run_controller
        if type(env.robots[0]).control.__module__ != "robosuite.robots.single_arm":
            return False
        for obs in env._observables.values():
            if not obs.is_enabled():
                continue
            if (
                obs._sampling_timestep != 1.0 / env.control_freq
                or obs._delayer is not NO_DELAY
                or obs._filter is not NO_FILTER
                or obs._corrupter is not NO_CORRUPTION
            ):
                return False
        return True

    def observables_in_lockstep(self) -> bool:
        """Whether every enabled observable has the same timer state (true after a reset)."""
        if not self.observables:
            return True
        first = self.observables[0]
        state = (first._time_since_last_sample, first._sampled, first._current_delay)
        return all(
            (obs._time_since_last_sample, obs._sampled, obs._current_delay) == state for obs in self.observables
        )

    # ------------------------------------------------------------------ stepping
    def step(self, action: np.ndarray, observe: str = "all") -> tuple[float, bool, dict[str, Any] | None]:
        """One control step of ``action`` (7,) float64.

        Args:
            action: the 7-D OSC_POSE + gripper action, float64.
            observe: ``"all"``: run every sensor when robosuite would and return the
                observation; ``"state"``: run the non-camera sensors, and instead of
                rendering keep the joint positions the cameras would have seen, so
                that :meth:`observe_snapshot` can render them later if this step turns
                out to be the chunk's last; ``"none"``: run no sensor.

        Returns:
            (reward, success, raw observation dict, or None unless ``observe="all"``).
        """
        import mujoco

        if observe not in ("all", "state", "none"):
            raise ValueError(f"observe must be one of ['all', 'state', 'none'], got {observe!r}")
        env = self.env
        snapshot = observe == "state" and bool(self.image_observables)
        if env.done:
            raise ValueError("executing action in terminated episode")
        env.timestep += 1

        robot = self.robot
        controller = robot.controller
        model, data = self.model, self.data
        osc = self._osc
        if osc is None or osc.controller is not controller or osc.data is not data:
            from libero_gym._osc import OscStep

            osc = self._osc = OscStep(controller, model, data, self.site_id)
        observables = self.observables
        obs_cache = env._obs_cache
        timestep = env.model_timestep
        if observables:
            lead = observables[0]
            elapsed = lead._time_since_last_sample
            sampled = lead._sampled
            delay = lead._current_delay
            period = lead._sampling_timestep
        policy_step = True
        for _ in range(self.substeps):
            sample = False
            if observables:
                # robosuite's Observable.update, for all observables at once; the timer
                # does not depend on the physics, so it runs before the substep.
                elapsed += timestep
                if not sampled and period - delay >= elapsed:
                    sample, sampled, delay = True, True, 0.0
                if elapsed >= period:
                    if not sampled:
                        print(
                            "Warning: sampling rate for observables is either too low or delay is too high. "
                            "Please adjust one (or both)"
                        )
                        sample, delay = True, 0.0
                    elapsed %= period
                    sampled = False
                if sample and snapshot:
                    # The sample reads the kinematics mj_step1 computes from this
                    # configuration (the integration after it changes qpos, not poses).
                    self._snapshot_qpos = np.array(data.qpos)
                    self._snapshot_mocap = (np.array(data.mocap_pos), np.array(data.mocap_quat))
            if self.fast:
                mujoco.mj_step1(model, data)
                if controller.new_update:
                    # As robosuite's update(): skipped while new_update is False, which is
                    # the case on the first substep after a reset (the new controller
                    # updated itself at construction, before set_init_state): that substep
                    # runs on the construction-time kinematics, in LIBERO too.
                    osc.update()
                if policy_step:
                    robot.control(action, policy_step=True)  # new goal, history buffers
                else:
                    self._control(action)
                mujoco.mj_step2(model, data)
            else:
                env.sim.forward()
                env._pre_action(action, policy_step)
                env.sim.step()
            policy_step = False
            if sample:
                self._sample(obs_cache, observe)
        for obs in observables:
            obs._time_since_last_sample = elapsed
            obs._sampled = sampled
            obs._current_delay = delay

        env.cur_time += env.control_timestep
        reward, _, _ = env._post_action(action)  # BDDL goal check, LIBERO's _post_process
        raw_obs = env._get_observations() if observe == "all" else None
        success = bool(env._check_success())  # LIBERO's step: done = _check_success()
        return float(reward), success, raw_obs

    def _control(self, action: np.ndarray) -> None:
        """robosuite's ``SingleArm.control(action, policy_step=False)`` with cached limits."""
        robot = self.robot
        torques = self._osc.run()  # type: ignore[union-attr]
        robot.torques = torques = np.minimum(np.maximum(torques, self.torque_low), self.torque_high)
        gripper = robot.gripper
        control_dim = robot.controller.control_dim
        if self._panda_gripper and len(action) == control_dim + 1:
            # PandaGripper.format_action: clip(current + [-1, 1] * speed * sign(a), -1, 1).
            sign = np.sign(action[control_dim])
            step = self._gripper_step * sign
            current = gripper.current_action  # (1,) (broadcast, as robosuite's) or (2,)
            gripper_action_actual = np.array(
                [min(max(current[0] - step, -1.0), 1.0), min(max(current[-1] + step, -1.0), 1.0)]
            )
            gripper.current_action = gripper_action_actual
        else:
            gripper_action_actual = gripper.format_action(action[control_dim:])
        ctrl = self._ctrl
        ctrl[self.gripper_actuators] = self.gripper_bias + self.gripper_weight * gripper_action_actual
        ctrl[self.joint_actuators] = torques

    def observe_snapshot(self) -> dict[str, Any]:
        """The observation of the last ``observe="state"`` step, as ``observe="all"`` gives it.

        The non-camera sensors already ran at the right substep; the cameras render
        the kinematics of the kept joint positions. The pose arrays the renderer reads
        are swapped in from a scratch ``MjData`` and put back afterwards, so the
        simulator state is untouched.
        """
        import mujoco

        if self.image_observables and self._snapshot_qpos is not None:
            if self._scratch is None:
                self._scratch = mujoco.MjData(self.model)
            scratch = self._scratch
            scratch.qpos[:] = self._snapshot_qpos
            scratch.mocap_pos[:], scratch.mocap_quat[:] = self._snapshot_mocap  # type: ignore[misc]
            mujoco.mj_kinematics(self.model, scratch)
            mujoco.mj_comPos(self.model, scratch)
            mujoco.mj_camlight(self.model, scratch)
            saved = {name: np.array(getattr(self.data, name)) for name in _RENDER_FIELDS}
            try:
                for name in _RENDER_FIELDS:
                    getattr(self.data, name)[:] = getattr(scratch, name)
                for obs in self.image_observables:
                    self._sample_one(obs, self.env._obs_cache)
            finally:
                for name in _RENDER_FIELDS:
                    getattr(self.data, name)[:] = saved[name]
            self._snapshot_qpos = None
        return self.env._get_observations()

    def _sample(self, obs_cache: dict[str, Any], observe: str) -> None:
        """Run the enabled sensors once, in robosuite's order (later ones read the cache)."""
        if observe == "none":
            return
        for obs in self.observables if observe == "all" else self.state_observables:
            self._sample_one(obs, obs_cache)

    @staticmethod
    def _sample_one(obs: Any, obs_cache: dict[str, Any]) -> None:
        """robosuite's ``Observable.update`` sampling branch, for one observable."""
        value = np.array(obs._filter(obs._corrupter(obs._sensor(obs_cache))))
        obs._current_observed_value = value[0] if len(value.shape) == 1 and value.shape[0] == 1 else value
        obs_cache[obs.name] = np.array(obs._current_observed_value)
