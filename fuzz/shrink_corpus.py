#!/usr/bin/env python3
"""Shrinks a fuzz corpus to a byte budget, edges first.

    python3 fuzz/shrink_corpus.py TARGET BUDGET_BYTES

Run from the repository root after `cargo fuzz cmin`, with the fuzz target built
(`cargo +nightly fuzz build -O -a TARGET`; set CARGO_TARGET_DIR as for the build).
libFuzzer's set-cover merge records the features of every input (an edge with a bucket of
its hit count, and the stack depth); this keeps the `seed-*` and `regression-*` inputs,
covers the edges greedily (fewest bytes per new edge first) until they are all covered or the
budget is spent, then spends what is left of it on the other features, and deletes the rest
of fuzz/corpus/TARGET. It prints how many edges and features the kept inputs cover.
"""

import os
import pathlib
import subprocess
import sys
import tempfile

target, budget = sys.argv[1], int(sys.argv[2])
corpus = pathlib.Path("fuzz/corpus") / target
target_dir = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "fuzz/target"))
binary = target_dir / "x86_64-unknown-linux-gnu" / "release" / target

with tempfile.TemporaryDirectory() as scratch:
    control = pathlib.Path(scratch) / "control"
    output = pathlib.Path(scratch) / "out"
    output.mkdir()
    subprocess.run(
        [binary, "-merge=1", "-set_cover_merge=1", f"-merge_control_file={control}", "-rss_limit_mb=2048",
         "-timeout=10", output, corpus],
        check=True, capture_output=True,
    )
    lines = control.read_text().splitlines()

count = int(lines[0])
paths = [pathlib.Path(line) for line in lines[2:2 + count]]
features = {}
for line in lines[2 + count:]:
    kind, _, rest = line.partition(" ")
    if kind == "FT":
        index, *values = rest.split()
        features[int(index)] = set(map(int, values))
# A feature is an edge's index times 8 plus a bucket of its hit count.
edges = {index: {feature // 8 for feature in values} for index, values in features.items()}

size = {index: path.stat().st_size for index, path in enumerate(paths)}
kept = {i for i, path in enumerate(paths) if path.name.startswith(("seed-", "regression-"))}
covered_edges = set().union(*(edges.get(i, set()) for i in kept))
covered_features = set().union(*(features.get(i, set()) for i in kept))
all_edges = set().union(*edges.values())
all_features = set().union(*features.values())


def pick(table, covered, limit):
    global used
    while True:
        best, best_score = None, 0.0
        for index, values in table.items():
            if index in kept:
                continue
            new = len(values - covered)
            if new and (limit is None or used + size[index] <= limit):
                score = new / max(size[index], 1)
                if score > best_score:
                    best, best_score = index, score
        if best is None:
            return
        kept.add(best)
        used += size[best]
        covered |= table[best]


used = sum(size[i] for i in kept)
pick(edges, covered_edges, budget)
pick(features, covered_features, budget)
for index, path in enumerate(paths):
    if index not in kept:
        path.unlink()
covered_features = set().union(*(features.get(i, set()) for i in kept))
print(f"{target}: kept {len(kept)} of {count} inputs, {used} bytes; edges "
      f"{len(covered_edges)}/{len(all_edges)}, features {len(covered_features)}/"
      f"{len(all_features)}")
