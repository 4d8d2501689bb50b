"""How the benchmarks print what they measured: Markdown tables (readable in a terminal, pasteable into
README.md) and the one-line description of the machine."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table (readable in a terminal, pasteable into README.md); numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(re.fullmatch(r"[-\d.,%x×]+", r[i] or "0") for r in cells)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if num else v.ljust(w)
                                 for v, w, num in zip(values, widths, numeric)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    print(format_table(headers, rows), flush=True)


def machine_summary() -> str:
    """One line for the README's "Machine" paragraph: cores, CPU model, memory, Python, date."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return (f"{os.cpu_count()} cores ({model}), {mem_kb / 2**20:.1f} GiB RAM, Python {sys.version.split()[0]}, "
            f"{time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    print(machine_summary())  # `python -m benchmarks.report`: the machine line of benchmarks/README.md
