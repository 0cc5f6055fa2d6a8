"""onnxruntime's time for YuNet on one input, for `faceattr bench faces` (the same input tensor,
the same thread count). Prints one JSON line: {"onnxruntime": version, "ms": [per run]}.

Usage: python yunet_peer.py MODEL.onnx INPUT.f32 HEIGHT WIDTH REPEATS THREADS
INPUT.f32 is the planar BGR float32 tensor [1, 3, HEIGHT, WIDTH] faceattr built.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model, path, h, w, repeats, threads = sys.argv[1:7]
    h, w, repeats, threads = int(h), int(w), int(repeats), int(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    x = np.fromfile(path, dtype="<f4").reshape(1, 3, h, w)
    sess.run(None, {"input": x})  # warm-up
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        ms.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"onnxruntime": ort.__version__, "ms": ms}))


if __name__ == "__main__":
    main()
