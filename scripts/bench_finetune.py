"""Driver of scripts/bench-finetune.sh: runs the same fine-tune in faceattr, PyTorch and Keras
one after the other, each as a child process whose wall time and peak memory (ru_maxrss) are
measured here, and prints one table. A peer may be run for fewer epochs (PEER_EPOCHS); its
total is then extrapolated from its last measured epoch, and the table says so.
Usage: bench_finetune.py DATA EPOCHS PEER_EPOCHS THREADS PYTHON [PEERS]
FACEATTR names the binary (default target/release/faceattr) and FACEATTR_ARGS adds arguments to
its `train` (e.g. "--backend cuda --workers 16"); DEVICE and WORKERS reach the PyTorch peer."""
import csv, json, os, subprocess, sys, tempfile, time

data, epochs, peer_epochs, threads, python = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
peers = (sys.argv[6] if len(sys.argv) > 6 else "torch keras").split()


def measured(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        return None
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": out}


results = {}
run = tempfile.mkdtemp(prefix="faceattr-finetune-") + "/run"
m = measured([os.environ.get("FACEATTR", "target/release/faceattr"), "train", "--data", f"{data}/train",
              "--valid", f"{data}/valid", "--weights", "random", "--epochs", str(epochs), "--patience", "0",
              "--out", run] + os.environ.get("FACEATTR_ARGS", "").split())
if m:
    hist = list(csv.DictReader(open(f"{run}/history.csv")))
    m["epochs"] = [{"epoch": int(r["epoch"]), "seconds": float(r["elapsed_s"]), "data_wait_s": float(r["data_wait_s"]),
                    "val_acc": float(r["val_acc"]), "cached": r["cached"]} for r in hist]
    results["faceattr"] = m
for peer in peers:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    m = measured([python, "scripts/finetune_peer.py", peer, data, str(peer_epochs), threads], env)
    if m:
        m.update(json.loads(m.pop("stdout").strip().splitlines()[-1]))
        results[peer] = m

print(f"fine-tune: {data}, {epochs} epochs, batch 12, 218x178, {threads} threads")
print(f"{'':<10}{'epoch 1 s':>10}{'later s':>10}{'total s':>10}{'peak MB':>9}{'val acc':>9}  notes")
base = None
for name, r in results.items():
    eps = r["epochs"]
    first, later = eps[0]["seconds"], (eps[-1]["seconds"] if len(eps) > 1 else eps[0]["seconds"])
    total = r["wall_s"]
    note = ""
    if len(eps) < epochs:
        # the child's own start-up and its measured epochs, plus the missing epochs at the last rate
        total = r["wall_s"] + (epochs - len(eps)) * later
        note = f"{len(eps)} epochs measured, total extrapolated"
    if name == "faceattr":
        base = total
        wait = sum(e["data_wait_s"] for e in eps) / sum(e["seconds"] for e in eps)
        note = f"waiting for data {100 * wait:.1f} % of epoch time"
    elif base:
        note = (note + "; " if note else "") + f"{total / base:.2f}x faceattr's time"
    r["total_s_for_all_epochs"] = total
    print(f"{name:<10}{first:>10.0f}{later:>10.0f}{total:>10.0f}{r['peak_rss_mb']:>9.0f}{eps[-1]['val_acc']:>9.3f}  {note}")
print(json.dumps(results))
