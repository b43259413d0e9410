#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Tabulate and chart make bench's guest results (scripts/bench.sh).

Usage: bench-report.py [--smoke] --out DIR bench-ARCH-CLOCK.json...

Writes DIR/bench.md (tables: every scenario, then the targets of the benchmark issue) and
DIR/bench.svg (medians per scenario and arch, matplotlib), and prints the tables. With
--smoke it only checks that every scenario ran and reported its statistics.
"""

import argparse
import json
import os
import sys

# (figure, numerator, denominator, comparison, target): the target is one number, one per
# arch, or None for a figure reported without a target.
TARGETS = [
    ("binfmt_ape ÷ native", "ape", "native", "<=", {"x86_64": 1.03, "aarch64": 1.05}),
    ("binfmt_misc + loader ÷ binfmt_ape", "ape-misc-loader", "ape", ">=", 1.15),
    ("shell fallback ÷ binfmt_ape (ent.com)", "ent.com-shell", "ent.com", ">=", 3.0),
    ("non-APE ELF with module ÷ without", "native", "native-no-module", "<=", 1.005),
    ("non-APE #! script with module ÷ without", "script", "script-no-module", "<=", 1.005),
    ("4 GiB ÷ 1 MiB", "ape-4g", "ape-1m", "<=", 1.01),
    ("worst-case window ÷ typical APE", "ape-worst-window", "ape", "<=", None),
]

DESCRIPTIONS = {
    "native": "payload as a native ELF (the limit)",
    "ape": "same payload as a fat APE, binfmt_ape",
    "ent.elf": "cosmo-ent, assimilated ELF",
    "ent.com": "cosmo-ent fat APE, binfmt_ape",
    "script": "#! script, module loaded",
    "ape-1m": "APE padded (sparse) to 1 MiB",
    "ape-64m": "APE padded to 64 MiB",
    "ape-4g": "APE padded to 4 GiB",
    "ape-worst-window": "header ends at byte 8189 behind 27 decoys",
    "native-no-module": "native ELF, module not loaded",
    "script-no-module": "#! script, module not loaded",
    "ape-misc-loader": "APE via binfmt_misc + cosmo's loader",
    "ent.com-misc-loader": "ent.com via binfmt_misc + loader",
    "ent.com-shell": "ent.com via the shell fallback (sh -c)",
    "ape-1-loop": "APE, one exec loop",
    "ape-2-loops": "APE, two concurrent exec loops",
}


def load(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            run = json.load(f)
        run["clock"] = "icount" if p.endswith("-icount.json") else "wall"
        run["by_name"] = {s["name"]: s for s in run["scenarios"]}
        runs.append(run)
    return runs


def ms(ns):
    return f"{ns / 1e6:.3f}"


def scenario_table(run):
    base = run["by_name"]["native"]["median_ns"]
    unit = "Minstr" if run["clock"] == "icount" else "ms"
    # Under icount a guest nanosecond is an instruction; on the wall clock it is TCG time.
    own_unit = "instr." if run["clock"] == "icount" else "ns"
    lines = [
        f"#### {run['arch']}, Linux {run['kernel']}, {run['page_size'] // 1024} KiB pages, "
        f"{run['clock']} ({'1 ns = 1 guest instruction' if run['clock'] == 'icount' else 'wall clock'}), "
        f"{run['iterations']} execs per scenario",
        "",
        f"| scenario | what | median ({unit}) | p90 | p99 | ÷ native | module's own ({own_unit}) "
        f"| bytes read |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in run["scenarios"]:
        own = s.get("module_ns")
        lines.append(
            f"| `{s['name']}` | {DESCRIPTIONS.get(s['name'], '')} | {ms(s['median_ns'])} | "
            f"{ms(s['p90_ns'])} | {ms(s['p99_ns'])} | {s['median_ns'] / base:.3f} | "
            f"{'' if own is None else own} | {'' if own is None else s['bytes_read']} |"
        )
    return "\n".join(lines)


def target_table(runs):
    runs = [r for r in runs if r["clock"] == "icount"]
    head = "| figure | target | " + " | ".join(f"{r['arch']}" for r in runs) + " |"
    lines = [
        "#### Targets (medians, icount)",
        "",
        head,
        "| --- | --- |" + " ---: |" * len(runs),
    ]
    met_all = True
    for name, num, den, cmp, target in TARGETS:
        cells = []
        for r in runs:
            v = r["by_name"][num]["median_ns"] / r["by_name"][den]["median_ns"]
            t = target.get(r["arch"]) if isinstance(target, dict) else target
            if t is None:
                cells.append(f"{v:.4f}")
                continue
            met = v <= t if cmp == "<=" else v >= t
            met_all &= met
            cells.append(f"{v:.4f} {'✓' if met else '✗'}")
        sign = "≤" if cmp == "<=" else "≥"
        if target is None:
            shown = "(none)"
        elif isinstance(target, dict):
            shown = ", ".join(f"{sign} {t} ({a})" for a, t in target.items())
        else:
            shown = f"{sign} {target}"
        lines.append(f"| {name} | {shown} | " + " | ".join(cells) + " |")
    return "\n".join(lines), met_all


def chart(runs, path):
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    runs = [r for r in runs if r["clock"] == "icount"]
    names = [s["name"] for s in runs[0]["scenarios"]]
    fig, ax = plt.subplots(figsize=(9, 0.38 * len(names) + 1.5))
    height = 0.8 / len(runs)
    for i, r in enumerate(runs):
        ys = [j + i * height for j in range(len(names))]
        vals = [r["by_name"][n]["median_ns"] / 1e6 for n in names]
        ax.barh(ys, vals, height=height, label=f"{r['arch']} (Linux {r['kernel']})")
    ax.set_yticks([j + height * (len(runs) - 1) / 2 for j in range(len(names))])
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlabel("median fork+execve+wait round trip (million guest instructions, QEMU icount)")
    ax.set_title("binfmt_ape: exec latency by path")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    runs = load(a.files)
    missing = [
        f"{r['arch']}/{r['clock']}: {n}"
        for r in runs
        for n in DESCRIPTIONS
        if r["by_name"].get(n, {}).get("n", 0) == 0 or r["by_name"][n]["median_ns"] <= 0
    ]
    own = [
        f"{r['arch']}/{r['clock']}: {n}"
        for r in runs
        for n in ("ape", "ent.com", "ape-worst-window")
        if "module_ns" not in r["by_name"].get(n, {})
    ]
    tables = [scenario_table(r) for r in runs]
    targets, met = target_table(runs)
    report = "\n\n".join(tables + [targets]) + "\n"
    print(report)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(report)
    chart(runs, os.path.join(a.out, "bench.svg"))
    if missing or own:
        print("bench: scenarios without results: " + ", ".join(missing + own), file=sys.stderr)
        return 1
    if not a.smoke:
        print("bench: all targets met" if met else "bench: some targets are not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
