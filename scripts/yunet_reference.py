"""Reference outputs of the YuNet face detector from onnxruntime, for faceattr's parity tests.

Usage: python scripts/yunet_reference.py MODEL.onnx ASTRONAUT.png OUT_DIR

For each case it feeds onnxruntime exactly the tensor faceattr builds (BGR, 0-255 floats, no
resize, zero padding to multiples of 32) and writes every output, in the model's output order,
as little-endian float32 to OUT_DIR/<case>.bin, plus OUT_DIR/reference.json with the shapes,
the onnxruntime version, the model's sha256, and the best-scoring cell decoded as OpenCV does.
"""
import hashlib
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def cases(rgb):
    # (name, crop box (left, top, right, bottom) of the photo, padded input height, width)
    yield "astronaut_512", rgb, 512, 512
    # A crop that is not square and not a multiple of 32: the bottom/right zero padding matters.
    crop = rgb[0:300, 40:440]
    yield "astronaut_crop_300x400", crop, 320, 416


def to_input(rgb, ph, pw):
    h, w, _ = rgb.shape
    x = np.zeros((1, 3, ph, pw), np.float32)
    x[0, :, :h, :w] = rgb[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    return x


def best_face(outs, names, pw):
    out = dict(zip(names, outs))
    best = None
    for s in (8, 16, 32):
        cls = np.clip(out[f"cls_{s}"][0, :, 0], 0, 1)
        obj = np.clip(out[f"obj_{s}"][0, :, 0], 0, 1)
        score = np.sqrt(cls * obj)
        i = int(np.argmax(score))
        if best is None or score[i] > best["score"]:
            cols = pw // s
            r, c = divmod(i, cols)
            b = out[f"bbox_{s}"][0, i]
            k = out[f"kps_{s}"][0, i]
            best = {
                "stride": s, "cell": i, "score": float(score[i]),
                "centre": [float((c + b[0]) * s), float((r + b[1]) * s)],
                "size": [float(np.exp(b[2]) * s), float(np.exp(b[3]) * s)],
                "landmarks": [[float((c + k[2 * j]) * s), float((r + k[2 * j + 1]) * s)] for j in range(5)],
            }
    return best


def main():
    model, image, out_dir = sys.argv[1:4]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    rgb = np.asarray(Image.open(image).convert("RGB"))
    ref = {
        "onnxruntime": ort.__version__,
        "model_sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
        "outputs": names,
        "cases": [],
    }
    for name, img, ph, pw in cases(rgb):
        outs = sess.run(None, {"input": to_input(img, ph, pw)})
        with open(f"{out_dir}/{name}.bin", "wb") as f:
            for o in outs:
                f.write(np.ascontiguousarray(o, dtype="<f4").tobytes())
        ref["cases"].append({
            "name": name, "image_hw": list(img.shape[:2]), "input_hw": [ph, pw],
            "shapes": [list(o.shape) for o in outs], "best": best_face(outs, names, pw),
        })
    with open(f"{out_dir}/reference.json", "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(json.dumps([c["best"] for c in ref["cases"]], indent=1))


if __name__ == "__main__":
    main()
