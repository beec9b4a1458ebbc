#!/usr/bin/env python3
"""Medians over rounds for bench/runtimes.sh (and A/B) result files: one row per label.

    python3 bench/summarize_runtimes.py bench/results/runtimes-<time>.jsonl [BASELINE_LABEL]

Ratios are against the first label seen (or BASELINE_LABEL): for latency this/baseline (lower
is better), for throughput this/baseline (higher is better); latency also against the relay floor.
"""
import json
import statistics
import sys
from collections import defaultdict


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt(v):
    if v is None:
        return "–"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}"


def main(path, base=None):
    runs = defaultdict(list)
    labels, cases = [], []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        runs[(r["case"], r["broker"])].append(r)
        if r["broker"] != "relay" and r["broker"] not in labels:
            labels.append(r["broker"])
        if not r["case"].startswith("floor") and r["case"] not in cases:
            cases.append(r["case"])
    base = base or labels[0]
    floor = [r["results"]["latency_us"] for r in runs.get(("floor_lat", "relay"), []) if "results" in r]
    fp50 = med([f["p50"] for f in floor])
    fp99 = med([f["p99"] for f in floor])
    print(f"Medians of rounds from `{path}`.\n")
    for case in cases:
        ok = {l: [r["results"] for r in runs.get((case, l), []) if "results" in r] for l in labels}
        print(f"#### {case}\n")
        if case == "conns":
            print(f"| runtime | runs | connected | connect all s | RSS/conn B | RSS/{base} |")
            print("|---|---:|---:|---:|---:|---:|")
            rss = {l: med([x.get("rss_per_conn_bytes") for x in ok[l]]) for l in labels}
            for l in labels:
                r = f"{rss[l] / rss[base]:.2f}×" if rss[l] and rss[base] else "–"
                print(f"| {l} | {len(ok[l])} | {fmt(med([x.get('connected') for x in ok[l]]))} | "
                      f"{med([x.get('connect_all_s') for x in ok[l]]):.3f} | {fmt(rss[l])} | {r} |")
        elif case.startswith("lat"):
            print(f"| runtime | runs | p50 µs | p90 µs | p99 µs | lost | p50/floor | p50/{base} | p99/{base} |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            m = {l: {k: med([x["latency_us"][k] for x in ok[l]]) for k in ["p50", "p90", "p99"]} for l in labels}
            for l in labels:
                lost = med([x["lost"] for x in ok[l]])
                rp = lambda a, b: f"{a / b:.2f}×" if a and b else "–"
                print(f"| {l} | {len(ok[l])} | {fmt(m[l]['p50'])} | {fmt(m[l]['p90'])} | {fmt(m[l]['p99'])} | {fmt(lost)} | "
                      f"{rp(m[l]['p50'], fp50)} | {rp(m[l]['p50'], m[base]['p50'])} | {rp(m[l]['p99'], m[base]['p99'])} |")
            if floor:
                print(f"| relay floor | {len(floor)} | {fmt(fp50)} | {fmt(med([f['p90'] for f in floor]))} | {fmt(fp99)} | | 1.00× | | |")
        else:
            print(f"| runtime | runs | deliveries/s | publish/s | lost (median) | runs with loss | this/{base} |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            m = {l: med([x["deliveries_per_s"] for x in ok[l]]) for l in labels}
            for l in labels:
                lossy = sum(1 for x in ok[l] if x.get("lost", 0) > 0)
                r = f"{m[l] / m[base]:.2f}×" if m[l] and m[base] else "–"
                print(f"| {l} | {len(ok[l])} | {fmt(m[l])} | {fmt(med([x['publish_per_s'] for x in ok[l]]))} | "
                      f"{fmt(med([x.get('lost') for x in ok[l]]))} | {lossy}/{len(ok[l])} | {r} |")
        print()


if __name__ == "__main__":
    main(*sys.argv[1:])
