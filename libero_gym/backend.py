"""Where the env workers of ``train``, ``eval``, ``collect`` and ``generate`` run: ``--backend {local,ray}``.

:class:`BackendConfig` holds the two flags once; each command's config inherits it
(``class CollectConfig(BackendConfig)``), so ``--backend`` and ``--ray-address`` read
the same everywhere and land in every run's saved config.

* ``local`` (default): worker processes on this machine (``--vectorization`` of
  ``train`` chooses async or sync; ``collect`` starts ``forkserver`` processes).
* ``ray``: each worker is a Ray actor, on this machine or spread over a Ray cluster.
  ``--ray-address`` names the cluster (``auto``, ``HOST:6379``); without it, a local
  Ray is started in this process and stopped with it. Vector envs are
  :class:`libero_gym.ray_vector.RayVectorEnv`; ``collect``'s episode workers are
  :class:`libero_gym.data.ray_workers.RayEpisodeWorkers`.

What runs where (docs/faults.md, "Ray backend"): the command's own process (the
learner, the policy of ``eval``, ``collect``'s episode bookkeeping, the files of
``train``/``eval``) stays where it was started; only the simulators move to the
actors. ``collect``'s actors write their episode files themselves, so on a cluster
of several machines the output folder must be on a filesystem every node mounts at
the same path.

Light at import: Ray is imported only by :func:`start_or_connect`, when a command
uses the ``ray`` backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any, Literal

from libero_gym.errors import InvalidInputError, LiberoGymError

BACKENDS: tuple[str, ...] = ("local", "ray")
RAY_START_TIMEOUT_S = 240.0
"""Seconds ``ray.init`` may take before the command gives up with one line. A local Ray starts in
~5 s on an idle 2-core machine; under heavy load its own node start-up gave up after ~140 s here
(``The current node timed out during startup``), so this is the backstop for a start that hangs."""
ADDRESS_PROBE_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP connection to ``--ray-address`` before calling it unreachable: Ray's own
client retries an unreachable address for many minutes (measured here: still retrying after 5 min)."""
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
"""Object store of a Ray started here: it holds the actors' start-up arguments and results (episode
summaries), not whole episodes, so Ray's default of 30% of the machine's memory is waste."""
FORWARDED_ENV_VARS = (
    "MUJOCO_GL", "PYOPENGL_PLATFORM", "LIBERO_GYM_ASSETS", "LIBERO_GYM_HOME", "LIBERO_CONFIG_PATH", "PYTHONPATH",
)
"""Variables passed on to the actors when connecting to a cluster (a local Ray's workers inherit them)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """Where env workers run; inherited by the configs of ``train``, ``eval``, ``collect`` and ``generate``."""

    backend: Literal["local", "ray"] = "local"
    """Where the env workers run. local: processes on this machine. ray: Ray actors, on this machine or spread
    over the Ray cluster of --ray-address (the command itself, its learner/policy and its files stay here)."""
    ray_address: str | None = None
    """--backend ray: the Ray cluster to use (auto, HOST:6379); default: start a local Ray for this command."""

    def check_backend(self) -> None:
        """Raise :class:`InvalidInputError` for an unknown backend or an address without ``--backend ray``."""
        if self.backend not in BACKENDS:
            raise InvalidInputError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if self.ray_address is not None and self.backend != "ray":
            raise InvalidInputError(f"--ray-address needs --backend ray, got --backend {self.backend}")
        if self.ray_address is not None and not self.ray_address.strip():
            raise InvalidInputError("--ray-address must be an address (auto, HOST:PORT), got an empty string")

    def vectorization_mode(self, local: str) -> str:
        """The ``vectorization_mode`` of :func:`libero_gym.vector.make_vector_env`: ``ray``, else ``local``'s."""
        return "ray" if self.backend == "ray" else local

    def check_reachable(self) -> None:
        """``--backend ray --ray-address HOST:PORT``: raise :class:`InvalidInputError` unless something listens
        there (:func:`probe_address`; a quick check before a command writes anything)."""
        if self.backend == "ray" and self.ray_address is not None:
            probe_address(self.ray_address)

    def ray_flags(self, address: str | None = None) -> list[str]:
        """This backend as command-line flags for a sub-command (``address`` overrides ``ray_address``)."""
        if self.backend != "ray":
            return []
        address = address if address is not None else self.ray_address
        return ["--backend", "ray", *([] if address is None else ["--ray-address", address])]


def probe_address(address: str) -> None:
    """Raise :class:`InvalidInputError` unless something listens at ``HOST:PORT`` (``auto`` and ``ray://`` are
    left to Ray: ``auto`` fails at once when no cluster runs here)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidInputError(f"--ray-address must be auto or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise InvalidInputError(f"no Ray cluster at --ray-address {address}: {error.strerror or error}") from None


class _StartTimeout(BaseException):
    """``ray.init`` took longer than :data:`RAY_START_TIMEOUT_S` (a ``BaseException``: Ray's own ``except
    Exception`` clauses must not swallow it)."""


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`_StartTimeout` in the main thread after ``seconds`` (SIGALRM); elsewhere no limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _StartTimeout()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def start_or_connect(ray_address: str | None, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray: the one it already is, the cluster at ``ray_address``,
    or a new local one.

    Args:
        ray_address: ``None``: the Ray this process is connected to, else a new local one (``num_cpus``
            logical CPUs, no dashboard, actor logs not copied to this terminal). An address (``auto``,
            ``HOST:6379``, ``ray://HOST:10001``): connect to that cluster and forward
            :data:`FORWARDED_ENV_VARS` to its workers.
        num_cpus: logical CPUs of a local Ray (default: this machine's).

    Returns:
        Whether this call started or connected Ray (False: it was already connected).

    Raises:
        InvalidInputError: no cluster at the address, or connected to another cluster already.
        LiberoGymError: a local Ray did not start (within :data:`RAY_START_TIMEOUT_S`).
    """
    import ray

    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if ray_address not in (None, "auto", current):
            raise InvalidInputError(
                f"this process is already connected to Ray at {current}; cannot connect to {ray_address!r} too"
            )
        return False
    if ray_address is not None:
        probe_address(ray_address)
    common: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    # ray.init replaces the SIGTERM handler (with sys.exit): keep ours (libero_gym.signals.sigterm_raises),
    # so that a command stopped by Slurm or Kubernetes still checkpoints and exits with one line.
    in_main_thread = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    where = "a local Ray" if ray_address is None else f"the Ray cluster at --ray-address {ray_address}"
    try:
        with _deadline(RAY_START_TIMEOUT_S):
            if ray_address is None:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         **common)
            else:
                env_vars = {key: os.environ[key] for key in FORWARDED_ENV_VARS if key in os.environ}
                ray.init(address=ray_address, runtime_env={"env_vars": env_vars}, **common)
    except _StartTimeout:
        _shutdown_quietly(ray)
        raise LiberoGymError(
            f"could not start {where} within {RAY_START_TIMEOUT_S:.0f} s (machine overloaded?)"
        ) from None
    except ConnectionError as error:
        _shutdown_quietly(ray)
        raise InvalidInputError(f"no Ray cluster at --ray-address {ray_address}: {_first_line(error)}") from None
    except Exception as error:  # noqa: BLE001  (Ray raises a bare Exception when its node does not come up)
        _shutdown_quietly(ray)
        raise LiberoGymError(f"could not start {where}: {_first_line(error)}") from None
    finally:
        if in_main_thread and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return True


def cluster_cpus() -> int:
    """Logical CPUs of the Ray cluster this process is connected to (``ray.cluster_resources()``)."""
    import ray

    return int(ray.cluster_resources().get("CPU", 0))


def gcs_address() -> str:
    """``HOST:PORT`` of the Ray cluster this process is connected to (what ``--ray-address`` takes)."""
    import ray

    return str(ray.get_runtime_context().gcs_address)


def shutdown() -> None:
    """Disconnect from Ray; a Ray this process started stops with it."""
    import ray

    _shutdown_quietly(ray)


def _shutdown_quietly(ray: Any) -> None:
    with contextlib.suppress(Exception):
        ray.shutdown()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
