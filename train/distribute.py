"""Training on several devices through tf.distribute (``--distribute``).

- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the GPUs of this
  machine (one replica on the CPU where there is no GPU);
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across
  hosts, each one running the same command with its own ``TF_CONFIG``
  (``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
  "index": i}}``); worker 0 is the chief: it alone writes the model and the
  report, the others train and write nothing.

The model and its optimizer are made under the strategy's scope and
``fit`` splits each global batch between the replicas, gradients summed
across them (the same model as one device, up to BatchNorm's statistics of
the smaller per-replica batches). A worker that dies mid-epoch makes the
others' collective operations fail: the chief finds which peer stopped
answering and says so in one line (exit 2); nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterator

from odml.errors import OdmlError

KINDS = ("none", "mirrored", "multiworker")
TIMEOUT_ENV = "ODML_COLLECTIVE_TIMEOUT_S"  # how long a collective waits for a silent peer (default 120 s)
# mirrored on a machine without GPUs: its CPU split into this many logical devices, one replica each (how the
# tests run two replicas on one host; otherwise one replica on the CPU)
CPU_REPLICAS_ENV = "ODML_MIRRORED_CPUS"


class DistributeError(OdmlError):
    """--distribute settings that cannot train, or a worker that died."""


@dataclass(frozen=True)
class Cluster:
    kind: str
    workers: tuple[str, ...] = ()
    index: int = 0

    @property
    def chief(self) -> bool:
        return self.index == 0


def check(kind: str | None, where: str = "--distribute") -> Cluster:
    """``kind`` checked (and for multiworker, TF_CONFIG) without importing
    TensorFlow: one line saying what is missing."""
    kind = kind or "none"
    if kind not in KINDS:
        raise DistributeError(f"{where} {kind!r}: choose one of {', '.join(KINDS)}")
    if kind != "multiworker":
        return Cluster(kind)
    raw = os.environ.get("TF_CONFIG")
    pre = f"{where} multiworker: TF_CONFIG"
    if not raw:
        raise DistributeError(f"{pre} is not set: each worker needs a JSON "
                              '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}')
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DistributeError(f"{pre} is not JSON: {e.msg} at character {e.pos}") from None
    if not isinstance(cfg, dict):
        raise DistributeError(f"{pre} must be a JSON object with 'cluster' and 'task'")
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not isinstance(cluster.get("worker"), list) or not cluster["worker"]:
        raise DistributeError(f"{pre} has no cluster.worker list of host:port addresses")
    extra = sorted(set(cluster) - {"worker"})
    if extra:
        raise DistributeError(f"{pre}: cluster.{extra[0]} is not used: list every host under cluster.worker "
                              "(worker 0 is the chief)")
    for a in cluster["worker"]:
        host, sep, port = str(a).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DistributeError(f"{pre}: cluster.worker address {a!r} is not host:port")
    if not isinstance(task, dict) or task.get("type") != "worker":
        raise DistributeError(f"{pre} has no task of type 'worker' (this host's place in cluster.worker)")
    idx = task.get("index")
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < len(cluster["worker"]):
        raise DistributeError(f"{pre}: task.index {idx!r} is not one of 0..{len(cluster['worker']) - 1}")
    return Cluster(kind, tuple(str(a) for a in cluster["worker"]), idx)


_STRATEGY: dict[str, Any] = {}


def strategy(c: Cluster) -> Any:
    """The tf.distribute strategy of ``c`` (None for none); made once per
    process (MultiWorkerMirroredStrategy must be, before other collectives)."""
    if c.kind == "none":
        return None
    if c.kind not in _STRATEGY:
        from odml._tf import tf

        tf_ = tf()
        if c.kind == "mirrored":
            _STRATEGY[c.kind] = tf_.distribute.MirroredStrategy(_cpu_replicas(tf_))
        else:
            timeout = float(os.environ.get(TIMEOUT_ENV, "120"))
            opts = tf_.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
            _STRATEGY[c.kind] = tf_.distribute.MultiWorkerMirroredStrategy(communication_options=opts)
    return _STRATEGY[c.kind]


def _cpu_replicas(tf_: Any) -> list[str] | None:
    """The devices of a mirrored strategy: None (every GPU, else the CPU),
    or with ``ODML_MIRRORED_CPUS=N`` and no GPU, N logical CPUs."""
    n = int(os.environ.get(CPU_REPLICAS_ENV, "0") or 0)
    if n < 2 or tf_.config.list_physical_devices("GPU"):
        return None
    cpu = tf_.config.list_physical_devices("CPU")[0]
    try:
        tf_.config.set_logical_device_configuration(cpu, [tf_.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # TensorFlow already started: fine if with these devices
        if len(tf_.config.list_logical_devices("CPU")) != n:
            raise DistributeError(f"{CPU_REPLICAS_ENV}={n}: TensorFlow started before --distribute mirrored could "
                                  "split the CPU; run it in a fresh process") from None
    return [f"/cpu:{i}" for i in range(n)]


def replica_share(*tensors: Any) -> tuple[Any, ...]:
    """Inside a replica's step: this replica's rows of each tensor of a
    global batch (every replica is given the whole batch; rows split in
    order, the last batch too, a replica with none getting an empty slice).
    Outside a strategy: the tensors as they are."""
    from odml._tf import tf

    T = tf()
    ctx = T.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return tensors
    i, r = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
    b = T.shape(tensors[0])[0]
    lo, hi = b * i // r, b * (i + 1) // r
    return tuple(t[lo:hi] for t in tensors)


def replica_mean_grads(grads: list[Any], rows: Any) -> list[Any]:
    """Gradients of this replica's mean loss over its ``rows`` rows, weighted
    by its share of the batch's rows: the optimizer sums them across the
    replicas, giving the gradient of the mean over the whole batch (a short
    last batch, or a replica given no rows, included)."""
    from odml._tf import tf

    T = tf()
    ctx = T.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    n = T.cast(rows, T.float32)
    w = T.math.divide_no_nan(n, ctx.all_reduce("SUM", n))
    return [None if g is None else g * T.cast(w, g.dtype) for g in grads]


def run_split(s: Any, body: Any, x: Any, y: Any) -> Any:
    """``body(x, y)`` on each replica's share of the global batch (x, y), its
    outputs (a nested structure of per-row means, and the number of rows
    last) combined as the means over the whole batch."""
    from odml._tf import tf

    T = tf()

    def weighted(x, y):
        out, n = body(*replica_share(x, y))
        n = T.cast(n, T.float32)
        return T.nest.map_structure(lambda v: T.math.multiply_no_nan(T.cast(v, T.float32), n), out), n

    out, n = s.run(weighted, args=(x, y))
    total = s.reduce("SUM", n, axis=None)
    return T.nest.map_structure(lambda v: T.math.divide_no_nan(s.reduce("SUM", v, axis=None), total), out)


@contextlib.contextmanager
def scope(c: Cluster) -> Iterator[Any]:
    """The strategy's scope (the model and optimizer made in it), or nothing."""
    s = strategy(c)
    if s is None:
        yield None
        return
    with s.scope():
        yield s


def replicas(c: Cluster) -> int:
    s = strategy(c)
    return 1 if s is None else int(s.num_replicas_in_sync)


def _answers(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def guarded(c: Cluster, what: Any = "training") -> Iterator[None]:
    """Run ``what`` (a text, or a callable giving it when it fails: "epoch 2
    of 3"); a collective that fails because a peer died becomes one line
    naming the worker that stopped answering (exit 2)."""
    if c.kind != "multiworker":
        yield
        return
    from odml._tf import tf

    errors = tf().errors
    try:
        yield
    except (errors.UnavailableError, errors.DeadlineExceededError, errors.CancelledError, errors.InternalError,
            errors.AbortedError) as e:
        dead = [f"worker {i} ({a})" for i, a in enumerate(c.workers) if i != c.index and not _answers(a)]
        said = what() if callable(what) else what
        if dead:
            raise DistributeError(f"--distribute multiworker: {', '.join(dead)} stopped answering during {said}; "
                                  f"this is worker {c.index}; nothing was written") from None
        text = " ".join(str(e).split())
        first = text[text.find("Collective ops"):][:200] if "Collective ops" in text else text[-200:]
        raise DistributeError(f"--distribute multiworker: a peer failed during {said} (every address still "
                              f"answers); this is worker {c.index}; nothing was written (TensorFlow: {first})") from None
