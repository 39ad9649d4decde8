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
            _STRATEGY[c.kind] = tf_.distribute.MirroredStrategy()
        else:
            timeout = float(os.environ.get(TIMEOUT_ENV, "120"))
            opts = tf_.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
            _STRATEGY[c.kind] = tf_.distribute.MultiWorkerMirroredStrategy(communication_options=opts)
    return _STRATEGY[c.kind]


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
