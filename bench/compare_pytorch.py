"""finetune against PyTorch (Python) on the same machine and the same libtorch; run by bench/compare_pytorch.

For each model and setting it runs `finetune bench --json` and bench/model_bench_pytorch.py (the same
workload written in Python) as separate processes, alternating which goes first, for --runs rounds.
Each process reports medians of its timed iterations; this script reports the median over rounds,
the ratio ours/theirs (above 1: we are faster), and each process's peak resident memory (from
wait4's ru_maxrss). Rounds also run the data loader comparison (`finetune bench loader` against
bench/loader_torchvision.py, as bench/compare_data_loader does) unless --skip-loader.

"Identical settings" rows run PyTorch in finetune's environment: the same thread count, the OpenMP
wait policy and spin count finetune runs under (it starts itself again with OMP_WAIT_POLICY=PASSIVE and
GOMP_SPINCOUNT=3000 unless the policy is set), the same CPU kernels (ATEN_CPU_CAPABILITY) and the same
glibc allocator settings (finetune keeps freed memory for reuse; the
MALLOC_MMAP_MAX_/MALLOC_TRIM_THRESHOLD_ variables give PyTorch the same). Layers stay each side's own:
finetune folds BatchNorm into the convolution before it in inference, PyTorch's eager modules do not.
A further PyTorch run per model, "as a tutorial writes it", uses fp32 NCHW and the inherited
environment; finetune's defaults (channels-last + bf16 autocast) are compared with it.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "/usr/bin/python3"

ap = argparse.ArgumentParser()
ap.add_argument("--binary", help="the finetune executable (a release build)")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--models", default="mobilenet_v2,resnet50")
ap.add_argument("--batch-size", type=int, default=16)
ap.add_argument("--iterations", type=int, default=5)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
ap.add_argument("--input-size", type=int, default=None, help="override (for a quick smoke run)")
ap.add_argument("--settings", default="fp32,cl,cl-bf16",
                help="comma list of: fp32 (NCHW), cl (channels-last fp32), cl-bf16 (channels-last + bf16 autocast)")
ap.add_argument("--skip-loader", action="store_true")
ap.add_argument("--loader-workers", type=int, default=2)
ap.add_argument("--json-out", help="also write every measurement to this file")
ap.add_argument("--report", metavar="FILE", help="print the report of an earlier --json-out file and exit")
args = ap.parse_args()
if not args.binary and not args.report:
    sys.exit("--binary is required (or --report FILE)")

SETTINGS = {
    "fp32": ("fp32, NCHW", []),
    "cl": ("fp32, channels-last", ["--channels-last"]),
    "cl-bf16": ("bf16 autocast, channels-last", ["--channels-last", "--dtype", "bf16"]),
}
settings = args.settings.split(",")
for s in settings:
    if s not in SETTINGS:
        sys.exit(f"--settings: unknown value '{s}'; valid values: {', '.join(SETTINGS)}")
models = args.models.split(",")


def run_with_rss(cmd, env=None):
    """Runs cmd to completion and returns (stdout, stderr, peak RSS MB, wall seconds) using os.wait4."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Drain both pipes without blocking the child, then reap it ourselves to read its rusage.
    chunks = {"out": [], "err": []}

    def drain(stream, key):
        for line in stream:
            chunks[key].append(line)

    threads = [threading.Thread(target=drain, args=(proc.stdout, "out")),
               threading.Thread(target=drain, args=(proc.stderr, "err"))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return out, err, usage.ru_maxrss / 1024, seconds


def common_flags(model):
    flags = ["--models", model, "--batch-size", str(args.batch_size), "--iterations", str(args.iterations),
             "--warmup", str(args.warmup), "--threads", str(args.threads)]
    if args.input_size:
        flags += ["--input-size", str(args.input_size)]
    return flags


def ours(model, setting):
    cmd = [args.binary, "bench", *common_flags(model), *SETTINGS[setting][1], "--json"]
    out, err, rss, _ = run_with_rss(cmd)
    return json.loads(out.strip().splitlines()[-1]), rss


def theirs(model, setting, env=None):
    cmd = [PYTHON, str(ROOT / "bench/model_bench_pytorch.py"), *common_flags(model), *SETTINGS[setting][1]]
    out, err, rss, _ = run_with_rss(cmd, env)
    return json.loads(out.strip().splitlines()[-1]), rss


def our_environment():
    """finetune's `info --json` (its OpenMP wait policy) and an environment that gives PyTorch the same."""
    out, _, _, _ = run_with_rss([args.binary, "info", "--json"])
    info = json.loads(out.strip().splitlines()[-1])
    env = dict(os.environ)
    policy = info.get("omp_wait_policy")
    if policy and policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    spin = info.get("gomp_spincount")
    if spin and spin != "default":
        env["GOMP_SPINCOUNT"] = spin
    kernels = info.get("cpu_kernels")
    if kernels in ("AVX512", "AVX2", "DEFAULT"):
        # finetune sets ATEN_CPU_CAPABILITY itself on LibTorch 1.x (AVX-512 where the CPU has it).
        env["ATEN_CPU_CAPABILITY"] = kernels.lower()
    if info.get("retains_freed_memory") is True:
        # finetune calls mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, INT_MAX) at start;
        # glibc reads the same settings from these variables.
        env["MALLOC_MMAP_MAX_"] = "0"
        env["MALLOC_TRIM_THRESHOLD_"] = "2147483647"
    return info, env


def loader_data():
    data = ROOT / ".cache/bench-images-0"
    if (data / ".complete").exists():
        return data
    cache = os.environ.get("FINETUNE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "finetune")
    photos = sorted(Path(cache, "datasets/foolbox").glob("imagenet_*.jpg"))
    if not photos:
        sys.exit("no foolbox photos in the finetune cache (run scripts/setup), or pass --skip-loader")
    shutil.rmtree(data, ignore_errors=True)
    for photo in photos:  # the same folder bench/compare_data_loader builds: 20 classes x 40 copies
        folder = data / photo.stem
        folder.mkdir(parents=True)
        for i in range(1, 41):
            shutil.copyfile(photo, folder / f"{i}.jpg")
    (data / ".complete").touch()
    return data


def loader_ours(data):
    out, _, _, _ = run_with_rss([args.binary, "bench", "loader", "--data", str(data), "--workers",
                                 str(args.loader_workers), "--augment", "train", "--json"])
    return json.loads(out.strip().splitlines()[-1])["images_per_second"]


def loader_theirs(data):
    out, _, _, _ = run_with_rss([PYTHON, str(ROOT / "bench/loader_torchvision.py"), "--data", str(data),
                                 "--workers", str(args.loader_workers), "--augment", "train"])
    return json.loads(out.strip().splitlines()[-1])["images_per_second"]


def our_libtorch_path():
    try:
        out = subprocess.run(["ldd", args.binary], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "libtorch_cpu" in line:
                return os.path.realpath(line.split("=>")[1].split("(")[0].strip())
    except (OSError, IndexError):
        pass
    return None


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def measure():
    """Runs every round; returns the measurements as a JSON-able dict (what --json-out writes)."""
    records = {}  # (model, setting, side) -> per-round result rows; side "tutorial" is PyTorch fp32 NCHW
    loader = {"ours": [], "theirs": []}  # in the inherited environment
    loads = [os.getloadavg()]
    info = {}
    our_info, identical_env = our_environment()
    data = None if args.skip_loader else loader_data()
    started = time.time()

    def record(r, model, setting, side, table, rss):
        info[side] = {k: table.get(k) for k in ("libtorch", "libtorch_path", "threads")}
        row = dict(table["results"][0])
        row["peak_rss_mb"] = rss
        records.setdefault((model, setting, side), []).append(row)
        print(f"round {r + 1}/{args.runs} {model:13} {setting:8} {side:8} "
              f"train {row.get('images_per_second') or float('nan'):6.2f} img/s  "
              f"infer {row.get('inference_images_per_second') or float('nan'):6.2f} img/s  "
              f"rss {rss:5.0f} MB" + (f"  ({row['error']})" if row.get("error") else ""),
              file=sys.stderr, flush=True)

    for r in range(args.runs):
        for model in models:
            ours_jobs = [(s, "ours", lambda m=model, s=s: ours(m, s)) for s in settings]
            their_jobs = [(s, "theirs", lambda m=model, s=s: theirs(m, s, identical_env)) for s in settings]
            # Interleave: ours and theirs alternate, and the order flips every round.
            ordered = [job for pair in zip(ours_jobs, their_jobs) for job in pair]
            ordered.insert(len(ordered) // 2, ("fp32", "tutorial", lambda m=model: theirs(m, "fp32")))
            if r % 2 == 1:
                ordered.reverse()
            for setting, side, fn in ordered:
                table, rss = fn()
                record(r, model, setting, side, table, rss)
        if data is not None:
            pair = [("ours", loader_ours), ("theirs", loader_theirs)]
            if r % 2 == 1:
                pair.reverse()
            for side, fn in pair:
                loader[side].append(fn(data))
        loads.append(os.getloadavg())
    info.setdefault("ours", {})["libtorch_path"] = our_libtorch_path()
    return {"args": vars(args), "cpu": cpu_model(), "cpus": os.cpu_count(), "seconds": time.time() - started,
            "loads": loads, "info": info, "loader": loader if data is not None else None,
            "allocator": {"ours": "retains freed memory" if our_info.get("retains_freed_memory") else "glibc default",
                          "theirs": "MALLOC_MMAP_MAX_=0" if "MALLOC_MMAP_MAX_" in identical_env else "glibc default",
                          "tutorial": "glibc default"},
            "omp_wait_policy": {"ours": our_info.get("omp_wait_policy", "default"),
                                "theirs": identical_env.get("OMP_WAIT_POLICY", "default"),
                                "tutorial": os.environ.get("OMP_WAIT_POLICY", "default")},
            "records": [{"model": m, "setting": s, "side": side, "runs": rows}
                        for (m, s, side), rows in records.items()]}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def table(out, rows):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


METRICS = [("training step, img/s", "images_per_second", 2), ("inference, img/s", "inference_images_per_second", 2),
           ("peak resident memory, MB", "peak_rss_mb", 0)]


def report(run):
    a = run["args"]
    records = {(e["model"], e["setting"], e["side"]): e["runs"] for e in run["records"]}
    models_, settings_ = a["models"].split(","), a["settings"].split(",")
    policy = run.get("omp_wait_policy", {})
    info, loads = run["info"], run["loads"]
    lines = []
    out = lines.append
    out(f"finetune vs PyTorch (Python): {', '.join(models_)}, batch {a['batch_size']}, {a['threads']} threads, "
        f"{a['runs']} interleaved rounds of {a['warmup']} warm-up + {a['iterations']} timed iterations")
    out(f"machine: {run.get('cpu')}, {run.get('cpus')} CPUs; load average (1 min) {loads[0][0]:.2f} at start, "
        f"{loads[-1][0]:.2f} at end, max {max(l[0] for l in loads):.2f}; {run.get('seconds', 0):.0f} s")
    out(f"libtorch: ours {info.get('ours', {}).get('libtorch')} ({info.get('ours', {}).get('libtorch_path')}), "
        f"PyTorch {info.get('theirs', {}).get('libtorch')} ({info.get('theirs', {}).get('libtorch_path')})")
    out(f"OpenMP wait policy: finetune {policy.get('ours')}, PyTorch in the identical-settings rows "
        f"{policy.get('theirs')}, PyTorch as a tutorial runs it {policy.get('tutorial')}")
    if run.get("allocator"):
        alloc = run["allocator"]
        out(f"allocator: finetune {alloc['ours']}, PyTorch in the identical-settings rows {alloc['theirs']}, "
            f"as a tutorial runs it {alloc['tutorial']}")

    def values(model, setting, side, key):
        return [row.get(key) for row in records.get((model, setting, side), [])]

    out("")
    out("identical settings (ratio finetune/PyTorch: above 1 is faster, or for memory, below 1 is less)")
    for metric, key, digits in METRICS:
        out(f"{metric}")
        rows = [["model", "setting", "finetune", "PyTorch", "ratio", "finetune runs", "PyTorch runs"]]
        for model in models_:
            for setting in settings_:
                o, t = values(model, setting, "ours", key), values(model, setting, "theirs", key)
                mo, mt = med(o), med(t)
                rows.append([model, SETTINGS[setting][0], fmt(mo, digits), fmt(mt, digits),
                             fmt(ratio(mo, mt), 2) + "x", " ".join(fmt(v, digits) for v in o),
                             " ".join(fmt(v, digits) for v in t)])
        table(out, rows)

    out("")
    out("finetune against PyTorch as a tutorial writes it (fp32, NCHW, inherited environment)")
    rows = [["model", "metric", "finetune setting", "finetune", "PyTorch", "ratio", "PyTorch runs"]]
    for model in models_:
        for metric, key, digits in METRICS[:2]:
            t = values(model, "fp32", "tutorial", key)
            mt = med(t)
            candidates = [(med(values(model, s, "ours", key)), s) for s in settings_]
            picks = [("default", "cl")] if "cl" in settings_ else []
            fastest = max((c for c in candidates if c[0] is not None), default=None)
            if fastest:
                picks.append(("fastest", fastest[1]))
            for label, s in picks:
                mo = med(values(model, s, "ours", key))
                rows.append([model, metric, f"{label}: {SETTINGS[s][0]}", fmt(mo, digits), fmt(mt, digits),
                             fmt(ratio(mo, mt), 2) + "x", " ".join(fmt(v, digits) for v in t)])
    table(out, rows)
    errors = sorted({f"{m} {s} {side}: {row['error']}" for (m, s, side), rows_ in records.items() for row in rows_
                     if row.get("error")})
    for e in errors:
        out(f"  note: {e}")
    if any(row.get("relu6_clamp") for rows_ in records.values() for row in rows_):
        out("  note: PyTorch's bf16 runs use a ReLU6 that clamps bf16 tensors, as finetune's does "
            "(LibTorch 1.13 cannot differentiate nn.ReLU6 in bf16)")

    loader = run.get("loader")
    if loader:
        mo, mt = med(loader["ours"]), med(loader["theirs"])
        out("")
        out(f"data loader (train augmentation, 224 px, batch 32, {a['loader_workers']} workers, 512x512 JPEGs), "
            "img/s")
        out(f"  finetune {fmt(mo)} (runs {' '.join(fmt(v) for v in loader['ours'])}), torchvision + PIL {fmt(mt)} "
            f"(runs {' '.join(fmt(v) for v in loader['theirs'])}): {fmt(ratio(mo, mt), 2)}x")
    print("\n".join(lines))


if args.report:
    report(json.loads(Path(args.report).read_text()))
    sys.exit(0)
run = measure()
if args.json_out:
    Path(args.json_out).write_text(json.dumps(run, indent=1))
report(run)
