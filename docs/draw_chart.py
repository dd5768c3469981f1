#!/usr/bin/env python3
"""Draws docs/performance.svg from the benchmarks' own output (standard library only).

    cargo bench --bench validate                       # criterion writes target/criterion
    STACK_BENCH_JSON=docs/stack.json cargo bench --bench stack
    python3 docs/draw_chart.py                         # reads both, writes docs/validate.json
                                                       # and docs/performance.svg

Without target/criterion (a fresh clone) it redraws from the committed docs/validate.json.
"""

import argparse
import json
import math
import os
from xml.sax.saxutils import escape

ALGORITHMS = ["hs256", "rs256", "es256", "eddsa"]
CASES = ["jsonwebtoken", "no_auth", "layer", "layer_cached", "reject_bad_signature", "reject_missing"]


def read_criterion(root):
    """Mean time in nanoseconds of every validate/<alg>/<case> criterion measured."""
    figures = {}
    for alg in ALGORITHMS:
        for case in CASES:
            path = os.path.join(root, f"validate_{alg}", case, "new", "estimates.json")
            if os.path.exists(path):
                with open(path) as f:
                    figures.setdefault(alg, {})[case] = json.load(f)["mean"]["point_estimate"]
    return figures


def bar_panel(x0, y0, width, title, groups, unit, log=False):
    """Horizontal grouped bars: groups = [(label, [(series, value, colour)])]."""
    out = [f'<text x="{x0}" y="{y0}" class="title">{escape(title)}</text>']
    values = [v for _, bars in groups for _, v, _ in bars if v > 0]
    top = max(values) if values else 1
    low = min(values) if values else 1
    label_w, bar_h, gap = 150, 14, 10
    plot_w = width - label_w - 210  # room for the value labels

    def scale(v):
        if v <= 0:
            return 0
        if log:
            lo = math.log10(low) - 0.3
            return plot_w * (math.log10(v) - lo) / (math.log10(top) - lo)
        return plot_w * v / top

    y = y0 + 16
    for label, bars in groups:
        out.append(f'<text x="{x0}" y="{y + bar_h}" class="label">{escape(label)}</text>')
        for series, value, colour in bars:
            w = max(scale(value), 1)
            out.append(
                f'<rect x="{x0 + label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{colour}"/>'
            )
            text = f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
            out.append(
                f'<text x="{x0 + label_w + w + 4:.1f}" y="{y + bar_h - 3}" class="value">{escape(series)}: {text}</text>'
            )
            y += bar_h
        y += gap
    return out, y


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--criterion", default=os.path.join(here, "..", "target", "criterion"))
    parser.add_argument("--validate", default=os.path.join(here, "validate.json"))
    parser.add_argument("--stack", default=os.path.join(here, "stack.json"))
    parser.add_argument("--out", default=os.path.join(here, "performance.svg"))
    args = parser.parse_args()

    validate = read_criterion(args.criterion)
    if validate:
        with open(args.validate, "w") as f:
            json.dump(validate, f, indent=2, sort_keys=True)
    else:
        with open(args.validate) as f:
            validate = json.load(f)
    with open(args.stack) as f:
        stack = json.load(f)

    colours = {"jsonwebtoken": "#9aa5b1", "layer": "#3b82f6", "layer_cached": "#10b981"}
    groups = []
    for alg in ALGORITHMS:
        f = validate.get(alg)
        if not f:
            continue
        floor = f.get("no_auth", 0)
        bars = [("jsonwebtoken::decode", f["jsonwebtoken"] / 1000, colours["jsonwebtoken"])]
        bars.append(("layer - no_auth", max(f["layer"] - floor, 0) / 1000, colours["layer"]))
        if "layer_cached" in f:
            bars.append(("cached - no_auth", max(f["layer_cached"] - floor, 0) / 1000, colours["layer_cached"]))
        groups.append((alg.upper() if alg != "eddsa" else "EdDSA", bars))
    panel1, y1 = bar_panel(20, 30, 900, "Validation cost per request (criterion means, log scale)", groups, "µs", log=True)

    rows = {(r["scenario"], r["connections"]): r for r in stack["rows"]}
    stack_colours = {"public": "#9aa5b1", "protected": "#3b82f6", "protected-cached": "#10b981"}
    groups = []
    for conns in [1, 16, 64]:
        bars = [
            (scenario, rows[(scenario, conns)]["rps"], colour)
            for scenario, colour in stack_colours.items()
            if (scenario, conns) in rows
        ]
        groups.append((f"{conns} connection{'s' if conns > 1 else ''}", bars))
    panel2, y2 = bar_panel(20, y1 + 30, 900, "Example server, requests per second (cargo bench --bench stack)", groups, "req/s")

    calm = rows.get(("protected-calm", 4))
    storm = rows.get(("protected-login-storm", 4))
    notes = []
    y = y2 + 10
    if calm and storm:
        notes.append(
            f"p99 of /secure-todos (4 connections): {calm['p99_ms']:.3f} ms calm, "
            f"{storm['p99_ms']:.3f} ms during a 16-connection login storm; "
            f"server peak RSS in the storm {stack['peak_rss_mib_during_storm']:.1f} MiB"
        )
    for note in notes:
        panel2.append(f'<text x="20" y="{y}" class="label">{escape(note)}</text>')
        y += 18
    height = y + 10
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="940" height="{height}" viewBox="0 0 940 {height}">',
        "<style>text{font-family:sans-serif;fill:#1f2933}.title{font-size:15px;font-weight:bold}"
        ".label{font-size:12px}.value{font-size:11px}</style>",
        f'<rect width="940" height="{height}" fill="white"/>',
        *panel1,
        *panel2,
        "</svg>",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
