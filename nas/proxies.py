"""Zero-cost proxies: scores of an untrained network, from one batch, that
rank architectures without training them.

- ``synflow`` (Tanaka et al., NeurIPS 2020; as a NAS proxy: Abdelfattah et
  al., ICLR 2021): the network with every weight made positive and its
  activations linear, fed an all-ones image in float64; the sum over weights
  of |theta * dR/dtheta| of the summed output R (log10 here).
- ``naswot`` (Mellor et al., ICML 2021): the batch's binary codes of which
  activations fire (ReLU, ReLU6, hard-swish: positive output); log |det K|
  of the kernel K = codes agreeing, N - Hamming.
- ``meco`` (Jiang et al., NeurIPS 2023): for one image, the smallest
  eigenvalue of the Pearson correlation between the channels of each
  block's output, summed over blocks.
- AZ-NAS's components (Lee & Ham, CVPR 2024), on the block outputs of the
  batch (BatchNorm in training mode): ``az_expressivity`` (the entropy of the
  features' covariance spectrum, summed over blocks), ``az_progressivity``
  (its smallest increase from one block to the next), ``az_trainability``
  (from the largest singular value s of each block's Jacobian, sampled with
  a Rademacher vector: the mean of -s - 1/s + 2) and ``az_complexity`` (the
  MACs, log10).
- ``params`` and ``macs``: the baseline a proxy must beat (log10).

A score of several proxies is AZ-NAS's non-linear rank aggregation over the
set being ranked: the sum over proxies of log(rank / N), the best rank N:
``az_nas`` (its four components) and ``vote`` (every proxy but the
baselines). A single proxy's score is its value. Higher is better for every
proxy.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from odml.errors import OdmlError

SINGLE = ("synflow", "naswot", "meco", "az_expressivity", "az_progressivity", "az_trainability", "az_complexity",
          "params", "macs")
AGGREGATES = {
    "az_nas": ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity"),
    "vote": ("synflow", "naswot", "meco", "az_expressivity", "az_progressivity", "az_trainability"),
}
NAMES = SINGLE + tuple(AGGREGATES)
BATCH = 32  # images per proxy evaluation
GRAD_BATCH = 8  # of which the trainability's gradients see these


class ProxyError(OdmlError):
    """A proxy name odml does not know."""


def check_proxy(name: str, where: str = "--proxy") -> str:
    if name not in NAMES:
        raise ProxyError(f"{where} {name!r}: not a proxy odml knows; choose one of {', '.join(NAMES)}")
    return name


FORWARD = ("naswot", "meco", "az_expressivity", "az_progressivity")  # one forward pass of the batch
GRADIENT = ("az_trainability",)  # a gradient per block on a few images
COUNTS = ("params", "macs", "az_complexity")  # from the configuration: no network built


def needs(names: list[str] | tuple[str, ...]) -> set[str]:
    """The single proxies that the scores ``names`` (singles or aggregates) read."""
    out: set[str] = set()
    for n in names:
        out |= set(AGGREGATES.get(n, (n,)))
    return out


def compute(spec: Any, x: np.ndarray, seed: int = 0, which: set[str] | None = None) -> dict[str, float]:
    """The single proxies ``which`` (default: every one) of ``spec`` (a
    classifier's or a segmentation model's configuration), built untrained,
    on the float images ``x`` (the first ``BATCH`` are used); only the
    passes those proxies need are run."""
    which = set(SINGLE) if which is None else set(which)
    out: dict[str, float] = {"params": math.log10(max(1, int(spec.params))),
                             "macs": math.log10(max(1, int(spec.macs)))}
    out["az_complexity"] = out["macs"]
    if which - set(COUNTS):
        from odml._tf import tf
        from odml.zoo.registry import family_for

        tf().keras.utils.set_random_seed(seed)
        model = family_for(spec).build(spec)
        xb = np.asarray(x[:BATCH], np.float32)
        if "synflow" in which:
            out["synflow"] = synflow(model, xb.shape[1:])
        if which & set(FORWARD + GRADIENT):
            out.update(_batch_proxies(_feature_model(model), xb, bool(which & set(GRADIENT))))
    return {k: (float(v) if np.isfinite(v) else float("-inf")) for k, v in out.items()
            if k in which or k in COUNTS}


def _tap_layers(model) -> list[Any]:
    """The last layer of the stem and of each block: the block outputs
    AZ-NAS and MeCo read."""
    last: dict[str, Any] = {}
    for layer in model.layers:
        m = re.match(r"^(stem|block\d+)_", layer.name)
        if m:
            last[m.group(1)] = layer
    return list(last.values())


def _relu_layers(model) -> list[Any]:
    """The activations whose output is positive exactly where their input is
    (ReLU, ReLU6, hard-swish): NASWOT's binary codes."""
    from odml.zoo.blocks import HardSwish, K

    return [layer for layer in model.layers if isinstance(layer, (K.layers.ReLU, HardSwish))]


def _feature_model(model):
    """A model of the same weights whose outputs are the block outputs, the
    ReLU outputs and the network's output."""
    from odml.zoo.blocks import K

    blocks, relus = _tap_layers(model), _relu_layers(model)
    outs = [layer.output for layer in blocks] + [layer.output for layer in relus] + [model.output]
    fm = K.Model(model.input, outs)
    fm.odml_counts = (len(blocks), len(relus))
    return fm


def _batch_proxies(fm, x: np.ndarray, gradient: bool = True) -> dict[str, float]:
    """NASWOT, MeCo and AZ-NAS's expressivity and progressivity from one
    forward pass of the batch; the trainability from a second pass of its
    first ``GRAD_BATCH`` images with a gradient per block."""
    from odml._tf import tf

    tf_ = tf()
    nb, nr = fm.odml_counts
    outs = [o.numpy() for o in fm(tf_.constant(x), training=True)]
    feats, relus = outs[:nb], outs[nb:nb + nr]
    res = {"naswot": naswot(relus), "meco": meco([f[0] for f in feats])}
    expr = [expressivity(f) for f in feats]
    res["az_expressivity"] = float(np.sum(expr)) if expr else float("-inf")
    res["az_progressivity"] = float(np.min(np.diff(expr))) if len(expr) > 1 else float("-inf")
    if not gradient:
        return res
    rng = np.random.default_rng(0)
    with tf_.GradientTape(persistent=True) as tape:
        feats_t = fm(tf_.constant(x[:GRAD_BATCH]), training=True)[:nb]
    scores = []
    for i in range(1, len(feats_t)):
        sign = rng.choice([-1.0, 1.0], size=feats_t[i].shape).astype(np.float32)
        g_in = tape.gradient(feats_t[i], feats_t[i - 1], output_gradients=tf_.constant(sign))
        if g_in is not None:
            scores.append(_trainability(g_in.numpy(), sign))
    del tape
    res["az_trainability"] = float(np.mean(scores)) if scores else float("-inf")
    return res


def _trainability(g_in: np.ndarray, g_out: np.ndarray) -> float:
    """AZ-NAS's trainability of one block from the gradient ``g_in`` that
    the Rademacher vector ``g_out`` at its output sends to its input:
    -s - 1/s + 2 of the largest singular value s of their cross-covariance
    (a stride folds the input's pixels into channels first)."""
    if g_in.shape == g_out.shape and np.array_equal(g_in, g_out):
        return float("-inf")  # an identity block
    b, ho, wo, co = g_out.shape
    _, hi, wi, ci = g_in.shape
    if (hi, wi) != (ho, wo):  # a stride: each output pixel's input pixels folded into channels (zero-padded)
        s = -(-hi // ho)
        g_in = np.pad(g_in, ((0, 0), (0, ho * s - hi), (0, wo * s - wi), (0, 0)))
        g_in = g_in.reshape(b, ho, s, wo, s, ci).transpose(0, 1, 3, 2, 4, 5).reshape(b, ho, wo, s * s * ci)
    mat = g_in.reshape(b * ho * wo, -1).T @ g_out.reshape(b * ho * wo, co) / (b * ho * wo)
    s_max = float(np.linalg.svd(mat.astype(np.float64), compute_uv=False).max())
    return -s_max - 1.0 / (s_max + 1e-6) + 2.0


def expressivity(feat: np.ndarray) -> float:
    """The entropy of the normalised eigenvalues of the covariance of the
    features (every pixel of every image one C-vector)."""
    f = feat.reshape(-1, feat.shape[-1]).astype(np.float64)
    f = f - f.mean(axis=0, keepdims=True)
    sigma = f.T @ f / max(1, f.shape[0])
    s = np.clip(np.linalg.eigvalsh(sigma), 0.0, None)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    return float(-(p * np.log(p + 1e-8)).sum())


def naswot(relu_outputs: list[np.ndarray]) -> float:
    """log |det K| of the binary-code kernel of the batch (Mellor et al.)."""
    if not relu_outputs:
        return float("-inf")
    n = relu_outputs[0].shape[0]
    k = np.zeros((n, n))
    for a in relu_outputs:
        c = (a.reshape(n, -1) > 0).astype(np.float64)
        k += c @ c.T + (1.0 - c) @ (1.0 - c).T
    sign, logdet = np.linalg.slogdet(k)
    return float(logdet) if sign > 0 else float("-inf")


def meco(block_outputs: list[np.ndarray]) -> float:
    """The sum over blocks of the smallest eigenvalue of the Pearson
    correlation between the channels of one image's block output."""
    total = 0.0
    for f in block_outputs:
        m = f.reshape(-1, f.shape[-1]).T.astype(np.float64)  # channels x pixels
        if m.shape[1] < 2:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.corrcoef(m)
        c = np.nan_to_num(c, nan=0.0, posinf=0.0, neginf=0.0)
        total += float(np.linalg.eigvalsh(c).min())
    return total


def synflow(model, input_shape: tuple[int, ...]) -> float:
    """log10 of the synaptic flow of ``model``: a float64 copy with |weights|,
    ReLUs unbounded and hard-swish linear, BatchNorm in inference mode, the
    summed output of an all-ones image differentiated by every weight."""
    from odml._tf import tf
    from odml.zoo.blocks import HardSwish, K

    tf_ = tf()

    def clone(layer):
        cfg = layer.get_config()
        cfg["dtype"] = "float64"
        if isinstance(layer, K.layers.ReLU):
            cfg["max_value"] = None
        elif isinstance(layer, HardSwish):
            return K.layers.Activation("linear", dtype="float64", name=layer.name)
        return layer.__class__.from_config(cfg)

    try:
        inp = K.Input(shape=input_shape, dtype="float64")
        m64 = K.models.clone_model(model, input_tensors=inp, clone_function=clone)
        m64.set_weights([np.abs(w).astype(np.float64) for w in model.get_weights()])
    except Exception:  # noqa: BLE001 - a layer that cannot be copied to float64: no score
        return float("-inf")
    x = tf_.ones((1, *input_shape), tf_.float64)
    weights = [w for w in m64.trainable_weights if "kernel" in w.name]
    with tf_.GradientTape() as tape:
        r = tf_.reduce_sum(m64(x, training=False))
    grads = tape.gradient(r, weights)
    total = sum(float(tf_.reduce_sum(tf_.abs(w * g))) for w, g in zip(weights, grads) if g is not None)
    return math.log10(total) if total > 0 and math.isfinite(total) else float("-inf")


# ---- ranking ------------------------------------------------------------------------------------

def scores(rows: list[dict[str, float]], name: str) -> list[float]:
    """The score of each row (a dict of single proxies) under ``name``: a
    single proxy's value, or an aggregate's sum of log(rank / N) over the
    rows (ties share their mean rank; a missing or -inf value ranks last)."""
    if name in SINGLE:
        return [float(r.get(name, float("-inf"))) for r in rows]
    n = len(rows)
    total = np.zeros(n)
    for p in AGGREGATES[name]:
        v = np.array([r.get(p, float("-inf")) for r in rows], np.float64)
        total += np.log(_ranks(v) / n)
    return [float(t) for t in total]


def _ranks(v: np.ndarray) -> np.ndarray:
    """1..N ranks, ascending (the largest value N), ties averaged."""
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for val in np.unique(v):
        idx = v == val
        ranks[idx] = ranks[idx].mean()
    return ranks


def kendall_tau(a: list[float], b: list[float]) -> float | None:
    """Kendall's tau-b of two rankings (None with fewer than three pairs or
    a constant side)."""
    if len(a) < 3:
        return None
    from scipy.stats import kendalltau

    x = np.nan_to_num(np.asarray(a, np.float64), neginf=-1e300, posinf=1e300)
    y = np.asarray(b, np.float64)
    if np.all(x == x[0]) or np.all(y == y[0]):
        return None
    tau = kendalltau(x, y).statistic
    return None if tau is None or not np.isfinite(tau) else round(float(tau), 4)
