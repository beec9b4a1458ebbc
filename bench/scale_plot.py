#!/usr/bin/env python3
"""Tables, growth fits and plots from a bench/scale.sh result file (one JSON object per line).

    python3 bench/scale_plot.py bench/results/scale-<time>.jsonl [--plots DIR]

Prints Markdown: per curve and metric, the median over rounds of each broker at each size,
then per curve, metric and broker the fitted growth. Writes one PNG per curve (log-log axes,
a panel per metric, a line per broker) into DIR (default: beside the results file, in
scale-<time>/), when matplotlib is installed (`pip install matplotlib`); the tables and fits
need only Python 3.

Growth: a least-squares line through (log size, log value) gives the exponent b of
value ~ size^b: b ~ 0 constant, ~ 1 linear, ~ 2 quadratic. A value that grows like log(size)
also has a small b that falls as the size grows, and a per-item figure with a fixed cost
spread over n (RSS per connection with the broker's own start-up pages) has a negative b, so
four models are fitted as well, each by least squares on the relative error (so that every
size weighs the same): constant (a), a + c/n, a + c ln n and a + c n; the one with the
smallest error is named, the constant when its error is within 1.25x of the best one's (plus
1 point) or under 5 %. With fewer than three sizes no model is named.
"""
import argparse
import json
import math
import os
import statistics
from collections import defaultdict

BROKERS = ["musqratt-1", "musqratt-2", "mosquitto", "rumqttd"]
COLORS = {"musqratt-1": "#66c2a5", "musqratt-2": "#1b9e77", "mosquitto": "#d95f02",
          "rumqttd": "#7570b3"}

# curve -> (title, size label, [(metric path, label)])
CURVES = {
    "conns": ("Idle connections", "connections", [
        ("rss_per_conn_bytes", "broker RSS per connection (B)"),
        ("connect_all_s", "time to connect all (s)"),
        ("connect_us.p99", "connect time p99 (µs)")]),
    "subs_exact": ("Subscriptions, exact filters", "filters", [
        ("subscribes_per_s", "subscriptions acknowledged per s"),
        ("rss_per_sub_bytes", "broker RSS per subscription (B)"),
        ("latency_us.p50", "publish latency p50 (µs)"),
        ("latency_us.p99", "publish latency p99 (µs)")]),
    "subs_wildcard": ("Subscriptions, wildcard filters", "filters", [
        ("subscribes_per_s", "subscriptions acknowledged per s"),
        ("rss_per_sub_bytes", "broker RSS per subscription (B)"),
        ("latency_us.p50", "publish latency p50 (µs)"),
        ("latency_us.p99", "publish latency p99 (µs)")]),
    "fanout": ("Fan-out, unpaced, QoS 0", "subscribers", [
        ("deliveries_per_s", "deliveries per s"),
        ("lost", "messages lost"),
        ("last_subscriber_us.p50", "time to the last subscriber p50 (µs)")]),
    "fanout_paced": ("Fan-out, paced, QoS 0", "subscribers", [
        ("deliveries_per_s", "deliveries per s"),
        ("latency_us.p50", "latency p50 (µs)"),
        ("last_subscriber_us.p50", "time to the last subscriber p50 (µs)"),
        ("last_subscriber_us.p99", "time to the last subscriber p99 (µs)")]),
    "retained": ("Retained messages", "retained messages", [
        ("rss_per_retained_bytes", "broker RSS per retained message (B)"),
        ("receive_all_s", "time for a # subscriber to get all (s)"),
        ("publish_per_s", "retained publications acknowledged per s"),
        ("lost", "messages not received")]),
    "storm_clean": ("Connection storm, clean sessions", "clients at once", [
        ("connect_all_s", "time to all CONNACKs (s)"),
        ("connect_us.p99", "connect time p99 (µs)"),
        ("failed", "connections failed")]),
    "storm_persistent": ("Connection storm, persistent sessions", "clients at once", [
        ("connect_all_s", "time to all CONNACKs (s)"),
        ("connect_us.p99", "connect time p99 (µs)"),
        ("failed", "connections failed")]),
}


def load(path):
    """(curve, broker, size) -> list of result dicts; the meta line; failures."""
    runs, meta, failed = defaultdict(list), {}, defaultdict(list)
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("meta"):
                meta = r
            elif "results" in r:
                runs[(r["curve"], r["broker"], r["size"])].append(r["results"])
            elif "curve" in r:
                failed[(r["curve"], r["broker"], r["size"])].append(r.get("error", "failed"))
    return runs, meta, failed


def value(results, path):
    v = results
    for key in path.split("."):
        if not isinstance(v, dict) or key not in v:
            return None
        v = v[key]
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def line_fit(xs, ys):
    """Least squares y = a + b x: (a, b)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    return my - b * mx, b


def weighted_fit(basis, sizes, ys):
    """Least squares of y = a + c f(n) on the relative error (each residual over y): the
    weighted normal equations with weights 1/y^2; returns the RMS relative error."""
    w = [1 / (y * y) for y in ys]
    fs = [basis(n) for n in sizes]
    s0, s1 = sum(w), sum(wi * f for wi, f in zip(w, fs))
    s2 = sum(wi * f * f for wi, f in zip(w, fs))
    t0, t1 = sum(wi * y for wi, y in zip(w, ys)), sum(wi * f * y for wi, f, y in zip(w, fs, ys))
    det = s0 * s2 - s1 * s1
    if abs(det) < 1e-300:  # the constant model (f = 0)
        a, c = t0 / s0, 0.0
    else:
        a, c = (t0 * s2 - t1 * s1) / det, (s0 * t1 - s1 * t0) / det
    return math.sqrt(sum(((a + c * f) - y) ** 2 / (y * y) for f, y in zip(fs, ys)) / len(ys))


def growth(sizes, ys):
    """(exponent, best model, {model: relative RMS error}) for positive values; None when fewer
    than two sizes have one."""
    pts = [(n, y) for n, y in zip(sizes, ys) if y is not None and y > 0 and n > 0]
    if len(pts) < 2:
        return None
    ns, vs = [p[0] for p in pts], [p[1] for p in pts]
    _, b = line_fit([math.log(n) for n in ns], [math.log(v) for v in vs])
    errors = {
        "constant": weighted_fit(lambda n: 0.0, ns, vs),
        "1/n": weighted_fit(lambda n: 1.0 / n, ns, vs),
        "log": weighted_fit(math.log, ns, vs),
        "linear": weighted_fit(float, ns, vs),
    }
    best = min(errors, key=errors.get) if len(pts) >= 3 else "–"
    # Every model but the constant has two parameters, so the constant always fits worst:
    # it is named when it is nearly as good as the best one, or within 5 % anyway (a
    # per-item cost that does not move with the size beyond a run's noise).
    if best != "–" and errors["constant"] <= max(1.25 * errors[best] + 0.01, 0.05):
        best = "constant"
    return b, best, errors


def fmt(v):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def report(runs, meta, failed, path):
    print(f"Scale curves from `{path}` (medians over rounds).")
    if meta:
        print(f"\nCPUs {meta.get('cpus')}, commit {meta.get('commit')}, "
              f"Mosquitto `{meta.get('mosquitto')}`, rumqttd `{meta.get('rumqttd')}`, "
              f"sizes `{meta.get('sizes')}`, build `{meta.get('profile')}`.")
        if meta.get("profile") not in (None, "release"):
            print("\n**Not a release build: a smoke run of the script, not a measurement.**")
    fits = []
    for curve, (title, size_label, metrics) in CURVES.items():
        brokers = [b for b in BROKERS if any(k[0] == curve and k[1] == b for k in runs)]
        brokers += sorted({k[1] for k in runs if k[0] == curve} - set(brokers))
        if not brokers:
            continue
        sizes = sorted({k[2] for k in list(runs) + list(failed) if k[0] == curve})
        print(f"\n### {title} (`{curve}`)\n")
        for metric, label in metrics:
            print(f"{label}:\n")
            print(f"| {size_label} | " + " | ".join(brokers) + " |")
            print("|---:|" + "---:|" * len(brokers))
            for n in sizes:
                cells = []
                for b in brokers:
                    m = median([value(r, metric) for r in runs.get((curve, b, n), [])])
                    cells.append("failed" if m is None and failed.get((curve, b, n)) else fmt(m))
                print(f"| {n:,} | " + " | ".join(cells) + " |")
            print()
            for b in brokers:
                ys = [median([value(r, metric) for r in runs.get((curve, b, n), [])]) for n in sizes]
                g = growth(sizes, ys)
                if g:
                    fits.append((curve, metric, b, *g))
    if fits:
        print("\n### Growth fits\n")
        print("Exponent b of value ~ size^b (least squares in log-log space; ~0 constant, "
              "~1 linear), and the model with the smallest relative error of constant, "
              "a + c/n (a fixed cost spread over n), a + c ln n, a + c n (the constant when "
              "within 1.25x of the best or 5 %).\n")
        print("| curve | metric | broker | b | model | error const | error 1/n | error log | error linear |")
        print("|---|---|---|---:|---|---:|---:|---:|---:|")
        for curve, metric, b, slope, best, errors in fits:
            print(f"| {curve} | {metric} | {b} | {slope:.2f} | {best} | "
                  + " | ".join(f"{errors[k]:.1%}" for k in ["constant", "1/n", "log", "linear"])
                  + " |")
    bad = sorted(failed.items())
    if bad:
        print("\nFailed runs:\n")
        for (curve, broker, size), errors in bad:
            print(f"- {curve} {size} {broker}: {errors[0]}")


def plots(runs, out):
    try:
        import matplotlib
    except ImportError:
        print("\n(matplotlib not installed: no plots; `pip install matplotlib`)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    written = []
    for curve, (title, size_label, metrics) in CURVES.items():
        keys = [k for k in runs if k[0] == curve]
        if not keys:
            continue
        brokers = [b for b in BROKERS if any(k[1] == b for k in keys)]
        brokers += sorted({k[1] for k in keys} - set(brokers))
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
        for ax, (metric, label) in zip(axes[0], metrics):
            for b in brokers:
                pts = sorted((n, median([value(r, metric) for r in runs[(c, bb, n)]]))
                             for (c, bb, n) in keys if bb == b)
                pts = [(n, v) for n, v in pts if v is not None and v > 0]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=b,
                            color=COLORS.get(b))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(size_label)
            ax.set_title(label, fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        name = os.path.join(out, f"scale-{curve}.png")
        fig.savefig(name, dpi=110)
        plt.close(fig)
        written.append(name)
    print("\nPlots: " + ", ".join(f"`{w}`" for w in written))


def self_test():
    """The fits on curves of known growth (`--self-test`; run by hand, and worth a CI line)."""
    sizes = [1_000, 10_000, 30_000, 100_000]
    cases = {
        "constant": [1200, 1210, 1190, 1205],
        "log": [10 + 3 * math.log(n) for n in sizes],
        "linear": [5 + 0.002 * n for n in sizes],
        "1/n": [700 + 6_000_000 / n for n in sizes],
    }
    for want, ys in cases.items():
        b, best, _ = growth(sizes, ys)
        assert best == want, (want, best, b)
    assert abs(growth(sizes, [2.0 * n for n in sizes])[0] - 1.0) < 1e-9
    assert abs(growth(sizes, [7.0] * 4)[0]) < 1e-9
    assert growth([10], [1.0]) is None
    assert value({"a": {"b": 3}}, "a.b") == 3 and value({"a": True}, "a") is None
    print("self-test passed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?")
    parser.add_argument("--plots", help="directory for the PNGs (default: beside the results)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--self-test", action="store_true", help="check the fits and exit")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.path:
        parser.error("the results file is needed")
    runs, meta, failed = load(args.path)
    report(runs, meta, failed, args.path)
    if not args.no_plots:
        plots(runs, args.plots or os.path.splitext(args.path)[0])


if __name__ == "__main__":
    main()
