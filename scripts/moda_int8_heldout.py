"""MODA (and FaCo on MODA's outputs) in INT8 against float, on held-out speech, in ONNX Runtime.

    python3 scripts/moda_int8_heldout.py MODELS_DIR INT8_DIR HELD_OUT_SET

MODELS_DIR holds moda.onnx and faco.onnx, INT8_DIR what `moda-edge calibrate` wrote for them
(calibrated on another set), HELD_OUT_SET a set from `moda-edge calibration make` with speech
the calibration did not see. Prints, per MODA output, the largest and mean absolute error and
the float output's magnitude, then the end-to-end vertex (x, y) error of FaCo run on each
precision's MODA outputs (canonical units: pixels of the 512 canvas at head scale 1).
"""
import glob
import sys

import numpy as np
import onnxruntime as ort

ort.set_default_logger_severity(3)
models, int8, held = sys.argv[1:4]


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


moda_f, moda_q = session(f"{models}/moda.onnx"), session(f"{int8}/moda.int8.onnx")
faco_f, faco_q = session(f"{models}/faco.onnx"), session(f"{int8}/faco.int8.onnx")
names = [o.name for o in moda_f.get_outputs()]
errors = {n: [] for n in names}
scale = {n: 0.0 for n in names}
vertex = []
for sample in sorted(glob.glob(f"{held}/moda/*")):
    feeds = {k: np.load(f"{sample}/{k}.npy") for k in ["waveform", "template", "noise"]}
    a = dict(zip(names, moda_f.run(None, feeds)))
    b = dict(zip(names, moda_q.run(None, feeds)))
    for n in names:
        errors[n].append(np.abs(a[n] - b[n]).ravel())
        scale[n] = max(scale[n], float(np.abs(a[n]).max()))
    fa = faco_f.run(None, {"lip": a["lip"], "eye": a["eye"], "template": feeds["template"]})[0]
    fb = faco_q.run(None, {"lip": b["lip"], "eye": b["eye"], "template": feeds["template"]})[0]
    vertex.append(np.linalg.norm((fa - fb).reshape(-1, 3)[:, :2], axis=1))
for n in names:
    e = np.concatenate(errors[n])
    print(f"moda {n}: max error {e.max():.4f}, mean {e.mean():.4f} (|float| up to {scale[n]:.3f})")
v = np.concatenate(vertex)
print(f"MODA+FaCo INT8 end to end: vertex (x, y) error mean {v.mean():.4f}, max {v.max():.4f}")
