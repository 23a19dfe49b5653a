"""The ``model_file`` of a demo: the MuJoCo XML that rebuilds the scene it was recorded in.

LIBERO's tooling (``scripts/create_dataset.py`` and the converters built on it)
rebuilds each demo's scene with ``env.reset_from_xml_string(model_file)`` before
setting ``states[0]`` and replaying the actions, so the XML must compile to the
model the demo ran in. Two XMLs are at hand, and neither is right as is:

* ``sim.model.get_xml()`` (MuJoCo's ``mj_saveLastXML``, what robosuite's data
  collection wrapper and LIBERO's own script record) holds the fixture placement
  of this reset (LIBERO moves cabinets, stoves... by writing ``model.body_pos`` and
  ``body_quat``), but under MuJoCo 3.3 it drops ``<compiler inertiagrouprange="0 0">``:
  reloaded, visual geoms count towards mass (LIBERO's table weighs 127 kg instead
  of 60) and the replay no longer reproduces the demo. It also prints numbers with
  6 significant digits (positions off by up to ~5e-7 m, inertias by ~1e-7 relative).
* ``env.model.get_xml()`` (robosuite's own MJCF tree, what the simulator was
  compiled from) keeps the compiler attributes and full precision, but holds the
  fixtures where the XML put them, not where this reset placed them.

:func:`scene_xml` takes robosuite's tree and writes the live pose of every body
attached to the world into it at full (round-trip) precision. The result compiles
to a model whose masses, inertias, body poses and geoms equal the live model's
bit for bit (tests/libero_gym/data/test_libero_rebuild.py); only quantities MuJoCo derives at
compile time from the *original* placement differ (``dof_invweight0`` and
``dof_M0`` by ~1e-15, camera/light reference positions, the inertial frame of
massless bodies).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

ORIENTATION_ATTRS: tuple[str, ...] = ("quat", "euler", "axisangle", "xyaxes", "zaxis")
"""MJCF's alternative ways of giving a body's orientation; one ``quat`` replaces them."""


def _exact(values: Any) -> str:
    """Space-separated floats that parse back to the same doubles (``repr`` is round-trip exact)."""
    return " ".join(repr(float(value)) for value in values)


def scene_xml(robosuite_env: Any) -> str:
    """The MJCF of ``robosuite_env``'s scene as it is now (this reset's fixture placement).

    Args:
        robosuite_env: the robosuite environment (``LiberoEnv.libero_env.env``): its
            ``model`` is the MJCF tree the simulator was compiled from, its ``sim``
            the live simulator.

    Returns:
        The XML string to store as a demo's ``model_file``.

    Raises:
        ValueError: a body attached to the world is missing from the MJCF tree
            (the simulator was not compiled from ``robosuite_env.model``).
    """
    import mujoco

    root = ET.fromstring(robosuite_env.model.get_xml())
    bodies = {element.get("name"): element for element in root.iter("body") if element.get("name")}
    model = robosuite_env.sim.model._model
    for body in range(1, model.nbody):
        if model.body_parentid[body] != 0:
            continue  # placement only moves bodies attached to the world; children follow
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body)
        element = bodies.get(name)
        if element is None:
            raise ValueError(f"body {name!r} of the live model is not in robosuite's MJCF tree")
        for attribute in ORIENTATION_ATTRS:
            element.attrib.pop(attribute, None)
        element.set("pos", _exact(model.body_pos[body]))
        element.set("quat", _exact(model.body_quat[body]))
    return ET.tostring(root, encoding="unicode")
