"""Accuracy and OVIC scores of a .tflite classifier on a dataset."""

from __future__ import annotations


def classify_dataset(model, data, opts, ovic=False, limit_ms=33.0, k=None, a0=None, seed=0):
    """Classify the validation split of ``data`` with ``model`` on the host:
    accuracy, per-image latency, and the OVIC scores when asked."""
    from dataclasses import replace

    import numpy as np

    from odml.data.images import load_images, to_float
    from odml.devices.host import classify_host, read_tflite_checked
    from odml.devices.ovic import ovic_2018, ovic_frontier
    from odml.devices.stats import latency_stats
    from odml.errors import DataError

    from odml.data.textmodel import is_text_data

    info = read_tflite_checked(model)
    shape = info.inputs[0].shape
    n_out = int(np.prod(info.outputs[0].shape[1:]))
    if is_text_data(data):
        from odml.data.text import load_text
        from odml.data.textmodel import info_from_tflite
        from odml.train.text import scores

        tinfo = info_from_tflite(model, info)
        ds = load_text(data, None, None, None, 0.2, seed)
        if ds.num_classes != n_out:
            raise DataError(f"{data}: {ds.num_classes} classes in the data but {model} has {n_out} outputs")
        x, cut = tinfo.featurize(ds.texts_val)
        run = classify_host(model, x, replace(opts, threads=1) if ovic else opts)
        y = ds.y_val
        correct = [p == t for p, t in zip(run["predictions"], y.tolist())]
        sc = scores(np.asarray(run["outputs"], dtype=np.float64), y)
        res = {"data": data, "texts": len(correct), "images": len(correct), "accuracy": sum(correct) / len(correct),
               "auc": sc["auc"], "truncated": cut, "mean_latency_ms": float(np.mean(run["latencies_ms"])),
               "per_image": latency_stats(np.asarray(run["latencies_ms"]) / 1e3)}
        if ovic:
            res["ovic"] = ovic_2018(run["latencies_ms"], correct, limit_ms)
        return res
    if len(shape) != 4:
        raise DataError(f"{model}: --data needs an image classifier with input [1, H, W, C], got {shape}")
    ds = load_images(data, (shape[1], shape[2]), shape[3], 0.2, seed)
    if ds.num_classes != n_out:
        raise DataError(f"{data}: {ds.num_classes} classes in the data but {model} has {n_out} outputs")
    run = classify_host(model, to_float(ds.x_val), replace(opts, threads=1) if ovic else opts)
    correct = [p == y for p, y in zip(run["predictions"], ds.y_val.tolist())]
    res = {"data": data, "images": len(correct), "accuracy": sum(correct) / len(correct),
           "mean_latency_ms": float(np.mean(run["latencies_ms"])),
           "per_image": latency_stats(np.asarray(run["latencies_ms"]) / 1e3)}
    if ovic:
        res["ovic"] = ovic_2018(run["latencies_ms"], correct, limit_ms)
        if k is not None:
            o = res["ovic"]
            res["frontier"] = ovic_frontier(o["accuracy"], o["mean_latency_ms"], k, a0)
    elif k is not None:
        res["frontier"] = ovic_frontier(res["accuracy"], res["mean_latency_ms"], k, a0)
    return res
