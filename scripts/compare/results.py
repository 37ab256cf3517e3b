"""What the comparison scripts write: CSV rows of raw figures, and the
generated section of perf/RESULTS.md (shared by compare.sh and
transport-bench.sh, each with its own markers)."""

import os

from procs import ROOT


def csv_row(files, out, name, cols, values):
    """Appends `values` to the CSV file `name` under `out`, opened (with the
    `cols` header) on first use and kept in `files`; flushed at once, so a
    run stopped midway keeps what it measured."""
    if name not in files:
        f = open(os.path.join(out, name), "w")
        f.write(",".join(cols) + "\n")
        files[name] = f
    f = files[name]
    f.write(",".join(v if isinstance(v, str) else f"{v:.6g}" if isinstance(v, float) else str(v)
                     for v in values) + "\n")
    f.flush()


def record(section, begin, end, heading):
    """Replaces the section between `begin` and `end` in perf/RESULTS.md, or
    appends it under `heading`."""
    path = os.path.join(ROOT, "perf", "RESULTS.md")
    text = open(path).read()
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n" + block
    open(path, "w").write(text)
