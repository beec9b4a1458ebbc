#!/usr/bin/env python3
"""Medians and ratios from a bench/compare.sh result file (one JSON object per line).

    python3 bench/summarize.py [--quiet-max CORES] bench/results/<time>.jsonl

Prints Markdown tables: per case, the median over rounds of each broker's figures, the ratio
musqratt/peer, and for latency the ratio to the relay floor; then one table of p50/p99 of
every latency case.

A round of a case is dropped, for every broker, when any of its runs saw the rest of the
machine busier than --quiet-max cores (`other_cpu_cores`, default $QUIET_MAX or 0.05): a
latency tail measured while something else ran says more about that than about the broker,
and keeping the other brokers' runs of that round would compare them with different luck.
Runs without the figure (older files, not Linux) are kept.
"""
import argparse
import json
import os
import statistics
from collections import defaultdict

ALL_BROKERS = ["musqratt", "mosquitto", "rumqttd"]
BROKERS = list(ALL_BROKERS)
TITLES = {
    "lat_q0": "latency, QoS 0, 10k msg/s, 64 B, 1 -> 1",
    "lat_q0_same": "latency, QoS 0, 10k msg/s, 64 B, 1 -> 1, musqratt: same shard",
    "lat_q0_diff": "latency, QoS 0, 10k msg/s, 64 B, 1 -> 1, musqratt: different shards",
    "lat_q1_same": "latency, QoS 1, 10k msg/s, 64 B, 1 -> 1, musqratt: same shard",
    "lat_q1_diff": "latency, QoS 1, 10k msg/s, 64 B, 1 -> 1, musqratt: different shards",
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


def drop_noisy(runs, quiet_max):
    """Removes the (case, round) groups where a run's other_cpu_cores exceeded quiet_max;
    returns the kept runs and, per case, the dropped rounds with the reason."""
    noisy = defaultdict(list)  # (case, round) -> ["broker 0.12", ...]
    for (case, broker), rs in runs.items():
        for r in rs:
            other = r.get("results", {}).get("other_cpu_cores")
            if other is not None and other > quiet_max:
                noisy[(case, r.get("round", 1))].append(f"{broker} {other:.3f}")
    kept = {key: [r for r in rs if (key[0], r.get("round", 1)) not in noisy]
            for key, rs in runs.items()}
    dropped = defaultdict(list)
    for (case, rnd), why in sorted(noisy.items()):
        dropped[case].append((rnd, why))
    return kept, dropped


def print_dropped(dropped, runs, quiet_max):
    if not dropped:
        print(f"No round dropped: the rest of the machine stayed at or below {quiet_max} cores.\n")
        return
    total = sum(len(v) for v in dropped.values())
    print(f"Dropped {total} (case, round) group(s) where the rest of the machine used more than "
          f"{quiet_max} cores (`other_cpu_cores`), for every broker of that round:\n")
    for case, items in dropped.items():
        rounds = {r.get("round", 1) for (c, _), rs in runs.items() if c == case for r in rs}
        detail = "; ".join(f"round {rnd}: {', '.join(why)}" for rnd, why in items)
        print(f"- {case}: {len(items)} of {len(rounds)} round(s) dropped ({detail})")
    print()


def latency_overview(runs, floor_p):
    """p50/p99 of every latency case with musqratt/mosquitto and musqratt/relay ratios."""
    cases = [c for c in dict.fromkeys(c for c, _ in runs) if c.startswith("lat")]
    if not cases:
        return
    print("### latency overview (medians of the kept rounds)\n")
    print("| case | rounds | musqratt p50 | mosquitto p50 | relay p50 | musqratt/mosquitto p50 "
          "| musqratt/relay p50 | musqratt p99 | mosquitto p99 | relay p99 "
          "| musqratt/mosquitto p99 | musqratt/relay p99 |")
    print("|---|---:|" + "---:|" * 10)
    for case in cases:
        m = {b: {k: med([r["results"]["latency_us"].get(k) for r in ok_runs(runs.get((case, b), []))])
                 for k in ["p50", "p99"]} for b in ["musqratt", "mosquitto"]}
        n = len(ok_runs(runs.get((case, "musqratt"), [])))
        row = [str(n)]
        for k in ["p50", "p99"]:
            mq, mo, fl = m["musqratt"][k], m["mosquitto"][k], floor_p[k]
            row += [fmt(mq), fmt(mo), fmt(fl), ratio(mq, mo), ratio(mq, fl)]
        print(f"| {case} | " + " | ".join(row) + " |")
    print()


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


def main(path, quiet_max):
    runs = load(path)
    BROKERS[:] = [b for b in ALL_BROKERS if b == "musqratt" or any(k[1] == b for k in runs)]
    all_runs = runs
    runs, dropped = drop_noisy(runs, quiet_max)
    cases = []
    for case, _ in runs:
        if case not in cases:
            cases.append(case)
    rounds = max((r.get("round", 1) for rs in all_runs.values() for r in rs), default=0)
    print(f"Medians over the kept rounds of {rounds} round(s) from `{path}`.\n")
    print_dropped(dropped, all_runs, quiet_max)

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
                  + " | lost | p50/floor | p99/floor | musqratt p50/this | musqratt p99/this"
                  + " | other cores | broker cores | shards pub/sub |")
            print("|---|" + "---:|" * (len(keys) + 8))
            m = {b: {k: med([r["results"]["latency_us"].get(k) for r in per[b]]) for k in keys}
                 for b in BROKERS}
            for b in BROKERS + ["relay floor"]:
                rs = floor if b == "relay floor" else per[b]
                vals = floor_p if b == "relay floor" else m[b]
                lost = med([r["results"]["lost"] for r in rs])
                row = [fmt(vals[k]) for k in keys] + [fmt(lost)]
                row += [ratio(vals["p50"], floor_p["p50"]), ratio(vals["p99"], floor_p["p99"])]
                row += [ratio(m["musqratt"]["p50"], vals["p50"]),
                        ratio(m["musqratt"]["p99"], vals["p99"])]
                row += [fmt(med([r["results"].get("other_cpu_cores") for r in rs]), 3),
                        fmt(med([r["results"].get("broker_cpu_cores") for r in rs]), 3)]
                shards = sorted({f'{r["params"]["pub_shard"]}/{r["params"]["sub_shard"]}'
                                 for r in rs if "pub_shard" in r.get("params", {})})
                row += [", ".join(shards) if b == "musqratt" and shards else "–"]
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
    latency_overview(runs, floor_p)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--quiet-max", type=float, default=float(os.environ.get("QUIET_MAX", 0.05)),
                        help="drop the rounds of a case where other_cpu_cores exceeded this")
    args = parser.parse_args()
    main(args.path, args.quiet_max)
