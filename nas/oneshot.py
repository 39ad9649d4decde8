"""One-shot, weight-sharing search over a space (TuNAS: Bender et al., "Can
weight sharing outperform random architecture search? An investigation with
TuNAS", CVPR 2020; the method behind the EdgeTPU model families).

One supernet holds every architecture of the space at once:

- every block position has one set of weights per block type (depthwise IBN,
  fused IBN, GC-IBN), sized for the largest kernel, expansion and width the
  position offers; a smaller kernel is the centre of the largest (the rest
  masked to zero), a smaller expansion or width the first channels (the rest
  masked), a GC-IBN's groups a block-diagonal mask on its k x k kernel, as
  TuNAS shares weights;
- a stage's depth skips its last positions (identity), a residual joins a
  block whose input and output widths agree;
- batch norm uses the batch's statistics (in training and when the
  controller scores a path), as one-shot searches do, since a path's
  statistics differ from the supernet's running ones.

Each training step samples a path (an architecture: a ModelSpec of the
space, valid by construction), sets the supernet to it and takes one
gradient step on a training batch. A controller holds a categorical
distribution per hyperparameter of the space; after a warm-up (the first
quarter of the steps, paths drawn uniformly) it alternates with the weights:
it samples a path, scores it on a batch held out from training with the
shared weights (accuracy Q), predicts its latency T with the calibrated
predictor, and takes a REINFORCE step with TuNAS's absolute reward
Q + beta * |T / target - 1| (beta < 0) against a moving-average baseline.
At the end the most likely path is the architecture; the search then trains
it standalone, measures it on the device and records it as a trial.

Run folder: ``oneshot/state.npz`` (the supernet's weights, the controller's
logits and baseline, the step) written atomically after every epoch, so an
interrupted search resumes at the last finished epoch; ``oneshot/log.jsonl``
one line per epoch (the controller's most likely path, its reward, the
entropy of the distribution).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from odml.files import append_jsonl, atomic_output, read_jsonl
from odml.nas.reward import reward
from odml.nas.space import SearchSpace
from odml.zoo.spec import ModelSpec

STATE = "state.npz"
LOG = "log.jsonl"
WARMUP = 0.25  # share of the steps with uniform paths and no controller updates


class Controller:
    """A categorical distribution per hyperparameter, trained by REINFORCE
    (Adam on the logits, a moving-average baseline)."""

    def __init__(self, dims: dict[str, list], lr: float = 0.05, seed: int = 0):
        self.dims = dims
        self.logits = {k: np.zeros(len(v)) for k, v in dims.items()}
        self.m = {k: np.zeros(len(v)) for k, v in dims.items()}
        self.v = {k: np.zeros(len(v)) for k, v in dims.items()}
        self.t, self.lr, self.baseline = 0, lr, None
        self.rng = np.random.default_rng(seed)

    def probs(self, k: str) -> np.ndarray:
        z = np.exp(self.logits[k] - self.logits[k].max())
        return z / z.sum()

    def sample(self, uniform: bool = False) -> tuple[dict[str, Any], dict[str, int]]:
        idx = {k: int(self.rng.integers(len(v))) if uniform else int(self.rng.choice(len(v), p=self.probs(k)))
               for k, v in self.dims.items()}
        return {k: self.dims[k][i] for k, i in idx.items()}, idx

    def best(self) -> dict[str, Any]:
        return {k: v[int(np.argmax(self.logits[k]))] for k, v in self.dims.items()}

    def entropy(self) -> float:
        return float(sum(-(p * np.log(p + 1e-12)).sum() for p in map(self.probs, self.dims)))

    def update(self, idx: dict[str, int], r: float, decay: float = 0.95) -> None:
        if self.baseline is None:
            self.baseline = r
        adv = r - self.baseline
        self.baseline = decay * self.baseline + (1 - decay) * r
        self.t += 1
        for k, i in idx.items():
            grad = -self.probs(k)
            grad[i] += 1.0
            g = -adv * grad  # minimise -adv * log p
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            mh, vh = self.m[k] / (1 - 0.9 ** self.t), self.v[k] / (1 - 0.999 ** self.t)
            self.logits[k] -= self.lr * mh / (np.sqrt(vh) + 1e-8)

    def state(self) -> dict[str, np.ndarray]:
        out = {}
        for k in self.dims:
            out[f"ctl/logits/{k}"], out[f"ctl/m/{k}"], out[f"ctl/v/{k}"] = self.logits[k], self.m[k], self.v[k]
        out["ctl/scalars"] = np.array([self.t, np.nan if self.baseline is None else self.baseline])
        return out

    def load(self, z: Any) -> None:
        for k in self.dims:
            self.logits[k], self.m[k], self.v[k] = (np.array(z[f"ctl/{w}/{k}"]) for w in ("logits", "m", "v"))
        t, b = z["ctl/scalars"]
        self.t, self.baseline = int(t), None if np.isnan(b) else float(b)


class Supernet:
    """Every architecture of ``sp`` in one set of weights (see the module)."""

    def __init__(self, sp: SearchSpace, classes: int, seed: int = 0):
        from odml._tf import tf

        self.tf = tf()
        t = self.tf
        self.sp, self.classes = sp, classes
        self.rng = np.random.default_rng(seed)
        self.weights: dict[str, Any] = {}
        self.path: dict[str, Any] = {}
        kmax = max(sp.stem_kernel)
        smax = max(sp.stem_filters)
        self._w("stem/k", (kmax, kmax, 3, smax))
        self._bn("stem", smax)
        self._var("stem/k_on", kmax)
        self._var("stem/c", smax)
        self.positions: list[dict[str, Any]] = []
        cin_max = smax
        for i, st in enumerate(sp.stages):
            wmax = max(ch for ch, _, _ in st.channel_options())
            self._var(f"s{i}/c", wmax)
            for j in range(max(st.depth)):
                combos = st.at(j).combos()
                types = sorted({c[0] for c in combos}, key=lambda x: ["ibn_dw", "ibn_fused", "ibn_gc",
                                                                      "ibn_grouped"].index(x))
                kk = max(c[1] for c in combos)
                emax = max(c[2] for c in combos)
                c_in = cin_max if j == 0 else wmax
                cexp = max(c_in, int(math.ceil(c_in * emax)))
                name = f"s{i}b{j}"
                for ty in types:
                    if ty == "ibn_dw":
                        self._w(f"{name}/{ty}/e", (1, 1, c_in, cexp))
                        self._bn(f"{name}/{ty}/e", cexp)
                        self._w(f"{name}/{ty}/d", (kk, kk, cexp, 1), depthwise=True)
                        self._bn(f"{name}/{ty}/d", cexp)
                    elif ty == "ibn_fused" or "ibn_fused" not in types:  # one k x k (group) conv expands;
                        self._w(f"{name}/{ty}/e", (kk, kk, c_in, cexp))  # a GC-IBN shares the fused one's
                        self._bn(f"{name}/{ty}/e", cexp)                 # kernel, block-diagonally masked
                    self._w(f"{name}/{ty}/p", (1, 1, cexp, wmax))
                    self._w(f"{name}/{ty}/p1", (1, 1, c_in, wmax))  # expansion 1: the projection alone
                    self._bn(f"{name}/{ty}/p", wmax)
                for v, init in (("type", 0), ("k", kk), ("cexp", cexp), ("g", 1), ("expand", 1), ("on", 1),
                                ("res", 0), ("cin", c_in)):
                    self._var(f"{name}/{v}", init)
                self.positions.append({"name": name, "stage": i, "pos": j, "types": types, "k": kk, "cin": c_in,
                                       "cexp": cexp, "wmax": wmax, "stride": st.stride if j == 0 else 1})
            cin_max = wmax
        hmax = max(sp.head_filters)
        if hmax:
            self._w("head/k", (1, 1, cin_max, hmax))
            self._bn("head", hmax)
        self._var("head/c", hmax)
        width = hmax or cin_max
        self._w("logits/k", (width, classes))
        self.weights["logits/b"] = t.Variable(t.zeros([classes]), name="logits_b")
        self.train_vars = list(self.weights.values())
        self._forward = t.function(self._call, reduce_retracing=True)

    # ---- variables -------------------------------------------------------------------
    def _w(self, name: str, shape: tuple[int, ...], depthwise: bool = False) -> None:
        """He-initialised weights: the fan-in is all but the output axis (a
        dense kernel's rows), a depthwise kernel's its window."""
        fan_in = float(np.prod(shape[:2] if depthwise else shape[:-1]))
        init = self.rng.normal(0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)
        self.weights[name] = self.tf.Variable(init, name=name.replace("/", "_"))

    def _bn(self, name: str, n: int) -> None:
        self.weights[f"{name}/gamma"] = self.tf.Variable(np.ones(n, np.float32), name=f"{name}_g".replace("/", "_"))
        self.weights[f"{name}/beta"] = self.tf.Variable(np.zeros(n, np.float32), name=f"{name}_b".replace("/", "_"))

    def _var(self, name: str, init: int) -> None:
        self.path[name] = self.tf.Variable(int(init), dtype=self.tf.int32, trainable=False,
                                           name=name.replace("/", "_"))

    # ---- a path ------------------------------------------------------------------------
    def configure(self, spec: ModelSpec, values: dict[str, Any]) -> None:
        """Set the supernet to the architecture ``spec`` (decoded from ``values``)."""
        sp = self.sp
        self.path["stem/k_on"].assign(spec.stem.kernel)
        self.path["stem/c"].assign(spec.stem.filters)
        blocks = iter(spec.blocks)
        cin = spec.stem.filters
        for i, st in enumerate(sp.stages):
            depth = int(values.get(f"s{i}_depth", st.depth[0]))
            cout = None
            for pos in [p for p in self.positions if p["stage"] == i]:
                name, j = pos["name"], pos["pos"]
                on = j < depth
                self.path[f"{name}/on"].assign(int(on))
                if not on:
                    continue
                b = next(blocks)
                cout = b.filters
                cexp = int(round(cin * b.expansion))
                self.path[f"{name}/type"].assign(pos["types"].index(b.type))
                self.path[f"{name}/k"].assign(b.kernel)
                self.path[f"{name}/cexp"].assign(cexp)
                self.path[f"{name}/g"].assign(b.groups)
                self.path[f"{name}/expand"].assign(int(b.expansion != 1))
                self.path[f"{name}/cin"].assign(cin)
                self.path[f"{name}/res"].assign(int(b.stride == 1 and cin == cout and pos["cin"] == pos["wmax"]))
                cin = cout
            self.path[f"s{i}/c"].assign(cout)
        self.path["head/c"].assign(spec.head.filters)

    # ---- the forward pass ---------------------------------------------------------------
    def _mask(self, n, total: int):
        t = self.tf
        return t.cast(t.range(total) < n, t.float32)

    def _kmask(self, k, kmax: int):
        t = self.tf
        c = (kmax - 1) // 2
        r = t.cast(t.abs(t.range(kmax) - c) <= (k - 1) // 2, t.float32)
        return r[:, None] * r[None, :]

    def _bn_act(self, x, name: str, mask, act: bool = True):
        t = self.tf
        mean, var = t.nn.moments(x, axes=[0, 1, 2])
        x = t.nn.batch_normalization(x, mean, var, self.weights[f"{name}/beta"], self.weights[f"{name}/gamma"], 1e-3)
        if act:
            x = self._act(x)
        return x * mask

    def _act(self, x):
        t = self.tf
        a = self.sp.activation
        if a == "relu6":
            return t.nn.relu6(x)
        if a == "hswish":
            return x * t.nn.relu6(x + 3.0) / 6.0
        return t.nn.relu(x)

    def _conv(self, x, w, stride: int):
        return self.tf.nn.conv2d(x, w, strides=stride, padding="SAME")

    def _block(self, x, pos: dict[str, Any]):
        t, P, W = self.tf, self.path, self.weights
        name, kk, stride, cexp_max, wmax = pos["name"], pos["k"], pos["stride"], pos["cexp"], pos["wmax"]
        k, cexp, g, expand, cin = (P[f"{name}/{v}"] for v in ("k", "cexp", "g", "expand", "cin"))
        emask = self._mask(cexp, cexp_max)
        omask = self._mask(P[f"s{pos['stage']}/c"], wmax)
        kmask = self._kmask(k, kk)

        def project(h, ty, s):
            return self._bn_act(self._conv(h, W[f"{name}/{ty}/p"], s), f"{name}/{ty}/p", omask, act=False)

        def only_project(ty):
            return self._bn_act(self._conv(x, W[f"{name}/{ty}/p1"], stride), f"{name}/{ty}/p", omask, act=False)

        def dw():
            def expanded():
                return self._bn_act(self._conv(x, W[f"{name}/ibn_dw/e"], 1), f"{name}/ibn_dw/e", emask)

            h = t.cond(expand > 0, expanded, lambda: t.pad(x, [[0, 0], [0, 0], [0, 0], [0, cexp_max - pos["cin"]]]))
            h = t.nn.depthwise_conv2d(h, W[f"{name}/ibn_dw/d"] * kmask[:, :, None, None], [1, stride, stride, 1],
                                      "SAME")
            return project(self._bn_act(h, f"{name}/ibn_dw/d", emask), "ibn_dw", 1)

        def full(ty):
            src = "ibn_fused" if ty == "ibn_gc" and "ibn_fused" in pos["types"] else ty

            def run():
                kern = W[f"{name}/{src}/e"] * kmask[:, :, None, None]
                if ty == "ibn_gc":  # groups as a block-diagonal mask over (input, expanded) channels
                    gi = t.range(pos["cin"]) // t.maximum(cin // g, 1)
                    go = t.range(cexp_max) // t.maximum(cexp // g, 1)
                    kern = kern * t.cast(gi[:, None] == go[None, :], t.float32)[None, None]
                h = self._bn_act(self._conv(x, kern, stride), f"{name}/{src}/e", emask)
                return project(h, ty, 1)
            return lambda: t.cond(expand > 0, run, lambda: only_project(ty))

        branches = [dw if ty == "ibn_dw" else full(ty) for ty in pos["types"]]
        y = branches[0]() if len(branches) == 1 else t.switch_case(t.convert_to_tensor(P[f"{name}/type"]), branches)
        if pos["cin"] == wmax and stride == 1:
            y = t.cond(P[f"{name}/res"] > 0, lambda: y + x, lambda: y)
            if pos["pos"] > 0:
                y = t.cond(P[f"{name}/on"] > 0, lambda: y, lambda: x)
        return y

    def _call(self, x):
        t, P, W = self.tf, self.path, self.weights
        sp = self.sp
        kmax = max(sp.stem_kernel)
        smax = max(sp.stem_filters)
        h = self._conv(x, W["stem/k"] * self._kmask(P["stem/k_on"], kmax)[:, :, None, None], sp.stem_stride)
        h = self._bn_act(h, "stem", self._mask(P["stem/c"], smax))
        for pos in self.positions:
            h = self._block(h, pos)
        hmax = max(sp.head_filters)
        if hmax:
            h = self._bn_act(self._conv(h, W["head/k"], 1), "head", self._mask(P["head/c"], hmax))
        h = t.reduce_mean(h, axis=[1, 2])
        return t.matmul(h, W["logits/k"]) + W["logits/b"]

    def __call__(self, x):
        return self._forward(x)

    # ---- state --------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {f"w/{k}": v.numpy() for k, v in self.weights.items()}

    def load(self, z: Any) -> None:
        for k, v in self.weights.items():
            v.assign(z[f"w/{k}"])


def search_oneshot(p: Any, latency_of: Callable[[ModelSpec], float], say: Callable[[str], None],
                   listener: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train the supernet and its controller on ``p.data`` for
    ``p.cfg.supernet_epochs`` (default ``p.cfg.epochs``) epochs (resuming
    from the run folder), then return the controller's most
    likely architecture with the figures of its last evaluation."""
    from odml._tf import tf

    t = tf()
    cfg, sp = p.cfg, p.space
    folder = Path(p.out) / "oneshot"
    folder.mkdir(parents=True, exist_ok=True)
    t.random.set_seed(cfg.seed)
    data = p.data
    classes = data.num_classes
    rng = np.random.default_rng(cfg.seed)
    n = len(data.y_train)
    held = rng.permutation(n)
    n_rl = max(cfg.batch_size, n // 10)  # a tenth of the training split scores paths for the controller
    rl_idx, tr_idx = held[:n_rl], held[n_rl:]
    xs = data.x_train.astype(np.float32) / 255.0
    ys = data.y_train.astype(np.int64)
    net = Supernet(sp, classes, cfg.seed)
    ctl = Controller(sp.dimensions(), lr=0.05, seed=cfg.seed)
    steps_per_epoch = max(1, len(tr_idx) // cfg.batch_size)
    epochs = cfg.supernet_epochs or cfg.epochs
    total = steps_per_epoch * epochs
    from odml._tf import keras

    lr = t.Variable(float(cfg.lr), trainable=False)
    opt = keras().optimizers.Adam(learning_rate=lr)
    epoch0, considered = 0, set()
    state = folder / STATE
    if state.is_file():
        with np.load(state) as z:
            net.load(z)
            ctl.load(z)
            epoch0 = int(z["epoch"])
            considered = set(json.loads(str(z["considered"])))
            rng = np.random.default_rng([cfg.seed, epoch0])
        say(f"one-shot: resumed after epoch {epoch0}")

    @t.function(reduce_retracing=True)
    def train_step(x, y):
        with t.GradientTape() as tape:
            logits = net._call(x)
            loss = t.reduce_mean(t.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = tape.gradient(loss, net.train_vars)
        opt.apply_gradients([(g, v) for g, v in zip(grads, net.train_vars) if g is not None])
        return loss

    @t.function(reduce_retracing=True)
    def grads_on_labels(x, y):
        with t.GradientTape() as tape:
            logits = net._call(x)
            loss = t.reduce_mean(t.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        return tape.gradient(loss, net.train_vars), t.nn.softmax(logits)

    @t.function(reduce_retracing=True)
    def grads_on_soft(x, soft):  # in-place distillation: the largest path's distribution as the target
        with t.GradientTape() as tape:
            loss = t.reduce_mean(t.nn.softmax_cross_entropy_with_logits(t.stop_gradient(soft), net._call(x)))
        return tape.gradient(loss, net.train_vars)

    def sandwich_step(x, y):
        """One step of the sandwich rule (BigNAS / Once-for-All): the largest
        path on the labels, the smallest and two random paths on the largest's
        predictions, their gradients summed into one update."""
        net.configure(*largest)
        total, soft = grads_on_labels(x, y)
        total = list(total)
        for spec_values in (smallest, None, None):
            if spec_values is None:
                path(uniform=True)
            else:
                net.configure(*spec_values)
            for i, g in enumerate(grads_on_soft(x, soft)):
                if g is not None:
                    total[i] = g if total[i] is None else total[i] + g
        opt.apply_gradients([(g, v) for g, v in zip(total, net.train_vars) if g is not None])

    @t.function(reduce_retracing=True)
    def accuracy(x, y):
        return t.reduce_mean(t.cast(t.argmax(net._call(x), -1, output_type=t.int64) == y, t.float32))

    def path(uniform: bool) -> tuple[ModelSpec, dict[str, Any], dict[str, int]]:
        values, idx = ctl.sample(uniform)
        spec = sp.decode(values, classes, name="oneshot_path")
        net.configure(spec, values)
        considered.add(spec.to_line())
        return spec, values, idx

    def score(spec: ModelSpec, x, y) -> tuple[float, float, float]:
        q = float(accuracy(x, y))
        lat = float(latency_of(spec))
        return q, lat, reward(cfg.reward, q, lat, cfg.target_ms, p.exponent)

    rule = cfg.supernet_rule
    if rule == "sandwich":
        largest, smallest = (_extreme_path(sp, classes, pick) for pick in (max, min))
        for spec_values in (largest, smallest):
            considered.add(spec_values[0].to_line())
    t0 = time.perf_counter()
    for epoch in range(epoch0, epochs):
        lr.assign(0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / epochs)))  # cosine, per epoch
        order = rng.permutation(tr_idx)
        rewards = []
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            warm = step < WARMUP * total
            b = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if rule == "sandwich":
                sandwich_step(xs[b], ys[b])
            else:
                path(uniform=warm)
                train_step(xs[b], ys[b])
            if not warm:  # the controller's step, on a batch it did not train on
                spec, _, idx = path(uniform=False)
                rb = rng.choice(rl_idx, min(len(rl_idx), 2 * cfg.batch_size), replace=False)
                _, _, r = score(spec, xs[rb], ys[rb])
                ctl.update(idx, r)
                rewards.append(r)
        best = ctl.best()
        spec = sp.decode(best, classes, name="oneshot_best")
        net.configure(spec, best)
        q, lat, r = score(spec, xs[rl_idx], ys[rl_idx])
        rec = {"epoch": epoch + 1, "line": spec.to_line(), "supernet_accuracy": round(q, 4),
               "latency_predicted_ms": round(lat, 5), "reward": round(r, 4), "entropy": round(ctl.entropy(), 3),
               "mean_sampled_reward": round(float(np.mean(rewards)), 4) if rewards else None,
               "paths_considered": len(considered), "wall_s": round(time.perf_counter() - t0, 1)}
        with atomic_output(state) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **net.state(), **ctl.state(), epoch=np.array(epoch + 1),
                         considered=np.array(json.dumps(sorted(considered))))
        append_jsonl(folder / LOG, rec)
        say(f"one-shot epoch {epoch + 1}/{epochs}: {rec['line']} (supernet accuracy {q:.3f}, "
            f"{lat:.3f} ms predicted, entropy {rec['entropy']:.1f})")
        if listener:
            listener(rec)
    log = read_jsonl(folder / LOG)
    best = ctl.best()
    return {"values": best, "spec": sp.decode(best, classes, name=f"{sp.name}_oneshot"),
            "paths_considered": len(considered), "epochs": log}


def _extreme_path(sp: SearchSpace, classes: int, pick: Callable) -> tuple[ModelSpec, dict[str, Any]]:
    """The space's largest (``pick`` = max) or smallest (min) architecture in
    MACs: each choice in turn set to the value that ``pick``s the MACs, the
    others held (two rounds, the choices interacting through widths)."""
    dims = sp.dimensions()
    values = {k: v[0] for k, v in dims.items()}
    for _ in range(2):
        for k, options in dims.items():
            best = None
            for o in options:
                try:
                    macs = sp.decode({**values, k: o}, classes).macs
                except Exception:  # noqa: BLE001 - a combination the space does not allow
                    continue
                if best is None or pick(macs, best[0]) == macs and macs != best[0]:
                    best = (macs, o)
            if best is not None:
                values[k] = best[1]
    return sp.decode(values, classes, name="oneshot_extreme"), values


__all__ = ["Supernet", "Controller", "search_oneshot"]
