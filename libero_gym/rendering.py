"""Render contexts that use their own GL context: an env's images never depend on its neighbours.

robosuite 1.4 renders every camera through ``MjSim.render``, which calls its
``MjRenderContext``'s ``render`` and ``read_pixels``. Neither makes the context's own
GL context current first: each one creates its GL context and makes it current once,
in its constructor. With several render contexts in one thread (a ``SyncVectorEnv``,
a test process, an env next to an evaluation env) the one made current last wins, so
an env draws with another env's GL objects (textures, framebuffer): images of the
wrong scene, or black ones once that other context was freed. LIBERO's hard reset
hides this by rebuilding the renderer at every reset; libero-gym's fast reset does not.

Freeing has the mirror problem: ``MjRenderContext.__del__`` frees its ``MjrContext``
(``glDelete*`` of its textures and framebuffers) in whatever GL context is current,
and OpenGL object names are per context (every context numbers its textures from 1),
so closing env B while env A's context is current deletes A's objects.

:func:`install` fixes both at the root, once per process, in robosuite's class:

- ``render``, ``read_pixels`` and ``update_offscreen_size`` make the context's own GL
  context current first. Every render path of libero-gym goes through them: camera
  observations (robosuite's camera observables, also from
  :meth:`~libero_gym.fast_physics.FastStepper.observe_snapshot`),
  ``LiberoEnv.render()`` (so evaluation videos), ``LiberoEnv.set_sim_state``, and the
  collection worker's rendering of stored states.
- ``__del__`` makes its own GL context current before freeing (or, when that GL
  context is already gone, e.g. garbage collection finalised it first, a scratch one
  with no objects of any env), then makes current again the context that was
  current before.

MuJoCo's other per-context state lives in the ``MjrContext`` (offscreen buffer ids,
``currentBuffer``) or in the GL context itself (the framebuffer bound by
``mjr_setBuffer`` at creation, in the context's own GL context), so making the GL
context current restores all of it. Cost: two ``make_current`` calls per frame
(``render`` and ``read_pixels``), measured at ~7 us each with Mesa's software EGL,
against ~100 ms to render a 128x128 frame on the same CPU.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from typing import Any

_INSTALLED = False
"""Whether robosuite's render context class is patched in this process."""
_LOCK = threading.Lock()
_CURRENT = threading.local()
"""Per thread (GL contexts are current per thread): ``.ref``, a weak reference to the
GL context this module made current last, restored after a free."""
_SCRATCH: list[Any] = []
"""The scratch GL context (created on first need), current while an orphaned
``MjrContext`` is freed so that its ``glDelete*`` calls cannot reach a live env's objects."""
_SCRATCH_SIZE = 1
"""Width and height of the scratch context's buffer: it never renders."""


def install() -> None:
    """Patch robosuite's ``MjRenderContext`` (once per process; later calls do nothing).

    Call before robosuite creates render contexts (``LiberoEnv`` does when it builds
    its simulator). Idempotent and thread-safe.
    """
    global _INSTALLED
    with _LOCK:
        if _INSTALLED:
            return
        from robosuite.utils import binding_utils

        cls = binding_utils.MjRenderContext
        _wrap_make_current(cls, "render")
        _wrap_make_current(cls, "read_pixels")
        _wrap_make_current(cls, "update_offscreen_size")
        _wrap_init(cls)
        _wrap_del(cls)
        _INSTALLED = True


def make_current(gl_ctx: Any) -> None:
    """Make ``gl_ctx`` (a robosuite/MuJoCo ``GLContext``) current in this thread, and remember it."""
    gl_ctx.make_current()
    _CURRENT.ref = weakref.ref(gl_ctx)


def _alive(gl_ctx: Any) -> bool:
    """Whether a robosuite/MuJoCo GL context still holds its context (``free`` sets ``_context`` to None)."""
    return gl_ctx is not None and bool(getattr(gl_ctx, "_context", None))


def _wrap_make_current(cls: type, name: str) -> None:
    """Make ``cls.<name>`` make the render context's own GL context current first."""
    original = getattr(cls, name)

    @functools.wraps(original)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        make_current(self.gl_ctx)
        return original(self, *args, **kwargs)

    setattr(cls, name, wrapped)


def _wrap_init(cls: type) -> None:
    """Record the GL context the constructor made (and left) current."""
    original = cls.__init__

    @functools.wraps(original)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _CURRENT.ref = weakref.ref(self.gl_ctx)

    setattr(cls, "__init__", wrapped)


def _wrap_del(cls: type) -> None:
    """Free in the render context's own GL context (or the scratch one), then restore the previous one."""
    original = cls.__del__

    @functools.wraps(original)
    def wrapped(self: Any) -> None:
        own = getattr(self, "gl_ctx", None)
        if not hasattr(self, "con"):  # the constructor failed before the MjrContext existed
            return original(self)
        previous_ref = getattr(_CURRENT, "ref", None)
        previous = previous_ref() if previous_ref is not None else None
        try:
            (own if _alive(own) else _scratch()).make_current()
        except Exception:  # noqa: BLE001
            # Only at interpreter exit, after robosuite's atexit terminated the EGL
            # display: no env renders any more; free as upstream does.
            previous = None
        try:
            original(self)
        finally:
            if previous is not None and previous is not own and _alive(previous):
                make_current(previous)
            else:
                _CURRENT.ref = None

    setattr(cls, "__del__", wrapped)


def _scratch() -> Any:
    """A tiny GL context of robosuite's backend that holds no env's objects."""
    if not _SCRATCH:
        from robosuite.utils import binding_utils

        _SCRATCH.append(binding_utils.GLContext(max_width=_SCRATCH_SIZE, max_height=_SCRATCH_SIZE))
        # Freed at exit before robosuite's EGL display terminates (atexit runs last in,
        # first out; robosuite registered its eglTerminate when the first env's context
        # was made), else its finaliser reports an EGL error.
        atexit.register(_free_scratch)
    return _SCRATCH[0]


def _free_scratch() -> None:
    while _SCRATCH:
        _SCRATCH.pop().free()
