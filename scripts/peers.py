"""The peers' side of scripts/bench-peers.sh: W1/W2/W3 in PyTorch or Keras, printed as JSON
with the same keys as `faceattr bench model --json`. Usage: peers.py torch|keras THREADS REPEATS"""
import json, statistics, sys, time

which, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
H, W = 218, 178


def median_rate(batch, fn):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


if which == "torch":
    import torch, torchvision
    torch.set_num_threads(threads)
    base = torchvision.models.vgg16().features.eval()
    head = torch.nn.Sequential(torch.nn.Linear(512, 128), torch.nn.ReLU(), torch.nn.BatchNorm1d(128), torch.nn.Linear(128, 2))
    for p in base[:24].parameters():
        p.requires_grad_(False)
    cl = torch.channels_last
    base = base.to(memory_format=cl)
    opt = torch.optim.Adam([p for p in base.parameters() if p.requires_grad] + list(head.parameters()), 1e-3)
    x12, x32 = torch.randn(12, 3, H, W).to(memory_format=cl), torch.randn(32, 3, H, W).to(memory_format=cl)
    y = torch.eye(2)[torch.arange(12) % 2]

    def w1(x):
        with torch.no_grad():
            base(x).mean((2, 3))

    def step(frozen_out):
        opt.zero_grad()
        f = base[24:](frozen_out).mean((2, 3))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(f), y)
        loss.backward()
        opt.step()

    def w2():
        with torch.no_grad():
            pre = base[:24](x12)
        step(pre)

    with torch.no_grad():
        cached = base[:24](x12)
    out = {"w1_b12_img_s": median_rate(12, lambda: w1(x12)), "w1_b32_img_s": median_rate(32, lambda: w1(x32)),
           "w2_b12_img_s": median_rate(12, w2), "w3_b12_img_s": median_rate(12, lambda: step(cached))}
else:
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tf_keras as keras
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(H, W, 3), pooling="avg")
    for layer in base.layers[:-5]:
        layer.trainable = False
    model = keras.Sequential([base, keras.layers.Dense(128, activation="relu"), keras.layers.BatchNormalization(), keras.layers.Dense(2, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    x12, x32 = tf.random.normal((12, H, W, 3)), tf.random.normal((32, H, W, 3))
    y = tf.one_hot(tf.range(12) % 2, 2)
    pool4 = base.get_layer("block4_pool").output
    suffix_in = keras.Input(shape=pool4.shape[1:])
    h = suffix_in
    for name in ["block5_conv1", "block5_conv2", "block5_conv3", "block5_pool"]:
        h = base.get_layer(name)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    for layer in model.layers[1:]:
        h = layer(h)
    suffix = keras.Model(suffix_in, h)
    suffix.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    cached = keras.Model(base.input, pool4).predict(x12, verbose=0)
    out = {"w1_b12_img_s": median_rate(12, lambda: base.predict_on_batch(x12)),
           "w1_b32_img_s": median_rate(32, lambda: base.predict_on_batch(x32)),
           "w2_b12_img_s": median_rate(12, lambda: model.train_on_batch(x12, y)),
           "w3_b12_img_s": median_rate(12, lambda: suffix.train_on_batch(cached, y))}
print(json.dumps(out))
