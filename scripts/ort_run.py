#!/usr/bin/env python3
"""Runs an ONNX file with ONNX Runtime (the second runtime moda-edge checks its graphs against).

  ort_run.py MODEL.onnx --threads T --input NAME=FILE.npy ... --output-dir DIR
      writes every output as DIR/NAME.npy (float32)
  ort_run.py MODEL.onnx --threads T --input NAME=FILE.npy ... --bench ITERS
      prints one JSON line: {"median_ms": ..., "runs_ms": [...]} (one untimed warm-up run first)
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    ap.add_argument("--output-dir")
    ap.add_argument("--bench", type=int, default=0, metavar="ITERS")
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in args.input:
        name, _, path = spec.partition("=")
        feeds[name] = np.load(path).astype(np.float32)

    if args.bench:
        sess.run(None, feeds)
        runs = []
        for _ in range(args.bench):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            runs.append((time.perf_counter() - t0) * 1000.0)
        print(json.dumps({"median_ms": float(np.median(runs)), "runs_ms": runs, "ort_version": ort.__version__}))
        return 0

    outputs = sess.run(None, feeds)
    os.makedirs(args.output_dir, exist_ok=True)
    for meta, value in zip(sess.get_outputs(), outputs):
        np.save(os.path.join(args.output_dir, meta.name + ".npy"), np.ascontiguousarray(value, dtype=np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
