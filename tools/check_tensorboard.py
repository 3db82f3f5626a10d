#!/usr/bin/env python3
"""Reads a TensorBoard log directory with TensorBoard's own reader and prints its scalars.

    tools/check_tensorboard.py LOGDIR [--require TAG ...]

Every folder under LOGDIR holding `events.out.tfevents.*` files is a run (e.g. `train`,
`validation`); each is loaded with `tensorboard.backend.event_processing.event_accumulator.
EventAccumulator` (which verifies the record checksums and applies restarts: a SessionLog START
hides earlier events at or after its step) and its scalar tags and values are printed.

When `tensorboard` is not importable, the script creates `.venv-tools` at the repository root
(`python3 -m venv .venv-tools && .venv-tools/bin/pip install tensorboard`) and re-runs itself there.

Exit status: 0 when every run loaded and has scalars (and every `--require`d tag appears in some
run), 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-tools"


def ensure_tensorboard():
    try:
        import tensorboard  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if os.environ.get("CHECK_TENSORBOARD_IN_VENV"):
        sys.exit("tensorboard is still not importable inside %s" % VENV)
    if not python.exists():
        print("tensorboard is not importable: creating %s" % VENV, file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    try:
        subprocess.check_call([str(python), "-c", "import tensorboard"], stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        subprocess.check_call([str(VENV / "bin" / "pip"), "install", "--quiet", "tensorboard"])
    env = dict(os.environ, CHECK_TENSORBOARD_IN_VENV="1")
    os.execve(str(python), [str(python), str(Path(__file__).resolve())] + sys.argv[1:], env)


def runs(logdir):
    """Folders (relative names) that directly contain event files, sorted."""
    found = []
    for folder, _, files in os.walk(logdir):
        if any("tfevents" in name for name in files):
            rel = os.path.relpath(folder, logdir)
            found.append("." if rel == "." else rel)
    return sorted(found)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir")
    parser.add_argument("--require", action="append", default=[], metavar="TAG",
                        help="fail unless this scalar tag appears in some run")
    args = parser.parse_args()
    ensure_tensorboard()

    import tensorboard
    from tensorboard.backend.event_processing import event_accumulator

    if not os.path.isdir(args.logdir):
        sys.exit("%s is not a directory" % args.logdir)
    names = runs(args.logdir)
    print("tensorboard %s, log directory %s" % (tensorboard.__version__, args.logdir))
    if not names:
        print("no event files found")
        return 1
    ok = True
    seen = set()
    for run in names:
        path = os.path.join(args.logdir, run)
        files = sorted(f for f in os.listdir(path) if "tfevents" in f)
        acc = event_accumulator.EventAccumulator(path, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        tags = sorted(acc.Tags()[event_accumulator.SCALARS])
        print("\nrun %s (%d event file%s: %s)" % (run, len(files), "" if len(files) == 1 else "s", ", ".join(files)))
        print("  file_version: %s" % acc.file_version)
        print("  scalar tags: %s" % ", ".join(tags))
        if not tags:
            ok = False
        for tag in tags:
            seen.add(tag)
            values = ", ".join("%d=%.7g" % (e.step, e.value) for e in acc.Scalars(tag))
            print("  %s: %s" % (tag, values))
    for tag in args.require:
        if tag not in seen:
            print("missing required tag %s" % tag)
            ok = False
    print("\nOK" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
