"""Progress reporting shared by every long build (``progress=True``: HNSWIndex.add, PQIndex.add,
MultiVectorIndex.add)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_reporter(total: int, unit: str, label: str) -> Callable[[int], None]:
    """The callback behind every ``progress=True`` (count done so far): a tqdm bar when tqdm is installed, else a
    line on stderr rewritten in place."""
    try:
        from tqdm import tqdm  # optional
    except ImportError:
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, unit=unit)
        done = [0]

        def update(count: int) -> None:
            bar.update(count - done[0])
            done[0] = count
            if count >= total:
                bar.close()
        return update

    def plain(count: int) -> None:
        sys.stderr.write(f"\r{label}: {count}/{total}")
        if count >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return plain
