"""robosuite 1.4's OSC controller step (``update`` + ``run_controller``) for the fast physics path.

Same formulas and the same calls on arrays of the same shapes and memory layouts as
``robosuite.controllers.osc.OperationalSpaceController.run_controller`` (robosuite's
numba-compiled ``opspace_matrices``/``nullspace_torques``/``orientation_error`` are
called as they are: numba's linear algebra is not numpy's), so the torques are
bit-identical (``tests/libero_gym/test_fast_physics.py``); what goes is Python
overhead: redundant ``np.array`` copies, repeated attribute lookups, the dense
nv x nv mass matrix (the 7x7 arm block is read from ``qM`` directly, as ``mj_fullM``
would copy it) and one ``mj_jacSite`` call instead of four.

Shapes: nv = model dofs, n = arm joints (7 for the Panda).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from robosuite.utils.control_utils import nullspace_torques, opspace_matrices, orientation_error

class OscStep:
    """robosuite's OSC ``update()`` (without its ``sim.forward()``) and ``run_controller()``.

    Args:
        controller: robosuite ``OperationalSpaceController`` without interpolators.
        model: the raw ``mujoco.MjModel``.
        data: the raw ``mujoco.MjData``.
        site_id: id of the controller's end-effector site.
    """

    def __init__(self, controller: Any, model: Any, data: Any, site_id: int) -> None:
        import mujoco

        self.controller = controller
        self.model = model
        self.data = data
        self.site_id = site_id
        self.nv = model.nv
        self.qvel_index = np.asarray(controller.qvel_index)
        self.qpos_index = np.asarray(controller.qpos_index)
        # Views into MjData's fixed buffers (its arrays never move), read at every substep.
        self.site_xpos = data.site_xpos[site_id]
        self.site_xmat = data.site_xmat[site_id].reshape(3, 3)
        self.qpos = data.qpos
        self.qvel = data.qvel
        self.qM = data.qM
        self.qfrc_bias = data.qfrc_bias
        # Where mj_fullM copies each entry of the arm's mass-matrix block from in qM:
        # run mj_fullM on qM = 1..nM (0 marks an entry it leaves at zero).
        ids = np.arange(1, model.nM + 1, dtype=np.float64)
        dense = np.zeros((self.nv, self.nv))
        mujoco.mj_fullM(model, dense, ids)
        block = dense[np.ix_(self.qvel_index, self.qvel_index)]
        self.m_index: np.ndarray | None = None
        if np.all(block > 0) and np.all(block == np.round(block)):
            # Transposed, so that qM[m_index].T has robosuite's (Fortran) layout.
            self.m_index = np.ascontiguousarray(block.T.astype(np.intp) - 1)

    def update(self) -> None:
        """robosuite's ``Controller.update()`` minus its ``sim.forward()``."""
        import mujoco

        c = self.controller
        qvel_index = self.qvel_index
        c.ee_pos = self.site_xpos.copy()
        c.ee_ori_mat = self.site_xmat.copy()
        jac = np.zeros((6, self.nv))
        jacp = jac[:3]
        jacr = jac[3:]
        mujoco.mj_jacSite(self.model, self.data, jacp, jacr, self.site_id)
        qvel = self.qvel
        c.ee_pos_vel = np.dot(jacp, qvel)
        c.ee_ori_vel = np.dot(jacr, qvel)
        c.joint_pos = self.qpos[self.qpos_index]
        c.joint_vel = qvel[qvel_index]
        # Same values and layouts (Fortran) as robosuite's jacp[:, idx], jacr[:, idx] and
        # their vstack: numba types its arguments by layout.
        c.J_pos = jacp[:, qvel_index]
        c.J_ori = jacr[:, qvel_index]
        c.J_full = jac[:, qvel_index]
        if self.m_index is not None:
            c.mass_matrix = self.qM[self.m_index].T
        else:
            nv = self.nv
            mass_matrix = np.ndarray(shape=(nv, nv), dtype=np.float64, order="C")
            mujoco.mj_fullM(self.model, mass_matrix, self.qM)
            c.mass_matrix = mass_matrix[qvel_index, :][:, qvel_index]
        c.new_update = False

    def run(self) -> np.ndarray:
        """robosuite's ``OperationalSpaceController.run_controller()``: the torques (n,)."""
        c = self.controller
        if c.new_update:
            self.update()
        dot = np.dot
        kp = c.kp
        kd = c.kd
        ori_error = orientation_error(np.array(c.goal_ori), c.ee_ori_mat)
        desired_force = np.multiply(c.goal_pos - c.ee_pos, kp[0:3]) + np.multiply(-c.ee_pos_vel, kd[0:3])
        desired_torque = np.multiply(ori_error, kp[3:6]) + np.multiply(-c.ee_ori_vel, kd[3:6])
        mass_matrix = c.mass_matrix
        J_full = c.J_full
        lambda_full, lambda_pos, lambda_ori, nullspace_matrix = opspace_matrices(mass_matrix, J_full, c.J_pos, c.J_ori)
        if c.uncoupling:
            decoupled_wrench = np.concatenate([dot(lambda_pos, desired_force), dot(lambda_ori, desired_torque)])
        else:
            decoupled_wrench = dot(lambda_full, np.concatenate([desired_force, desired_torque]))
        torques = dot(J_full.T, decoupled_wrench) + self.qfrc_bias[self.qvel_index]
        torques += nullspace_torques(mass_matrix, nullspace_matrix, c.initial_joint, c.joint_pos, c.joint_vel)
        c.torques = torques
        c.new_update = True
        return torques
