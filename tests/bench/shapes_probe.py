"""How hard the generated ``shapes`` set is: a plain CNN (six 3x3 convs with
batch norm, about 290K parameters, no augmentation) trained from scratch on
the first 80% and validated on the rest, accuracy per epoch. A proxy task
for search should be learnable and not saturated (a strong small model at
70-90%; digits gives every small model 0.93-0.95).

    .venv/bin/python tests/bench/shapes_probe.py [N] [SIZE] [EPOCHS]     # defaults 10000 32 8
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    from odml._tf import keras
    from odml.data.shapes import generate

    n, size, epochs = ([int(a) for a in sys.argv[1:]] + [10000, 32, 8][len(sys.argv) - 1:])[:3]
    K = keras()
    x, y = generate(n, size)
    x = x.astype("float32") / 255
    nv = n // 5
    K.utils.set_random_seed(0)

    def block(h, f):
        for _ in range(2):
            h = K.layers.Conv2D(f, 3, padding="same", use_bias=False)(h)
            h = K.layers.ReLU()(K.layers.BatchNormalization()(h))
        return K.layers.MaxPool2D()(h)

    inp = K.Input((size, size, 3))
    h = block(block(block(inp, 32), 64), 128)
    model = K.Model(inp, K.layers.Dense(10)(K.layers.GlobalAveragePooling2D()(h)))
    model.compile(K.optimizers.Adam(2e-3), K.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    t0 = time.time()
    hist = model.fit(x[nv:], y[nv:], validation_data=(x[:nv], y[:nv]), epochs=epochs, batch_size=64, verbose=0)
    print(f"shapes:{n} at {size}x{size}, {model.count_params():,} parameters, {epochs} epochs, "
          f"{time.time() - t0:.0f} s")
    print("val accuracy per epoch:", " ".join(f"{v:.3f}" for v in hist.history["val_accuracy"]))
    print(f"train accuracy at the end: {hist.history['accuracy'][-1]:.3f}")


if __name__ == "__main__":
    main()
