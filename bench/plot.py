#!/usr/bin/env python3
"""Plots from a bench/compare.sh result file: latency CDF and throughput bars (SVG).

    pip install matplotlib
    python3 bench/plot.py bench/results/<time>.jsonl docs/img

Writes latency-cdf.svg (QoS 0, 10k msg/s: the round with the median p99 of each broker, and
the relay floor) and throughput.svg (median deliveries/s of each case, min-max over rounds as
error bars).
"""
import json
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "musqratt-bench"  # stable SVG ids between runs

BROKERS = ["musqratt", "mosquitto", "rumqttd"]
COLORS = {"musqratt": "#1b9e77", "mosquitto": "#d95f02", "rumqttd": "#7570b3", "relay": "#666666"}
CASES = [
    ("tp_q0_1x1", "QoS 0\n1→1"),
    ("tp_q1_1x1", "QoS 1\n1→1"),
    ("tp_q1_4x2", "QoS 1\n4→2"),
    ("fan_q0_50", "QoS 0 fan-out\n1→50"),
]


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if "results" in r:
                    runs[(r["case"], r["broker"])].append(r)
    return runs


def median_run(rs, key):
    rs = sorted(rs, key=key)
    return rs[len(rs) // 2] if rs else None


def latency_cdf(runs, out):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for broker in BROKERS + ["relay"]:
        # lat_q0_diff (publisher and subscriber on different musqratt shards) is what older
        # files called lat_q0.
        case = "floor_lat" if broker == "relay" else (
            "lat_q0_diff" if ("lat_q0_diff", broker) in runs else "lat_q0")
        r = median_run(runs.get((case, broker), []), lambda r: r["results"]["latency_us"]["p99"])
        if r is None:
            continue
        cdf = r["results"]["latency_us"]["cdf"]
        # x: latency; y: 1 - quantile on a log axis, so the tail is readable.
        xs = [p[1] for p in cdf if p[0] < 1.0]
        ys = [1.0 - p[0] for p in cdf if p[0] < 1.0]
        label = "relay floor" if broker == "relay" else broker
        ax.plot(xs, ys, label=label, color=COLORS[broker], linestyle="--" if broker == "relay" else "-")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("end-to-end latency (µs)")
    ax.set_ylabel("fraction of messages slower")
    ax.set_yticks([1, 0.5, 0.1, 0.01, 0.001, 0.0001])
    ax.set_yticklabels(["all", "p50", "p90", "p99", "p99.9", "p99.99"])
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title("QoS 0, 10k msg/s, 64 B, 1 → 1 (median-p99 round)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "latency-cdf.svg"))


def throughput_bars(runs, out):
    fig, ax = plt.subplots(figsize=(7, 4.2))
    width = 0.27
    for i, broker in enumerate(BROKERS):
        meds, lo, hi = [], [], []
        for case, _ in CASES:
            vals = [r["results"]["deliveries_per_s"] for r in runs.get((case, broker), [])]
            m = statistics.median(vals) if vals else 0
            meds.append(m / 1000)
            lo.append((m - min(vals)) / 1000 if vals else 0)
            hi.append((max(vals) - m) / 1000 if vals else 0)
        xs = [j + (i - 1) * width for j in range(len(CASES))]
        ax.bar(xs, meds, width, yerr=[lo, hi], label=broker, color=COLORS[broker], capsize=3)
    ax.set_xticks(range(len(CASES)))
    ax.set_xticklabels([c[1] for c in CASES])
    ax.set_ylabel("deliveries per second (thousands)")
    ax.set_title("Throughput, 64 B payload (median of rounds, min–max bars)")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "throughput.svg"))


def main(path, out):
    os.makedirs(out, exist_ok=True)
    runs = load(path)
    latency_cdf(runs, out)
    throughput_bars(runs, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "docs/img")
