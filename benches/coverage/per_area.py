#!/usr/bin/env python3
"""Line coverage per area from an lcov file (cargo tarpaulin --out Lcov): one row per module of
src/ (a directory or a file), and one per other crate, lowest first, then the product's total.
Not counted in it: the loopback fakes the tests run (`src/bin/fake-venues`: test tooling, and
killed with SIGKILL, so they write no profile), benches and build scripts' probes.

Usage: per_area.py target/coverage/lcov.info [workspace root]"""
import collections
import os
import sys


def area(path):
    parts = path.split(os.sep)
    if parts[0] == "src" and len(parts) > 2:
        return "src/" + parts[1]
    if parts[0] == "src":
        return "src/" + parts[1].removesuffix(".rs") + " (file)"
    return parts[0]


NOT_PRODUCT = ("src/bin", "benches", "target")


def main():
    lcov = sys.argv[1]
    root = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else ".")
    found = collections.Counter()
    hit = collections.Counter()
    current = None
    with open(lcov) as lines:
        for line in lines:
            line = line.strip()
            if line.startswith("SF:"):
                current = os.path.relpath(line[3:], root)
            elif line.startswith("DA:") and current and not current.startswith(".."):
                _, count = line[3:].split(",")[:2]
                found[area(current)] += 1
                hit[area(current)] += int(count) > 0
    product = [a for a in found if a not in NOT_PRODUCT]
    rows = sorted(product, key=lambda a: hit[a] / found[a])
    print(f"| area | lines | covered | % |\n|---|---:|---:|---:|")
    for name in rows:
        print(f"| {name} | {found[name]} | {hit[name]} | {100 * hit[name] / found[name]:.1f} |")
    total = sum(found[a] for a in product)
    covered = sum(hit[a] for a in product)
    print(f"| **product** | {total} | {covered} | **{100 * covered / total:.1f}** |")
    for name in sorted(set(found) - set(product)):
        print(f"| not counted: {name} | {found[name]} | {hit[name]} | "
              f"{100 * hit[name] / found[name]:.1f} |")


if __name__ == "__main__":
    main()
