"""LIBERO manipulation tasks as a Gymnasium environment.

The simulator (robosuite 1.4 + MuJoCo, through LIBERO's own ``ControlEnv``) is
built lazily, at the first ``reset`` and inside the process that steps it, so
constructing the env, pickling it or sending it to a vector worker never touches
OpenGL or MuJoCo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from libero_gym import camera_channels, control, suites
from libero_gym.camera_channels import CameraOptions
from libero_gym.env_checks import check_action, check_actions, check_choice, check_init_state_ids, check_int
from libero_gym.errors import InvalidInputError
from libero_gym.fast_physics import PHYSICS_MODES
from libero_gym.libero_config import import_libero, resolve_assets_path
from libero_gym.libero_reset import (
    cameras_off,
    fixture_joint_addresses,
    fixture_xml_poses,
    reset_scene,
    seeded_global_numpy,
)
from libero_gym.spaces import (  # noqa: F401  (re-exported: the observation layout)
    ACTION_DIM,
    CAMERAS,
    MAX_FIXTURE_JOINTS,
    OBJECT_DIM,
    OBJECT_STATE_PER_OBJECT,
    OBS_MODES,
    PROPRIO_DIM,
    PROPRIO_KEYS,
    PROPRIO_SLICES,
    ObsMode,
    observation_space,
)
from libero_gym.suites import Task

RESET_MODES: tuple[str, ...] = ("fast", "hard")
RESET_OPTIONS: tuple[str, ...] = ("task_id", "init_state_id", "layout_seed")

SETTLE_ACTION = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])
"""No motion, gripper open: what openvla-oft/openpi send while objects settle."""

DEFAULT_SETTLE_STEPS = 10
"""Steps of :data:`SETTLE_ACTION` after restoring an init state, so that objects
placed slightly above their supports come to rest (openvla-oft, openpi use 10).
Not counted in the episode's step budget."""


class LiberoEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A LIBERO task (or several) on robosuite 1.4 + MuJoCo, Gymnasium 1.x API.

    ## Action space
    ``control_mode="delta"`` (default): ``Box(-1, 1, (7,), float32)``, robosuite's ``OSC_POSE``
    controller at 20 Hz:

    ====  ===================================================  ==========================
    idx   meaning                                              scale at 1.0
    ====  ===================================================  ==========================
    0-2   end-effector translation delta (x, y, z, base frame)  0.05 m per step
    3-5   end-effector rotation delta (axis-angle)              0.5 rad per step
    6     gripper: -1 open, +1 close                            -
    ====  ===================================================  ==========================

    A wrong shape, NaN or inf raises ``ValueError``. Values outside [-1, 1] are
    clipped by the controller, as in LIBERO. ``control_mode="absolute"``: the same controller
    with ``control_delta=False`` (LeRobot's LIBERO env offers it): 0-2 the target end-effector
    position (m), 3-5 its orientation as an axis-angle vector (rad), both in the world frame,
    neither scaled nor clipped; 6 the gripper; ``Box`` bounds +-3 m, +-pi, +-1
    (:mod:`libero_gym.control`). Settle steps then hold the pose of the init state. The mode is
    in ``env.spec.kwargs`` (when given to ``gym.make``) and ``env.unwrapped.metadata["control_mode"]``.

    ## Observation space
    A flat ``Dict`` (Stable-Baselines3 rejects nested ones). Keys by ``obs_mode``:

    =====================  =======================  ======================================  ===============
    key                    shape, dtype             content                                  modes
    =====================  =======================  ======================================  ===============
    ``proprio``            (39,) float32            joint pos/cos/sin/vel (rad, rad/s), EE   all
                                                    pos (m), EE quat (xyzw), gripper
                                                    finger pos (m) and vel; see PROPRIO_SLICES
    ``object``             (OBJECT_DIM,) float32    per object pos (m), quat, pos and quat   state, both
                                                    relative to the EE, zero-padded to
                                                    MAX_OBJECTS; then fixture joint
                                                    positions, zero-padded
    ``agentview_image``    (S, S, 3) uint8          third-person camera                      pixels, both
    ``eye_in_hand_image``  (S, S, 3) uint8          wrist camera                             pixels, both
    ``task_index``         Discrete(n_suite_tasks)  index of the current task in its suite   all
    =====================  =======================  ======================================  ===============

    Camera options (any mode; :mod:`libero_gym.camera_channels`). ``cameras=(...)`` picks the
    cameras (LIBERO's names: ``agentview``, ``robot0_eye_in_hand``, ``frontview``, ``birdview``,
    ``sideview``, ``galleryview``, ``robot0_robotview``, ``paperview`` (kitchen, living room, study));
    camera ``c`` gives key stem ``k`` = ``c`` without ``robot0_``, so ``<k>_image`` in pixel modes.
    ``depth=True`` adds ``<k>_depth`` (S, S, 1) float32: metric planar depth (m) from the same
    render as the image. ``segmentation=True`` adds ``<k>_segmentation`` (S, S, 1) uint8 instance
    ids: 0 background, 1 robot, then objects and fixtures; the table is
    ``info["segmentation_ids"]`` at reset. ``point_cloud=N`` adds ``point_cloud`` (N, 3) float32:
    the cameras' depth back-projected into the robot base frame (m), N points by farthest-point
    sampling (deterministic). Depth and masks are oriented like the images.

    Images are rotated 180 degrees (upright, as openvla-oft, openpi and LeRobot feed
    policies) when ``rotate_images=True`` (the default); LIBERO's own renders and
    HDF5 datasets are upside down. The language instruction is
    ``env.unwrapped.language_instruction`` and ``info["language_instruction"]``.

    ## Reward, termination, truncation
    Sparse: 1.0 on the step the BDDL goal holds, else 0.0. ``terminated`` on
    success. ``truncated`` after the suite's step limit
    (:data:`libero_gym.suites.MAX_EPISODE_STEPS`, applied by Gymnasium's
    ``TimeLimit``; override with ``gym.make(id, max_episode_steps=N)``).
    ``info["is_success"]`` is the success flag.

    ## Action chunks
    ``env.unwrapped.step_chunk(actions)`` runs ``actions`` (Ta, 7) as Ta control
    steps and returns ``(obs, summed_reward, terminated, truncated, info)``; it stops
    early at success (``terminated``) or at the step limit (``truncated``), and
    ``info["chunk_steps"]`` says how many actions ran. Only the last step's
    observation is computed: no camera renders for the steps in between. States,
    rewards, flags and the final observation equal those of Ta ``step`` calls.
    ``TimeLimit`` counts ``step`` calls and the env cannot see it, so the env counts
    control steps itself (``elapsed_steps``, reset to 0 by ``reset``; ``step`` and
    ``step_chunk`` both add to it) and ``step_chunk`` truncates itself after
    ``step_limit`` control steps (default: the suite's
    :data:`~libero_gym.suites.MAX_EPISODE_STEPS`, the same budget as ``TimeLimit``'s
    default). ``chunk_size=Ta`` makes the chunk the action: ``action_space`` becomes
    ``Box(-1, 1, (Ta, 7))`` and ``step`` runs ``step_chunk``; this is the path for
    vector envs (``gym.make_vec(id, n, chunk_size=8)``). ``TimeLimit`` then counts
    chunks, which are never more than control steps, so ``step_limit`` ends the
    episode first: with ``chunk_size``, change the budget with ``step_limit=N``,
    not ``max_episode_steps`` (which would count chunks).

    ## Physics
    ``physics="fast"`` (default) steps through :class:`libero_gym.fast_physics.FastStepper`:
    robosuite's OSC controller and MuJoCo's dynamics without the two redundant
    forward passes per substep and with observables computed only when read;
    simulator states, rewards and observations are bit-identical to LIBERO's
    ``step`` (tested on every suite). ``physics="upstream"`` calls LIBERO's
    ``step`` itself.

    ## Reset
    ``reset(seed=s)`` picks one of the task's 50 fixed LIBERO init states with the
    env's seeded RNG (and a task, when the env runs several), and the seed of
    LIBERO's fixture placement (``layout_seed``: LIBERO moves and turns fixtures
    such as the cabinet (by up to ~1.5 cm) at every reset, outside the init state). ``options``
    can name each: ``{"task_id": t, "init_state_id": i, "layout_seed": l}``; all
    three are in ``info``, so an episode can be re-created. Then ``settle_steps`` no-op steps
    let objects come to rest (not counted in the step budget). ``reset_mode="fast"``
    restores the init state on the already-built model; ``"hard"`` rebuilds it as
    LIBERO does by default (same states, tested; ~1 s slower).

    Args:
        suite: suite key or id name (``libero_goal``, ``Goal``, ``Long``...).
        task_id: index of the task in the suite, a list of indices (a task is drawn
            at each reset), or ``"all"``.
        obs_mode: ``"state"``, ``"pixels"`` or ``"both"``.
        image_size: height and width of camera images, in pixels.
        rotate_images: rotate images by 180 degrees (upright).
        render_mode: ``None`` or ``"rgb_array"`` (the agentview camera).
        settle_steps: no-op steps after each reset.
        reset_mode: ``"fast"`` or ``"hard"``.
        physics: ``"fast"`` or ``"upstream"`` (see Physics).
        chunk_size: None (actions (7,)), or Ta: actions are (Ta, 7) chunks.
        init_state_ids: init states that resets without ``options["init_state_id"]``
            take in turn, cycling (LIBERO's evaluation order: episode i from init state
            i); a ``reset(seed=...)`` starts the cycle again. Default: drawn at random.
        step_limit: control steps after which ``step_chunk`` truncates (default:
            the suite's ``MAX_EPISODE_STEPS``).
        assets_path: LIBERO asset folder; default ``$LIBERO_GYM_ASSETS``.
        cameras, depth, point_cloud, segmentation: camera options (see Observation space).
        control_mode: ``"delta"`` or ``"absolute"`` (see Action space).

    ## Version history
    - v0: initial release; ``step_chunk``, ``chunk_size``, ``physics``, the camera options and
      ``control_mode`` added later in v0 (defaults give the same results as before).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        suite: str = "libero_goal",
        task_id: int | Sequence[int] | str = 0,
        obs_mode: ObsMode = "state",
        image_size: int = 128,
        rotate_images: bool = True,
        render_mode: str | None = None,
        settle_steps: int = DEFAULT_SETTLE_STEPS,
        reset_mode: str = "fast",
        physics: str = "fast",
        chunk_size: int | None = None,
        step_limit: int | None = None,
        assets_path: str | os.PathLike[str] | None = None,
        init_state_ids: Sequence[int] | None = None,
        cameras: Sequence[str] = camera_channels.DEFAULT_CAMERAS,
        depth: bool = False,
        point_cloud: int | None = None,
        segmentation: bool = False,
        control_mode: control.ControlMode = "delta",
    ) -> None:
        self.suite, self.task_ids, n_tasks, default_step_limit = self._catalogue(suite, task_id)
        check_choice("obs_mode", obs_mode, OBS_MODES)
        check_choice("render_mode", render_mode, [None, *self.metadata["render_modes"]])
        check_choice("reset_mode", reset_mode, RESET_MODES)
        check_int("image_size", image_size, 16, 1024)
        check_int("settle_steps", settle_steps, 0)
        check_choice("physics", physics, PHYSICS_MODES)
        check_int("chunk_size", chunk_size, 1, optional=True)
        check_int("step_limit", step_limit, 1, optional=True)
        self.init_state_ids = check_init_state_ids(init_state_ids, self.num_init_states)
        self._init_state_turn = 0  # index into init_state_ids of the next reset
        self.camera_options = CameraOptions.parse(cameras, depth, point_cloud, segmentation)
        self.control_mode = control.check_control_mode(control_mode)
        self.metadata = {**self.metadata, "control_mode": control_mode}
        self.physics = physics
        self.step_limit = step_limit if step_limit is not None else default_step_limit
        self.chunk_size = chunk_size
        self.obs_mode = obs_mode
        self.image_size = image_size
        self.rotate_images = rotate_images
        self.render_mode = render_mode
        self.settle_steps = settle_steps
        self.reset_mode = reset_mode
        self.assets_path = assets_path
        if assets_path is not None:
            # Fail at construction, in the caller's process, not in a worker.
            resolve_assets_path(assets_path)

        self.task: Task = self._get_task(self.task_ids[0])
        self.init_state_id: int | None = None
        self.layout_seed: int | None = None

        families = [suites.SCENE_FAMILIES.get(self._get_task(t).problem_name) for t in self.task_ids]
        self.camera_options.check_scenes(families)
        self.action_space = control.action_space(chunk_size, control_mode)
        self.observation_space = observation_space(
            obs_mode, image_size, n_tasks,
            None if self.camera_options.is_default else self.camera_options.spaces(image_size, self.uses_pixels),
        )

        # Built lazily in the process that steps the env (see _build).
        self._libero_env: Any = None
        self._built_task: Task | None = None
        self._init_states: dict[int, np.ndarray] = {}
        self._fixture_qpos_addr: np.ndarray = np.zeros(0, dtype=np.int64)
        self._fixture_xml_poses: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._last_raw_obs: dict[str, np.ndarray] | None = None
        self._stepper: Any = None  # FastStepper of the current robosuite env, or None
        self._near_far = (0.0, 0.0)  # the model's depth clipping distances (m)
        self.elapsed_steps = 0
        """Control steps since the last reset (``step`` and ``step_chunk``)."""

    # ------------------------------------------------------------------ properties
    @property
    def uses_state(self) -> bool:
        """Whether observations hold object state."""
        return self.obs_mode in ("state", "both")

    @property
    def uses_pixels(self) -> bool:
        """Whether observations hold camera images."""
        return self.obs_mode in ("pixels", "both")

    @property
    def language_instruction(self) -> str:
        """The current task's language instruction."""
        return self.task.language

    @property
    def libero_env(self) -> Any:
        """LIBERO's ``ControlEnv`` of the current task (built on first use)."""
        if self._libero_env is None or self._built_task != self.task:
            self._build(self.task)
        return self._libero_env

    @property
    def sim(self) -> Any:
        """robosuite's ``MjSim`` of the current task (built on first use)."""
        return self.libero_env.sim

    # ------------------------------------------------------------------ simulator
    def _build(self, task: Task) -> None:
        """Build LIBERO's env for ``task``, closing the previous one."""

        import_libero(self.assets_path)
        from libero.libero.envs import OffScreenRenderEnv
        from libero.libero.envs.env_wrapper import ControlEnv

        from libero_gym import rendering

        # Every render context must use its own GL context, whatever else renders in
        # this process (another env, a closed one): see libero_gym.rendering.
        rendering.install()
        self._close_simulator()
        bddl = self._bddl_path(task)
        options = self.camera_options
        needs_renderer = self.uses_pixels or self.render_mode == "rgb_array" or options.needs_renderer
        env_cls = OffScreenRenderEnv if needs_renderer else ControlEnv
        self._libero_env = env_cls(
            bddl_file_name=bddl,
            use_camera_obs=self.uses_pixels or options.needs_camera_obs,
            has_offscreen_renderer=needs_renderer,
            camera_heights=self.image_size,
            camera_widths=self.image_size,
            # The episode budget is Gymnasium's TimeLimit; robosuite must never end it.
            ignore_done=True,
            # The model was just built by the constructor; a hard reset would build it
            # again. reset() below decides per call.
            hard_reset=False,
            **options.libero_kwargs(),
        )
        self._built_task = task
        if not options.is_default:
            self._near_far = camera_channels.install(self._libero_env.env, options, self.image_size)
        control.set_control_mode(self._libero_env.env, self.control_mode)
        self._fixture_qpos_addr = fixture_joint_addresses(self._libero_env.sim)
        self._fixture_xml_poses = fixture_xml_poses(self._libero_env.env)

    # ------------------------------------------------------------------ task catalogue (subclass hooks)
    num_init_states: int = suites.NUM_INIT_STATES
    """Init states per task (LIBERO's 50)."""

    def _catalogue(self, suite: str, task_id: int | Sequence[int] | str) -> tuple[str, tuple[int, ...], int, int]:
        """(suite key, task indices, tasks in the suite, default step limit) of the constructor's arguments."""
        key = suites.resolve_suite(suite)
        return key, suites.resolve_task_ids(key, task_id), len(suites.get_suite(key)), suites.MAX_EPISODE_STEPS[key]

    def _get_task(self, task_id: int) -> Task:
        return suites.get_task(self.suite, task_id)

    def _bddl_path(self, task: Task) -> str:
        libero_pkg = import_libero(self.assets_path)
        return os.path.join(libero_pkg.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)

    def _read_init_states(self, task: Task) -> np.ndarray:
        import torch

        libero_pkg = import_libero(self.assets_path)
        path = os.path.join(libero_pkg.get_libero_path("init_states"), task.problem_folder, task.init_states_file)
        # LIBERO saved these with torch.save; they hold a numpy array, hence
        # weights_only=False (torch >= 2.6 defaults to True).
        return np.asarray(torch.load(path, weights_only=False))

    def _load_init_states(self, task: Task) -> np.ndarray:
        if task.index not in self._init_states:
            self._init_states[task.index] = self._read_init_states(task)
        return self._init_states[task.index]

    def init_states(self, task_id: int | None = None) -> np.ndarray:
        """The fixed init states (flattened MuJoCo states) of a task, (num_init_states, S) float64."""
        task = self.task if task_id is None else self._get_task(task_id)
        return self._load_init_states(task)

    def _close_simulator(self) -> None:
        if self._libero_env is not None:
            self._libero_env.close()
            self._libero_env = None
            self._built_task = None

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(RESET_OPTIONS)
        if unknown:
            raise InvalidInputError(f"reset options must be among {list(RESET_OPTIONS)}, got {sorted(unknown)}")

        task_id = options.get("task_id")
        if task_id is None:
            task_id = self.task_ids[0] if len(self.task_ids) == 1 else int(self.np_random.choice(self.task_ids))
        elif task_id not in self.task_ids:
            raise InvalidInputError(f"options['task_id'] must be one of {list(self.task_ids)}, got {task_id!r}")
        self.task = self._get_task(int(task_id))

        init_state_id = options.get("init_state_id")
        if seed is not None:
            self._init_state_turn = 0
        if init_state_id is None and self.init_state_ids is not None:
            init_state_id = self.init_state_ids[self._init_state_turn % len(self.init_state_ids)]
            self._init_state_turn += 1
        elif init_state_id is None:
            init_state_id = int(self.np_random.integers(self.num_init_states))
        elif isinstance(init_state_id, bool) or not isinstance(init_state_id, (int, np.integer)) or not (
            0 <= init_state_id < self.num_init_states
        ):
            raise InvalidInputError(
                f"options['init_state_id'] must be an int in [0, {self.num_init_states - 1}], got {init_state_id!r}"
            )
        self.init_state_id = int(init_state_id)

        layout_seed = options.get("layout_seed")
        if layout_seed is None:
            layout_seed = int(self.np_random.integers(2**31))
        self.layout_seed = int(layout_seed)

        # LIBERO's reset re-samples fixture placements (the cabinet, stove... move and
        # turn by up to ~1.5 cm: model.body_pos/quat, not part of the init state) from
        # numpy's global RNG. Seed it from our RNG for this call only, so that the seed
        # fixes the whole scene and the caller's global RNG is left as it was.
        with seeded_global_numpy(self.layout_seed):
            fresh = self._libero_env is None or self._built_task != self.task
            libero_env = self.libero_env  # builds on first use or task change
            reset_scene(libero_env, self._fixture_xml_poses, self.layout_seed, hard=self.reset_mode == "hard" and not fresh)
        from libero_gym.fast_physics import FastStepper

        robosuite_env = libero_env.env
        self._stepper = None
        if FastStepper.supports(robosuite_env):
            stepper = FastStepper(robosuite_env, fast=self.physics == "fast")
            self._stepper = stepper if stepper.observables_in_lockstep() else None
        init_state = self._load_init_states(self.task)[self.init_state_id]
        if self.settle_steps > 0 and self._stepper is not None:
            # Only the last settle step's observation is returned: render nothing before.
            with cameras_off(robosuite_env):
                libero_env.set_init_state(init_state)
            settle = self._settle_action()
            for i in range(self.settle_steps):
                observe = "all" if i == self.settle_steps - 1 else "state"
                _, _, raw_obs = self._stepper.step(settle, observe=observe)
        else:
            raw_obs = libero_env.set_init_state(init_state)
            settle = self._settle_action()
            for _ in range(self.settle_steps):
                raw_obs, _, _, _ = libero_env.step(settle)
        self.elapsed_steps = 0
        self._last_raw_obs = raw_obs
        info = self._info(success=False)
        if self.camera_options.segmentation:
            info[camera_channels.SEGMENTATION_IDS_KEY] = camera_channels.segmentation_table(robosuite_env)
        return self._observation(raw_obs), info

    def _settle_action(self) -> np.ndarray:
        """What settle steps send: no motion, gripper open (absolute mode: hold the current pose)."""
        return SETTLE_ACTION if self.control_mode == "delta" else control.hold_action(self._libero_env.env)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.chunk_size is not None:
            return self.step_chunk(action)
        if self._libero_env is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        action = check_action(action)
        _, success, raw_obs = self._control_step(action, observe="all")
        self._last_raw_obs = raw_obs
        return self._observation(raw_obs), float(success), success, False, self._info(success)

    def step_chunk(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Run an action chunk; only the last step's observation is computed.

        Args:
            actions: (Ta, 7) actions, run in order until the chunk ends, the task
                succeeds or the episode reaches ``step_limit`` control steps.

        Returns:
            ``(obs, summed_reward, terminated, truncated, info)``: the observation after
            the last action that ran, the sum of the step rewards, success, whether
            ``step_limit`` ended the episode (and success did not), and the info of that
            last step with ``info["chunk_steps"]``, the number of actions that ran.
        """
        if self._libero_env is None:
            raise gym.error.ResetNeeded("Call reset() before step_chunk().")
        actions = check_actions(actions)
        limit = self.step_limit
        total_reward, success, raw_obs, ran = 0.0, False, None, 0
        for i, action in enumerate(actions):
            # The last step is known in advance unless success ends the chunk early;
            # then the observation comes from the snapshot the stepper kept.
            last = i == len(actions) - 1 or self.elapsed_steps + 1 >= limit
            reward, success, raw_obs = self._control_step(action, observe="all" if last else "state")
            total_reward += reward
            ran = i + 1
            if success or last:
                break
        if raw_obs is None:
            raw_obs = self._stepper.observe_snapshot()
        self._last_raw_obs = raw_obs
        truncated = not success and self.elapsed_steps >= limit
        info = self._info(success)
        info["chunk_steps"] = ran
        return self._observation(raw_obs), total_reward, success, truncated, info

    def _control_step(self, action: np.ndarray, observe: str) -> tuple[float, bool, dict[str, np.ndarray] | None]:
        """One control step: (reward, success, raw observation or None); see FastStepper.step."""
        self.elapsed_steps += 1
        if self._stepper is None or (self.physics == "upstream" and observe == "all"):
            raw_obs, reward, success, _ = self._libero_env.step(action)
            # LIBERO's step returns the BDDL goal check as `done`.
            return float(reward), bool(success), raw_obs
        return self._stepper.step(action, observe=observe)

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; make the env with render_mode='rgb_array'.")
            return None
        if self._libero_env is None:
            raise gym.error.ResetNeeded("Call reset() before render().")
        if self._last_raw_obs is not None and "agentview_image" in self._last_raw_obs:
            image = self._last_raw_obs["agentview_image"]
        else:
            image = self.sim.render(camera_name="agentview", width=self.image_size, height=self.image_size)
        return self._orient(image)

    def close(self) -> None:
        self._close_simulator()
        super().close()

    # ------------------------------------------------------------------ helpers
    def _orient(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(image[::-1, ::-1]) if self.rotate_images else image

    def _observation(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        obs: dict[str, Any] = {
            "proprio": np.concatenate([raw[key] for key, _ in PROPRIO_KEYS]).astype(np.float32)
        }
        if self.uses_state:
            obj = np.zeros(OBJECT_DIM, dtype=np.float32)
            object_state = raw["object-state"]
            obj[: object_state.shape[0]] = object_state
            fixtures = self.sim.data.qpos[self._fixture_qpos_addr]
            start = suites.MAX_OBJECTS * OBJECT_STATE_PER_OBJECT
            obj[start : start + fixtures.shape[0]] = fixtures
            obs["object"] = obj
        if not self.camera_options.is_default:
            obs.update(self.camera_options.observation(raw, self.uses_pixels, self._orient, self._near_far))
        elif self.uses_pixels:
            for key, camera in CAMERAS.items():
                obs[key] = self._orient(raw[f"{camera}_image"])
        obs["task_index"] = self.task.index
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "is_success": success,
            "task_id": self.task.index,
            "init_state_id": self.init_state_id,
            "layout_seed": self.layout_seed,
            "language_instruction": self.task.language,
        }

    def get_sim_state(self) -> np.ndarray:
        """The flattened MuJoCo state (time, qpos, qvel), as LIBERO stores ``states``."""
        return np.asarray(self.libero_env.get_sim_state(), dtype=np.float64).copy()

    def set_sim_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Restore a flattened MuJoCo state and return the observation there."""
        raw = self.libero_env.regenerate_obs_from_state(np.asarray(state, dtype=np.float64))
        self._last_raw_obs = raw
        return self._observation(raw)

    def check_success(self) -> bool:
        """Whether the current task's BDDL goal holds now."""
        return bool(self.libero_env.check_success())
