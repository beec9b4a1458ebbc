#!/usr/bin/env python3
"""Medians and ratios from a bench/compare.sh result file (one JSON object per line).

    python3 bench/summarize.py bench/results/<time>.jsonl

Prints Markdown tables: per case, the median over rounds of each broker's figures, the ratio
musqratt/peer, and for latency the ratio to the relay floor.
"""
import json
import statistics
import sys
from collections import defaultdict

BROKERS = ["musqratt", "mosquitto", "rumqttd"]
TITLES = {
    "lat_q0": "latency, QoS 0, 10k msg/s, 64 B, 1 -> 1",
    "tp_q0_1x1": "throughput, QoS 0, 1 -> 1, wildcard",
    "tp_q1_1x1": "throughput, QoS 1, 1 -> 1, wildcard",
    "tp_q1_4x2": "throughput, QoS 1, 4 -> 2, wildcard",
    "fan_q0_50": "fan-out, QoS 0, 1 -> 50, one topic",
    "conns": "idle connections",
}


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                r = json.loads(line)
                runs[(r["case"], r["broker"])].append(r)
    return runs


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def ratio(a, b):
    if a is None or b in (None, 0):
        return "–"
    return f"{a / b:.2f}×"


def ok_runs(runs):
    return [r for r in runs if "results" in r]


def main(path):
    runs = load(path)
    cases = []
    for case, _ in runs:
        if case not in cases:
            cases.append(case)
    rounds = max((r.get("round", 1) for rs in runs.values() for r in rs), default=0)
    print(f"Medians of {rounds} round(s) from `{path}`.\n")

    floor = ok_runs(runs.get(("floor_lat", "relay"), []))
    floor_p = {
        k: med([r["results"]["latency_us"].get(k) for r in floor])
        for k in ["p50", "p90", "p99", "p99_9", "max"]
    }
    ceiling = ok_runs(runs.get(("floor_tp", "relay"), []))

    for case in cases:
        if case.startswith("floor"):
            continue
        print(f"### {TITLES.get(case, case)}\n")
        per = {b: ok_runs(runs.get((case, b), [])) for b in BROKERS}
        failed = {b: len(runs.get((case, b), [])) - len(per[b]) for b in BROKERS}
        if case.startswith("lat"):
            keys = ["p50", "p90", "p99", "p99_9", "max"]
            print("| broker | " + " | ".join(f"{k} µs" for k in keys)
                  + " | lost | p50/floor | p99/floor | musqratt p50/this | musqratt p99/this |")
            print("|---|" + "---:|" * (len(keys) + 5))
            m = {b: {k: med([r["results"]["latency_us"].get(k) for r in per[b]]) for k in keys}
                 for b in BROKERS}
            for b in BROKERS + ["relay floor"]:
                if b == "relay floor":
                    vals, lost = floor_p, med([r["results"]["lost"] for r in floor])
                else:
                    vals, lost = m[b], med([r["results"]["lost"] for r in per[b]])
                row = [fmt(vals[k]) for k in keys] + [fmt(lost)]
                row += [ratio(vals["p50"], floor_p["p50"]), ratio(vals["p99"], floor_p["p99"])]
                row += [ratio(m["musqratt"]["p50"], vals["p50"]),
                        ratio(m["musqratt"]["p99"], vals["p99"])]
                print(f"| {b} | " + " | ".join(row) + " |")
        elif case == "conns":
            print("| broker | connected | failed runs | connect all s | RSS/conn B | broker threads | musqratt RSS/this | musqratt time/this |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|")
            m = {}
            for b in BROKERS:
                rs = [r["results"] for r in per[b]]
                m[b] = (med([r.get("connected") for r in rs]), med([r.get("connect_all_s") for r in rs]),
                        med([r.get("rss_per_conn_bytes") for r in rs]), med([r.get("threads_after") for r in rs]))
            for b in BROKERS:
                c, t, rss, th = m[b]
                print(f"| {b} | {fmt(c)} | {failed[b]} | {fmt(t, 3)} | {fmt(rss, 0)} | {fmt(th)} | "
                      f"{ratio(m['musqratt'][2], rss)} | {ratio(m['musqratt'][1], t)} |")
        else:
            print("| broker | deliveries/s | publish/s | lost (median) | runs with loss | p50 µs under load | musqratt/this |")
            print("|---|---:|---:|---:|---:|---:|---:|")
            m = {b: med([r["results"]["deliveries_per_s"] for r in per[b]]) for b in BROKERS}
            for b in BROKERS:
                rs = [r["results"] for r in per[b]]
                lossy = sum(1 for r in rs if r.get("lost", 0) > 0)
                print(f"| {b} | {fmt(m[b])} | {fmt(med([r['publish_per_s'] for r in rs]))} | "
                      f"{fmt(med([r.get('lost') for r in rs]))} | {lossy}/{len(rs)} | "
                      f"{fmt(med([r['latency_us'].get('p50') for r in rs]))} | {ratio(m['musqratt'], m[b])} |")
            if case == "tp_q0_1x1" and ceiling:
                c = med([r["results"]["deliveries_per_s"] for r in ceiling])
                print(f"| generator ceiling (relay) | {fmt(c)} | | | | | |")
        if any(failed.values()):
            print(f"\nFailed runs: {', '.join(f'{b} {n}' for b, n in failed.items() if n)}")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
