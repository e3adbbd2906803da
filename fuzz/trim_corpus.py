#!/usr/bin/env python3
"""Trims a fuzz corpus to at most N files that keep as much edge coverage as
possible (greedy set cover), so the committed corpus stays small.

`cargo fuzz cmin` keeps every input that adds a feature, which after a few
minutes of fuzzing is hundreds of files. This script asks the built fuzz
binary (libFuzzer's `-merge=1 -set_cover_merge=1 -use_counters=0`) for every
input's edge set, then keeps:

* every hand-written seed (a file whose name is not a 40-hex-digit hash);
* then, greedily, the inputs that add the most edges not yet covered
  (smaller first on ties), until N files or no input adds anything.

Usage (from fuzz/, after `cargo fuzz build -O`):
    python3 trim_corpus.py TARGET MAX_FILES [EXTRA_DIR...]

It reads corpus/TARGET plus any EXTRA_DIRs (e.g. a CI run's new inputs) and
rewrites corpus/TARGET in place. The binary is looked up in
$CARGO_TARGET_DIR (default /var/cache/polis-fuzz-target).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HASH_NAME = re.compile(r"^[0-9a-f]{40}$")


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    target, max_files = sys.argv[1], int(sys.argv[2])
    extra_dirs = sys.argv[3:]
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "corpus", target)
    target_dir = os.environ.get("CARGO_TARGET_DIR", "/var/cache/polis-fuzz-target")
    binary = os.path.join(target_dir, "x86_64-unknown-linux-gnu", "release", target)
    if not os.access(binary, os.X_OK):
        print(f"{binary} not found: run `cargo fuzz build -O {target}` first", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        empty = os.path.join(tmp, "out")
        os.mkdir(empty)
        control = os.path.join(tmp, "control")
        subprocess.run(
            [binary, "-merge=1", "-set_cover_merge=1", "-use_counters=0",
             f"-merge_control_file={control}", empty, corpus, *extra_dirs],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        files, features = read_control(control)

        chosen, covered = [], set()
        for index, path in enumerate(files):
            if not HASH_NAME.match(os.path.basename(path)) and os.path.dirname(
                os.path.abspath(path)
            ) == corpus:
                chosen.append(index)
                covered |= features.get(index, set())
        seeds = len(chosen)
        remaining = {i: f for i, f in features.items() if i not in chosen}
        sizes = {i: os.path.getsize(files[i]) for i in remaining}
        while len(chosen) < max_files and remaining:
            best = max(remaining, key=lambda i: (len(remaining[i] - covered), -sizes[i]))
            if not remaining[best] - covered:
                break
            chosen.append(best)
            covered |= remaining.pop(best)
        total = set().union(*features.values()) if features else set()

        keep = {}
        for position, index in enumerate(chosen):
            with open(files[index], "rb") as f:
                data = f.read()
            name = os.path.basename(files[index])
            if position >= seeds:
                name = hashlib.sha1(data).hexdigest()
            keep[name] = data
        shutil.rmtree(corpus)
        os.makedirs(corpus)
        for name, data in keep.items():
            with open(os.path.join(corpus, name), "wb") as f:
                f.write(data)
    size = sum(len(d) for d in keep.values())
    print(f"{target}: kept {len(keep)} files ({seeds} hand-written seeds), {size} bytes, "
          f"covering {len(covered)} of {len(total)} edges")
    return 0


def read_control(path):
    """The input paths and each input's features from a merge control file."""
    with open(path) as f:
        lines = f.read().splitlines()
    count = int(lines[0])
    files = lines[2:2 + count]
    features = {}
    for line in lines[2 + count:]:
        if line.startswith("FT "):
            parts = line.split()
            features[int(parts[1])] = set(map(int, parts[2:]))
    return files, features


if __name__ == "__main__":
    sys.exit(main())
