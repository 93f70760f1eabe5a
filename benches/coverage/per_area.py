#!/usr/bin/env python3
"""Line coverage per area from an lcov file (cargo tarpaulin --out Lcov): one row per module of
src/ (a directory or a file), and one per other crate, lowest first, then the whole workspace.

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
    rows = sorted(found, key=lambda a: hit[a] / found[a])
    print(f"| area | lines | covered | % |\n|---|---:|---:|---:|")
    for name in rows:
        print(f"| {name} | {found[name]} | {hit[name]} | {100 * hit[name] / found[name]:.1f} |")
    total, covered = sum(found.values()), sum(hit.values())
    print(f"| **workspace** | {total} | {covered} | **{100 * covered / total:.1f}** |")


if __name__ == "__main__":
    main()
