"""White-box attacks on a Keras classifier, for the adversarial detector's benchmark, tests and demo.

FGSM (Goodfellow et al. 2015) and PGD with a random start (Madry et al. 2018), L-infinity budget
`eps` on inputs in [0, 1], gradients of the cross-entropy from TensorFlow. Imported only where
TensorFlow is wanted (never by a service).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _gradient_sign(model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import keras
    import tensorflow as tf

    tensor = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        loss = keras.losses.sparse_categorical_crossentropy(y, model(tensor, training=False))
    return np.sign(tape.gradient(loss, tensor).numpy())


def fgsm(model: Any, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """One step of size eps along the sign of the loss gradient."""
    return np.clip(x + eps * _gradient_sign(model, x, y), 0, 1).astype(np.float32)


def pgd(model: Any, x: np.ndarray, y: np.ndarray, eps: float, steps: int = 20, seed: int = 0) -> np.ndarray:
    """`steps` signed-gradient steps of 2.5 eps / steps from a random start, projected on the eps-ball."""
    alpha = 2.5 * eps / steps
    rng = np.random.default_rng(seed)
    adversarial = np.clip(x + rng.uniform(-eps, eps, x.shape), 0, 1).astype(np.float32)
    for _ in range(steps):
        stepped = adversarial + alpha * _gradient_sign(model, adversarial, y)
        adversarial = np.clip(np.clip(stepped, x - eps, x + eps), 0, 1).astype(np.float32)
    return adversarial


ATTACKS = {"fgsm": fgsm, "pgd": pgd}
