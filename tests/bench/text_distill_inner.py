"""Issue 6, part 3: distillation settings for a pQRNN student on the SMS Spam
Collection, chosen without looking at the validation split. The training
messages of `odml train --seed 0` are split again (80/20, fixed); students
train on the inner 80% and are scored on the inner 20%. The teacher's logits
(and pooled features, the input of its last dense layer) are computed once.

    python tests/bench/text_distill_inner.py --width 0.03 --seeds 0,1 \
        --configs 1:0:0:none,4:0.3:0:none,1:0.3:0:none,1:0.5:0:dropout,1:0.5:0:mixup,1:0:1:none,1:0:0.3:none

A config is T:ALPHA:BETA:AUGMENT: the student's loss is (1 - alpha) x
cross-entropy + alpha x T^2 x KL(teacher_T || student_T), plus beta x the mean
squared error between a learned linear map of the student's pooled features
and the teacher's (standardised; FitNets-style hints), and with AUGMENT
(dropout, mixup, ngram) a perturbed copy of each batch that the teacher labels (soft
loss alone), as `odml compress --augment` does. alpha 0 and beta 0 is the
student alone. Prints the inner accuracy per seed and the mean per config.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def main() -> None:
    import numpy as np

    from odml._tf import keras, tf
    from odml.compress.distill import perturb, soft_label_stats
    from odml.data.text import load_text
    from odml.numeric import softmax
    from odml.train.trainer import make_optimizer
    from odml.zoo import create_config
    from odml.zoo.card import ModelCard
    from odml.zoo.load import load_keras_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default="runs/bench_text/pqrnn.keras")
    ap.add_argument("--data", default=str(SMS))
    ap.add_argument("--width", type=float, default=0.03, help="the student: pqrnn narrowed by this width")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--configs", default="1:0:0:none,4:0.3:0:none,1:0.3:0:none")
    a = ap.parse_args()
    K, T = keras(), tf()
    data = load_text(a.data)  # the split of `odml train --seed 0`
    card = ModelCard.load(a.teacher)
    x, _ = card.family.featurizer(card)(data.texts_train)
    y = np.asarray(data.y_train).astype(np.int64)
    teacher = load_keras_model(a.teacher)
    both = K.Model(teacher.inputs, [teacher.get_layer("logits").input, teacher.output])
    t_feat, t_logits = both.predict(x, batch_size=256, verbose=0)
    t_feat = (t_feat / t_feat.std()).astype(np.float32)
    print("teacher on all training messages:", soft_label_stats(t_logits, y, 4.0), flush=True)
    # what it says of windows of the messages (recipe augment ngram), against each source message's label
    T.random.set_seed(0)
    w_logits = teacher.predict(perturb(T.constant(x, T.float32), "ngram").numpy(), batch_size=256, verbose=0)
    p_w = softmax(w_logits)[:, 1]
    print(f"teacher on one window per training message: p between 0.1 and 0.9 for "
          f"{float(((p_w > 0.1) & (p_w < 0.9)).mean()):.1%}; T=1 against the message's label",
          soft_label_stats(w_logits, y, 1.0), "; whole messages at T=1", soft_label_stats(t_logits, y, 1.0),
          flush=True)
    idx = np.random.RandomState(123).permutation(len(y))
    tr, ev = idx[: int(0.8 * len(idx))], idx[int(0.8 * len(idx)):]
    base = replace(create_config("pqrnn"), max_len=card.config.max_len, features=card.config.features,
                   num_classes=int(t_logits.shape[1]))

    def train(temp: float, alpha: float, beta: float, aug: str, seed: int) -> tuple[float, float]:
        K.utils.set_random_seed(seed)
        m = card.family.build(card.family.scale(base, a.width), "student")
        feats = K.Model(m.inputs, [m.get_layer("logits").input, m.output])
        proj = K.layers.Dense(t_feat.shape[1], name="hint")
        proj.build((None, int(feats.outputs[0].shape[-1])))
        steps = int(np.ceil(len(tr) / 64))
        opt = make_optimizer(3e-3, 1e-5, a.epochs, steps)
        ce = K.losses.SparseCategoricalCrossentropy(from_logits=True)
        kl = K.losses.KLDivergence()
        variables = m.trainable_variables + (proj.trainable_variables if beta else [])

        @T.function
        def step(xb, yb, tl, tf_):
            n = T.shape(xb)[0]
            if aug != "none":
                xp = perturb(xb, aug)
                xb, tl = T.concat([xb, xp], 0), T.concat([tl, teacher(xp, training=False)], 0)
            with T.GradientTape() as tape:
                fs, lg = feats(xb, training=True)
                loss = (1 - alpha) * ce(yb, lg[:n])
                if alpha:
                    loss += alpha * kl(T.nn.softmax(tl / temp), T.nn.softmax(lg / temp)) * temp * temp
                if beta:
                    loss += beta * T.reduce_mean(T.square(proj(fs[:n]) - tf_))
            opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

        ds = T.data.Dataset.from_tensor_slices((x[tr], y[tr], t_logits[tr], t_feat[tr])).shuffle(10_000, seed=seed)
        for _ in range(a.epochs):
            for batch in ds.batch(64):
                step(*batch)
        acc = lambda idx_: float((m.predict(x[idx_], batch_size=256, verbose=0).argmax(1) == y[idx_]).mean())
        return acc(ev), acc(tr)

    for cfg in a.configs.split(","):
        t_, al, be, aug = cfg.split(":")
        temp, alpha, beta = float(t_), float(al), float(be)
        if alpha == 0 and aug != "none":
            raise SystemExit(f"{cfg}: an augmented copy is learned from the soft loss alone; give alpha > 0")
        accs = []
        for seed in [int(s) for s in a.seeds.split(",")]:
            t0 = time.perf_counter()
            ev_acc, tr_acc = train(temp, alpha, beta, aug, seed)
            accs.append(ev_acc)
            print(f"{cfg} seed {seed}: inner accuracy {ev_acc:.4f} (train {tr_acc:.4f}, "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"== {cfg}: mean inner accuracy {np.mean(accs):.4f}", flush=True)


if __name__ == "__main__":
    main()
