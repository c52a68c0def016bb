#!/usr/bin/env python3
"""ONNX Runtime's static-quantization calibrators over a moda-edge calibration set: the
independent reference `moda-edge calibrate` is checked against (tests/quant_ort.rs).

  ort_calibrate.py MODEL.onnx SET/NETWORK OUT.json [--num-bins 2048]

SET/NETWORK/<sample>/<input>.npy as `moda-edge calibrate` reads it. Calibrates the inputs and
outputs of every Conv, MatMul and Gemm with MinMax and Entropy (num_quantized_bins 128) and
writes {tensor: {"max": amax, "entropy": amax}} with amax = max(|low|, |high|).
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator


class SetReader(CalibrationDataReader):
    def __init__(self, folder):
        self.samples = []
        for name in sorted(os.listdir(folder)):
            d = os.path.join(folder, name)
            if os.path.isdir(d):
                self.samples.append({f[:-4]: np.load(os.path.join(d, f)).astype(np.float32)
                                     for f in sorted(os.listdir(d)) if f.endswith(".npy")})
        self.it = iter(self.samples)

    def get_next(self):
        return next(self.it, None)


def ranges(model, folder, method, extra):
    with tempfile.TemporaryDirectory() as tmp:
        cal = create_calibrator(model, ["Conv", "MatMul", "Gemm"],
                                augmented_model_path=os.path.join(tmp, "augmented.onnx"),
                                calibrate_method=method, extra_options=extra)
        cal.collect_data(SetReader(folder))
        data = cal.compute_data()
        out = {}
        for name, value in data.data.items():
            lo, hi = (float(np.asarray(v).reshape(-1)[0]) for v in value.range_value)
            out[name] = max(abs(lo), abs(hi))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("folder")
    ap.add_argument("out")
    ap.add_argument("--num-bins", type=int, default=2048)
    args = ap.parse_args()
    mx = ranges(args.model, args.folder, CalibrationMethod.MinMax, {})
    en = ranges(args.model, args.folder, CalibrationMethod.Entropy,
                {"num_bins": args.num_bins, "num_quantized_bins": 128})
    result = {k: {"max": mx[k], "entropy": en.get(k)} for k in mx}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
