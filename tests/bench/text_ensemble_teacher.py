"""A stronger text teacher for `odml compress` on the SMS Spam Collection:
several pQRNNs trained on the same split (seed 0 of `odml train`) from
different initialisations and distortions, their logits averaged in one
Keras model (Hinton et al. distil an ensemble). The ensemble is saved with
the members' model card (`.odml.json`), so `odml compress` takes it as a teacher like any
pQRNN.

    python tests/bench/text_ensemble_teacher.py --members 3 --epochs 6 \
        --first runs/bench_text/pqrnn.keras --out runs/bench_text/pqrnn_ensemble3.keras

``--first`` reuses an already trained pQRNN (seed 0) as the first member.
Members already trained (``<out stem>_m<k>.keras``) are reused, so an
interrupted run goes on. Prints every member's and the ensemble's accuracy and
AUC on the 1,114 held-out messages.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMS = Path(__file__).resolve().parents[3] / "shared" / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def main() -> None:
    from odml._tf import keras
    from odml.data.text import load_text
    from odml.numeric import classification_scores as scores
    from odml.train.text import TextTrainConfig, train_text
    from odml.train.trainer import save_model_atomic
    from odml.zoo import create_config
    from odml.zoo.card import ModelCard, card_path
    from odml.zoo.load import load_keras_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SMS))
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--first", default=None, help="an already trained pQRNN to use as member 0")
    ap.add_argument("--out", default="runs/bench_text/pqrnn_ensemble3.keras")
    a = ap.parse_args()
    K = keras()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = load_text(a.data)  # the split of `odml train --seed 0`, whatever the member's seed
    members, report = [], {"data": a.data, "epochs": a.epochs, "members": []}
    for k in range(a.members):
        path = out.with_name(f"{out.stem}_m{k}.keras")
        if k == 0 and a.first and not path.is_file():
            shutil.copy(a.first, path)
            shutil.copy(card_path(a.first), card_path(path))
        if not path.is_file():
            res = train_text("pqrnn", create_config("pqrnn"), data, TextTrainConfig(epochs=a.epochs, seed=k), path)
            print(f"member {k}: trained in {res['train_wall_s']:.0f} s", flush=True)
        m = load_keras_model(path)
        m._name = f"member{k}"
        members.append(m)
    card = ModelCard.load(out.with_name(f"{out.stem}_m0.keras"))
    x_val, _ = card.family.featurizer(card)(data.texts_val)
    for k, m in enumerate(members):
        s = scores(m.predict(x_val, batch_size=256, verbose=0), data.y_val)
        report["members"].append(s)
        print(f"member {k}: accuracy {s['accuracy']:.4f} AUC {s['auc']:.4f}", flush=True)
    inp = K.Input(members[0].input_shape[1:], name="projection")
    logits = K.layers.Average(name="mean_logits")([m(inp) for m in members])
    ens = K.Model(inp, logits, name=f"pqrnn_ensemble{len(members)}")
    s = scores(ens.predict(x_val, batch_size=256, verbose=0), data.y_val)
    report.update(ensemble=s, params=int(ens.count_params()), out=str(out))
    print(f"ensemble of {len(members)}: accuracy {s['accuracy']:.4f} AUC {s['auc']:.4f}, "
          f"{ens.count_params():,} parameters", flush=True)
    save_model_atomic(ens, out, card)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
