"""The peers' side of scripts/bench-finetune.sh: the reference fine-tune (VGG16 with random
weights, blocks 1-4 frozen, head Dense(128)-ReLU-BN-Dense(2), Adam 1e-3, batch 12, 218x178)
on a class-folder tree, the way a practitioner writes it in each framework. Prints one JSON
line: per-epoch seconds, loss and validation accuracy.
Usage: finetune_peer.py keras|torch DATA EPOCHS THREADS
PyTorch on a GPU: DEVICE=cuda (TF32 on, as PyTorch's default convolutions), WORKERS=12 loader
processes, pinned memory."""
import json, os, sys, time

which, data, epochs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
H, W, BATCH = 218, 178, 12
rows = []
start = time.perf_counter()

if which == "keras":
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(0)
    import tf_keras as keras
    from tf_keras.applications.vgg16 import preprocess_input
    from tf_keras.preprocessing.image import ImageDataGenerator

    gen = ImageDataGenerator(preprocessing_function=preprocess_input)
    train = gen.flow_from_directory(f"{data}/train", target_size=(H, W), batch_size=BATCH, class_mode="categorical", seed=0)
    valid = gen.flow_from_directory(f"{data}/valid", target_size=(H, W), batch_size=BATCH, class_mode="categorical", shuffle=False)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(H, W, 3), pooling="avg")
    for layer in base.layers[:-5]:
        layer.trainable = False
    model = keras.Sequential([base, keras.layers.Dense(128, activation="relu"), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rows.append({"epoch": epoch + 1, "seconds": time.perf_counter() - self.t,
                         "train_loss": logs["loss"], "val_acc": logs["val_accuracy"]})

    model.fit(train, validation_data=valid, epochs=epochs, callbacks=[Timer()], verbose=0)
else:
    import torch, torchvision
    from torchvision import transforms

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(os.environ.get("DEVICE", "cpu"))
    workers = int(os.environ.get("WORKERS", "2"))
    pin = dev.type == "cuda"
    tf = transforms.Compose([transforms.Resize((H, W)), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    train = torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(f"{data}/train", tf), batch_size=BATCH,
                                        shuffle=True, num_workers=workers, pin_memory=pin)
    valid = torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(f"{data}/valid", tf), batch_size=BATCH,
                                        num_workers=workers, pin_memory=pin)
    base = torchvision.models.vgg16().features
    for p in base[:24].parameters():
        p.requires_grad_(False)
    head = torch.nn.Sequential(torch.nn.Linear(512, 128), torch.nn.ReLU(), torch.nn.BatchNorm1d(128), torch.nn.Linear(128, 2))
    model = torch.nn.Sequential(base, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    for epoch in range(epochs):
        t = time.perf_counter()
        model.train()
        total, n = 0.0, 0
        for x, y in train:
            opt.zero_grad()
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            logits = model(x.to(memory_format=torch.channels_last))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.eye(2, device=dev)[y])
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(y), n + len(y)
        model.eval()
        correct, m = 0, 0
        with torch.no_grad():
            for x, y in valid:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                correct += (model(x.to(memory_format=torch.channels_last)).argmax(1) == y).sum().item()
                m += len(y)
        rows.append({"epoch": epoch + 1, "seconds": time.perf_counter() - t, "train_loss": total / n, "val_acc": correct / m})

print(json.dumps({"framework": which, "total_s": time.perf_counter() - start, "epochs": rows}))
