"""Write the reference data of tests/test_golden.py from the CURRENT code.

Run by hand only, from the repository root, on a clean checkout of the
commit whose results are to be pinned:

    python tests/golden/make_golden.py            # every file
    python tests/golden/make_golden.py blocks     # some of them

Each case is computed twice (the two must agree bit for bit: nothing may
depend on timing or threads) and every file is replaced atomically.  The
commit and whether daskgmm/ had uncommitted changes are stored under
``__meta__``.  The tests never call this: regenerating is a deliberate change
of the pinned results, to be said in the commit that does it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests import test_golden as golden  # noqa: E402


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(files):
    commit = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "daskgmm"))
    if dirty:
        print("warning: daskgmm/ has uncommitted changes; the reference will say so", file=sys.stderr)
    for file in files:
        arrays = {}
        for name in sorted(golden.CASES[file]):
            first, second = golden.compute(file, name), golden.compute(file, name)
            golden.assert_bitwise(first, second)
            arrays.update(first)
        arrays[f"{golden.META}{golden.SEP}commit"] = np.asarray(commit)
        arrays[f"{golden.META}{golden.SEP}daskgmm_dirty"] = np.asarray(dirty)
        path = golden.GOLDEN_DIR / f"{file}.npz"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **golden.pack(arrays))
        os.replace(tmp, path)
        print(f"{path.relative_to(ROOT)}: {len(golden.CASES[file])} cases, {len(arrays)} arrays, "
              f"{path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    unknown = set(sys.argv[1:]) - set(golden.FILES)
    if unknown:
        sys.exit(f"unknown file(s) {sorted(unknown)}: choose among {', '.join(golden.FILES)}")
    main(sys.argv[1:] or golden.FILES)
