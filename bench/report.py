"""Turn a pytest-benchmark run into the published results, and the READMEs' tables into what
those results say: generated from measurements, never typed.

    python -m bench.report RUN.json [--results bench/results] [--readme bench/README.md --readme README.md]

1. The run (`pytest bench --benchmark-json RUN.json`) is split by benchmark (the test module:
   micro, stream, scale, memory, attention, watch) into `<results>/<name>-<device>.json`, holding the
   date, commit, machine, versions and size of the run, and per test its statistics (p50, p95
   and p99 added from the raw rounds) and measurements; and `<name>-<device>.png`.
2. Every results file in the folder becomes a table in each README given, between
   `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` (NAME: a benchmark, or `performance`: the
   targets and the memory plot). A benchmark with no results says it is not yet measured.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from bench.measure import percentiles

BENCHMARKS = ("micro", "stream", "scale", "memory", "attention", "watch", "cluster")
RUN_KEYS = ("machine", "versions", "device", "size")  # stored once per results file, not per test
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
TOP_README = ROOT / "README.md"
MAX_RAW_ROUNDS = 2000  # rounds kept in a results file (micro benchmarks run tens of thousands)
NOT_MEASURED = "not yet measured: run `make bench`"


# ------------------------------------------------------------------------------ run -> results


def benchmark_of(entry: dict) -> str:
    """`bench/test_scale.py::test_x[...]` -> `scale`."""
    stem = Path(entry["fullname"].split("::")[0]).stem
    return stem.removeprefix("test_")


def test_record(entry: dict) -> dict:
    stats = entry["stats"]
    data = stats.get("data") or []
    kept = {key: stats[key] for key in ("min", "max", "mean", "median", "stddev", "rounds", "iterations", "ops")
            if key in stats}
    kept.update(percentiles(data))
    if 0 < len(data) <= MAX_RAW_ROUNDS:
        kept["data"] = data
    return {"test": entry["name"], "params": entry.get("params") or {},
            "measured": {k: v for k, v in entry["extra_info"].items() if k not in RUN_KEYS},
            "stats_s": kept}


def results_of_run(run: dict) -> dict[str, dict]:
    """One results document per benchmark in the run."""
    grouped: dict[str, list[dict]] = {}
    for entry in run["benchmarks"]:
        grouped.setdefault(benchmark_of(entry), []).append(entry)
    commit = run.get("commit_info") or {}
    documents = {}
    for name, entries in grouped.items():
        info = entries[0]["extra_info"]
        documents[name] = {
            "benchmark": name, "device": info["device"], "size": info["size"], "date": run.get("datetime"),
            "commit": {key: commit.get(key) for key in ("id", "branch", "dirty", "time")},
            "machine": info["machine"], "versions": info["versions"],
            "tests": [test_record(entry) for entry in entries],
        }
    return documents


def write_results(run: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in results_of_run(run).items():
        path = folder / f"{name}-{document['device']}.json"
        path.write_text(json.dumps(document, indent=1) + "\n")
        plot(document, path.with_suffix(".png"))
        written += [path, path.with_suffix(".png")]
    return written


def load_results(folder: Path) -> dict[str, list[dict]]:
    """Benchmark name -> its results documents (one per device), CPU first."""
    found: dict[str, list[dict]] = {name: [] for name in BENCHMARKS}
    for path in sorted(folder.glob("*.json")):
        document = json.loads(path.read_text())
        if document.get("benchmark") in found and "tests" in document:
            document["png"] = path.with_suffix(".png")
            found[document["benchmark"]].append(document)
    for documents in found.values():
        documents.sort(key=lambda d: (d["device"] != "cpu", d["device"]))
    return found


def tests_named(document: dict, name: str) -> list[dict]:
    return [t for t in document["tests"] if t["test"].split("[")[0] == name]


def one_test(document: dict, test: str) -> dict | None:
    return next((t for t in document["tests"] if t["test"] == test), None)


# ------------------------------------------------------------------------------ formatting


def number(value: float) -> str:
    """Three significant digits, or whole numbers with thousands separators from 100 up."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{number(seconds * 1e3)} ms"


def ms_triplet(p: dict, scale: float = 1.0) -> str:
    """p50 / p95 / p99 of values in seconds (scale=1) or milliseconds (scale=1e-3)."""
    if not p:
        return "–"
    return " / ".join(number(p[k] * scale * 1e3) for k in ("p50", "p95", "p99")) + " ms"


def size(nbytes: float | None) -> str:
    if nbytes is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}" if nbytes / scale < 1000 else f"{nbytes / scale:,.0f} {unit}"
    return f"{nbytes:.0f} B"


def provenance(document: dict) -> str:
    m, commit = document["machine"], document["commit"]
    where = m.get("gpu") or m["cpu"]
    threads = f", {m['torch_threads']} torch threads, {m['cores_usable']} cores usable" if document["device"] == "cpu" \
        else ""
    dirty = " (uncommitted changes)" if commit.get("dirty") else ""
    return (f"`{document['device']}`: {where}{threads}; load average {m['load_average_1m']} at the start; "
            f"{(document.get('date') or '')[:10]}, commit `{(commit.get('id') or '?')[:10]}`{dirty}, "
            f"`{document['size']}` sizes, torch {document['versions'].get('torch', '?')}")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


# ------------------------------------------------------------------------------ tables

MICRO_LABELS = {
    "test_chunker": "chunker: decoded 320×240 25 fps video + 48 kHz audio → snippets",
    "test_resample": "resample 48 → 16 kHz, 1 s of audio",
    "test_log_mel": "log-mel of one snippet's audio",
    "test_model_step": "model step, batch {batch}",
    "test_state_save": "state save (msgpack)",
    "test_state_load": "state load and validation (msgpack)",
    "test_world_render": "world render, one {snippets}-snippet clip",
}


def micro_throughput(test: dict) -> str:
    measured, median = test["measured"], test["stats_s"]["median"]
    parts = []
    if "batch" in measured:
        parts.append(f"{number(measured['batch'] / median)} snippets/s")
    if "snippets" in measured:
        parts.append(f"{number(1 / median)} clips/s ({number(measured['snippets'] / median)} snippets/s)")
    elif "media_s" in measured:
        parts.append(f"{number(measured['media_s'] / median)}× real time")
    if "bytes" in measured:
        parts.append(f"{number(measured['bytes'] / median / 1e6)} MB/s of {size(measured['bytes'])}")
    return ", ".join(parts)


def micro_table(document: dict) -> str:
    rows = []
    for test in document["tests"]:
        label = MICRO_LABELS.get(test["test"].split("[")[0], test["test"]).format(**test["measured"])
        stats = test["stats_s"]
        rows.append([label, ms(stats["median"]), ms(stats.get("p95")), micro_throughput(test)])
    return table(["what", "median", "p95", "throughput"], rows)


def stream_rows(document: dict) -> dict[str, dict]:
    """Per combiner: step percentiles (s), RTF, first token percentiles (ms), whole answer (s), tokens."""
    rows: dict[str, dict] = {}
    for test in document["tests"]:
        combiner = test["measured"].get("combiner", test["params"].get("combiner_model", "?"))
        row = rows.setdefault(combiner, {})
        name, stats = test["test"].split("[")[0], test["stats_s"]
        if name == "test_step_latency":
            row["step"] = stats
        elif name == "test_real_time_factor":
            row["rtf"] = stats["mean"] / test["measured"]["media_s"]
            row["media_s"] = test["measured"]["media_s"]
        elif name == "test_answer_latency":
            row["first_token_ms"] = percentiles(test["measured"]["first_token_ms"])
            row["answer"] = stats
            tokens = test["measured"]["tokens"]
            row["tokens"] = sum(tokens) / len(tokens) if tokens else 0
    return rows


def stream_table(document: dict) -> str:
    rows = []
    for combiner, row in stream_rows(document).items():
        answer = row.get("answer")
        rows.append([
            combiner + (" (bundled)" if combiner == "ttm" else " (random weights)"),
            ms_triplet(row.get("step", {})),
            f"{row['rtf']:.3f} ({number(1 / row['rtf'])}× real time, {row['media_s']:.0f} s file)" if "rtf" in row else "–",
            ms_triplet(row.get("first_token_ms", {}), scale=1e-3),
            f"{ms_triplet({k: answer[k] for k in ('p50', 'p95', 'p99')})}, {row['tokens']:.0f} tokens"
            if answer and "p50" in answer else "–",
        ])
    return table(["combiner", "step, p50 / p95 / p99", "end-to-end RTF", "first answer token, p50 / p95 / p99",
                  "whole answer, p50 / p95 / p99"], rows)


def scale_rows(document: dict) -> list[dict]:
    return sorted((t["measured"] for t in tests_named(document, "test_concurrent_streams")),
                  key=lambda m: m["streams"])


def most_real_time_streams(document: dict) -> int:
    held = [row["streams"] for row in scale_rows(document) if row["real_time"]]
    return max(held, default=0)


def scale_table(document: dict) -> str:
    rows = scale_rows(document)
    body = [[str(r["streams"]), ms_triplet(r["latency_ms"], scale=1e-3), f"{r['worst_stream_rtf']:.3f}",
             number(r["snippets_per_s"]), f"{r['mean_batch']:.1f}", f"{r['busy_fraction']:.0%}",
             ms_triplet(r["first_token_ms"], scale=1e-3), "yes" if r["real_time"] else "**no**"] for r in rows]
    snippet_ms = rows[0]["snippet_s"] * 1e3 if rows else 0
    note = (f"\n\nLargest count that stays real time (p95 snippet latency under the {snippet_ms:.0f} ms snippet): "
            f"**{most_real_time_streams(document)}** streams. Streams: {rows[0]['source']}, "
            f"{rows[0]['media_s_each']:.0f} s each." if rows else "")
    return table(["streams", "snippet latency, p50 / p95 / p99", "worst-stream RTF", "snippets/s", "mean batch",
                  "engine busy", "first answer token, p50 / p95 / p99", "real time"], body) + note


def _by_minutes(arm: dict) -> dict[float, dict]:
    return {row["minutes"]: row for row in arm["rows"]}


def rss_change(arms: dict) -> tuple[float, float, float] | None:
    """Engine RSS change from its first to its last length: (from minutes, to minutes, relative)."""
    rows = arms["engine"]["rows"]
    if len(rows) < 2:
        return None
    first = next((r for r in rows if r["minutes"] >= 1), rows[0])
    last = rows[-1]
    return first["minutes"], last["minutes"], (last["rss_bytes"] - first["rss_bytes"]) / first["rss_bytes"]


def memory_table(document: dict) -> str:
    arms = document["tests"][0]["measured"]["arms"]
    snippet_ms = arms["engine"]["snippet_s"] * 1e3
    engine, full, rerun = (_by_minutes(arms[a]) for a in ("engine", "full_history", "rerun"))

    def cell(row: dict | None, work: str) -> str:
        if row is None:
            return "–"
        timed = row.get(work)
        if isinstance(timed, dict):  # the engine's step percentiles
            timed = timed["p95"]
        when = f", {number(timed)} ms" if timed is not None else ""
        late = " **not real time**" if row.get("real_time") is False else ""
        return f"{size(row['state_bytes'])} / {size(row['rss_bytes'])}{when}{late}"

    minutes = sorted(set(engine) | set(full) | set(rerun))
    body = [[f"{m:g} min", cell(engine.get(m), "step_ms"), cell(full.get(m), "work_ms"), cell(rerun.get(m), "work_ms")]
            for m in minutes]
    notes = []
    change = rss_change(arms)
    if change:
        notes.append(f"Engine RSS from {change[0]:g} to {change[1]:g} min of stream: {change[2]:+.2%}.")
    for arm, label in (("full_history", "Full history"), ("rerun", "Re-run")):
        stopped = arms[arm].get("stopped")
        late = next((r["minutes"] for r in arms[arm]["rows"] if r.get("real_time") is False), None)
        parts = [f"not real time from {late:g} min" if late is not None else "real time at every length probed"]
        if stopped and stopped["reason"] == "out of memory":
            parts.append(f"out of memory at {stopped['minutes']:g} min ({stopped['detail']})")
        notes.append(f"{label}: {'; '.join(parts)}.")
    return table(["stream", "engine: state / RSS, step p95", "full history: state / RSS, step",
                  "re-run: media kept / RSS, answer"], body) + "\n\n" + " ".join(notes) + \
        f" Real time: the work per {snippet_ms:.0f} ms snippet fits in it."


def attention_table(document: dict) -> str:
    report = document["tests"][0]["measured"]["attention"]
    rows = [r for r in report["results"] if "error" not in r and "method" in r]
    training = [r for r in rows if r["case"] == "training"]
    methods = sorted({r["method"] for r in training})
    longest = max((r["n"] for r in training), default=0)
    shapes = sorted({(r["chunk"], r["window"] or 0, r["head_dim"]) for r in training if r["n"] == longest})
    train_rows = []
    for chunk, window, head_dim in shapes:
        cells = {r["method"]: f"{r['fwd_tflops']:.1f} / {r['bwd_tflops']:.1f}" for r in training
                 if (r["n"], r["chunk"], r["window"] or 0, r["head_dim"]) == (longest, chunk, window, head_dim)}
        train_rows.append([str(chunk), str(window or "none"), str(head_dim)] + [cells.get(m, "–") for m in methods])
    streaming = [r for r in rows if r["case"] == "streaming"]
    stream_methods = sorted({r["method"] for r in streaming})
    keys = sorted({(r["cache_chunks"], r["head_dim"]) for r in streaming})
    stream_rows = []
    for cache, head_dim in keys:
        cells = {r["method"]: f"{r['latency_ms'] * 1e3:.0f} µs, {r['gbps']:.0f} GB/s" for r in streaming
                 if (r["cache_chunks"], r["head_dim"]) == (cache, head_dim)}
        stream_rows.append([str(cache), str(head_dim)] + [cells.get(m, "–") for m in stream_methods])
    return (f"Training, N = {longest}, forward / backward TFLOP/s ({report['config']['dtype']}; {report['flops']}):\n\n" + table(["chunk", "window", "head dim"] + methods, train_rows) +
            "\n\nStreaming, one chunk of queries against the cache:\n\n" +
            table(["cache chunks", "head dim"] + stream_methods, stream_rows))


def watch_rows(document: dict) -> list[dict]:
    return sorted((t["measured"] for t in tests_named(document, "test_watch_scoring")), key=lambda m: m["watches"])


def watch_table(document: dict) -> str:
    rows = watch_rows(document)
    body = [[f"{r['watches']:,} over {r['sessions']}", f"{r['step_ms']:.1f} ms", f"{r['added_without_watches_ms']:.2f} ms",
             f"{r['added_ms']:.2f} ms ({r['added_ratio']:.1%})", f"{r['watches_ms']:.2f} ms ({r['watches_ratio']:.1%})"]
            for r in rows]
    note = (f"\n\nAlignment head: {rows[0]['head']}, {rows[0]['align_dim']} dimensions; the moment index keeps "
            f"{rows[0]['index_bytes_per_snippet']} bytes a snippet." if rows else "")
    return table(["watches", "batched step (16 streams)", "added without watches (embedding, index)",
                  "added with the watches", "the watches themselves"], body) + note


def cluster_live_rows(document: dict) -> list[dict]:
    order = {"in-process": 0, "workers1": 1, "workers2": 2}
    return sorted((t["measured"] for t in tests_named(document, "test_cluster_live_streams")),
                  key=lambda m: (order.get(m["where"], 9), m["streams"]))


def cluster_table(document: dict) -> str:
    parts = []
    overhead = one_test(document, "test_cluster_overhead")
    if overhead is not None:
        m = overhead["measured"]
        inside, cluster = m["in_process"], m["cluster"]
        parts.append(table(
            ["one session, offline", "in process", "cluster, 1 worker", "ratio", "added"],
            [["per snippet (stream wall time / snippets)", f"{inside['ms_per_snippet']:.1f} ms",
              f"{cluster['ms_per_snippet']:.1f} ms", f"{m['step_ratio']:.2f}×", f"{m['step_overhead_ms']:+.1f} ms"],
             ["per answer (median)", f"{inside['answer_ms_median']:.1f} ms", f"{cluster['answer_ms_median']:.1f} ms",
              f"{m['answer_ratio']:.2f}×", f"{m['answer_overhead_ms']:+.1f} ms"]]))
    rows = cluster_live_rows(document)
    if rows:
        parts.append(table(
            ["engine", "live streams", "snippet latency, p50 / p95 / p99", "worst-stream RTF", "mean batch",
             "first answer token, p50 / p95 / p99", "real time"],
            [[r["where"].replace("workers", "cluster, ") + (" worker(s)" if r["where"] != "in-process" else ""),
              str(r["streams"]), ms_triplet(r["latency_ms"], scale=1e-3), f"{r['worst_stream_rtf']:.3f}",
              f"{r['mean_batch']:.1f}", ms_triplet(r["first_token_ms"], scale=1e-3),
              "yes" if r["real_time"] else "**no**"] for r in rows]))
    restore = one_test(document, "test_cluster_restore")
    if restore is not None:
        m = restore["measured"]
        parts.append(f"A worker killed (SIGKILL) under 4 streaming sessions: {m['restores']} session(s) restored, in "
                     + ", ".join(f"{t:.2f} s" for t in m["took_s"]) + " (replaying "
                     + ", ".join(str(n) for n in m["replayed"]) + " snippets); nothing lost.")
    return "\n\n".join(parts)


TABLES: dict[str, Callable[[dict], str]] = {"micro": micro_table, "stream": stream_table, "scale": scale_table,
                                            "memory": memory_table, "attention": attention_table, "watch": watch_table,
                                            "cluster": cluster_table}


def benchmark_section(name: str, documents: list[dict]) -> str:
    if not documents:
        return f"*{NOT_MEASURED}.*"
    parts = []
    for document in documents:
        parts.append(f"{provenance(document)}; plot: [{document['png'].name}](results/{document['png'].name})\n\n"
                     + TABLES[name](document))
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------ targets


def performance_section(results: dict[str, list[dict]]) -> str:
    """The `tiny` targets on 2 CPU cores against the CPU results, and the memory plot."""
    cpu = {name: next((d for d in documents if d["device"] == "cpu"), None) for name, documents in results.items()}
    rows = []

    def target(what: str, value: str | None, met: bool | None) -> None:
        rows.append([what, value or NOT_MEASURED, "–" if met is None else ("yes" if met else "**no**")])

    stream = stream_rows(cpu["stream"]).get("ttm", {}) if cpu["stream"] else {}
    rtf = stream.get("rtf")
    target("one stream: end-to-end RTF ≤ 0.05", f"{rtf:.3f}" if rtf else None, rtf <= 0.05 if rtf else None)
    first = stream.get("first_token_ms", {}).get("p95")
    target("one stream: first answer token ≤ 20 ms p95", f"{first:.1f} ms" if first else None,
           first <= 20 if first else None)
    scale = scale_rows(cpu["scale"]) if cpu["scale"] else []
    if scale:
        held = most_real_time_streams(cpu["scale"])
        top = scale[-1]["streams"]
        target("≥ 32 concurrent real-time streams in one process (p95 snippet latency < snippet)",
               f"{held} (of up to {top} measured)", held >= 32)
        at16 = next((r for r in scale if r["streams"] == 16), None)
        p95 = at16["first_token_ms"].get("p95") if at16 else None
        target("first answer token ≤ 100 ms p95 while 16 streams run", f"{p95:.1f} ms" if p95 else None,
               p95 <= 100 if p95 else None)
    else:
        target("≥ 32 concurrent real-time streams in one process (p95 snippet latency < snippet)", None, None)
        target("first answer token ≤ 100 ms p95 while 16 streams run", None, None)
    change = rss_change(cpu["memory"]["tests"][0]["measured"]["arms"]) if cpu["memory"] else None
    to_4h = change is not None and change[0] <= 1 and change[1] >= 240  # a shorter run cannot say
    target("RSS flat within 2% from 1 minute to 4 hours",
           f"{change[2]:+.2%} from {change[0]:g} to {change[1]:g} min" if change else None,
           abs(change[2]) <= 0.02 if to_4h else None)
    watch = next((r for r in watch_rows(cpu["watch"]) if r["watches"] == 1000), None) if cpu["watch"] else None
    target("scoring 1,000 watches across 16 sessions adds ≤ 1 ms per step",
           f"{watch['watches_ms']:.2f} ms (+{watch['added_without_watches_ms']:.2f} ms embedding and index)"
           if watch else None, watch["watches_ms"] <= 1.0 if watch else None)
    runs: dict[str, list[str]] = {}  # a partial re-run leaves the targets' benchmarks from several runs
    for name in ("stream", "scale", "memory", "watch"):
        if cpu.get(name):
            runs.setdefault(provenance(cpu[name]), []).append(name)
    measured_on = next(iter(runs)) if len(runs) == 1 else "; ".join(
        f"{', '.join(names)}: {run}" for run, names in runs.items()) or None
    lines = [f"Targets for `tiny` on 2 CPU cores, measured with `make bench` ({measured_on or NOT_MEASURED}); "
             "every table, plot and how each number is taken: [bench/README.md](bench/README.md).", "",
             table(["target", "measured", "met"], rows)]
    if cpu["memory"]:
        lines += ["", f"![state bytes and RSS against stream length](bench/results/{cpu['memory']['png'].name})"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ READMEs


def replace_sections(text: str, sections: dict[str, str]) -> str:
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(\n<!-- /bench:{name} -->)", re.S)
        text = pattern.sub(lambda match: match.group(1) + body + match.group(2), text)
    return text


def update_readmes(results_folder: Path, readmes: list[Path]) -> None:
    results = load_results(results_folder)
    sections = {name: benchmark_section(name, documents) for name, documents in results.items()}
    sections["performance"] = performance_section(results)
    for readme in readmes:
        readme.write_text(replace_sections(readme.read_text(), sections))


# ------------------------------------------------------------------------------ plots


def plot(document: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if document["benchmark"] == "attention":
        from bench.attention import plot as attention_plot

        report = document["tests"][0]["measured"]["attention"]
        attention_plot(report["results"], path, report["device"])
        return
    fig = PLOTS[document["benchmark"]](plt, document)
    fig.suptitle(f"{document['benchmark']}: {provenance(document).replace('`', '')}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_micro(plt, document: dict):
    tests = document["tests"]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(tests) + 1.2))
    labels = [MICRO_LABELS.get(t["test"].split("[")[0], t["test"]).format(**t["measured"]) for t in tests]
    ax.barh(labels, [t["stats_s"]["median"] * 1e3 for t in tests], color="tab:blue")
    ax.set(xscale="log", xlabel="median ms per call")
    ax.invert_yaxis()
    return fig


def _ecdf(ax, values: list[float], label: str) -> None:
    ordered = sorted(values)
    ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)


def plot_stream(plt, document: dict):
    fig, (steps, answers) = plt.subplots(1, 2, figsize=(11, 4))
    for test in document["tests"]:
        name, combiner, data = test["test"].split("[")[0], test["measured"].get("combiner"), test["stats_s"].get("data")
        if name == "test_step_latency" and data:
            _ecdf(steps, [x * 1e3 for x in data], combiner)
        elif name == "test_answer_latency":
            if test["measured"]["first_token_ms"]:
                _ecdf(answers, test["measured"]["first_token_ms"], f"{combiner}: first token")
            if data:
                _ecdf(answers, [x * 1e3 for x in data], f"{combiner}: whole answer")
    steps.set(xscale="log", xlabel="ms", ylabel="fraction of snippets", title="step latency, one stream")
    answers.set(xscale="log", xlabel="ms", ylabel="fraction of questions", title="answer latency")
    for ax in (steps, answers):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def plot_scale(plt, document: dict):
    rows = scale_rows(document)
    n = [r["streams"] for r in rows]
    fig, (latency, rtf, rate) = plt.subplots(1, 3, figsize=(13, 4))
    for key in ("p50", "p95", "p99"):
        latency.plot(n, [r["latency_ms"][key] for r in rows], marker="o", label=key)
    if rows:
        latency.axhline(rows[0]["snippet_s"] * 1e3, color="red", ls="--", label="snippet duration")
    latency.set(xscale="log", yscale="log", xlabel="live streams", ylabel="ms", title="snippet latency")
    rtf.plot(n, [r["worst_stream_rtf"] for r in rows], marker="o")
    rtf.axhline(1.0, color="red", ls="--")
    rtf.set(xscale="log", xlabel="live streams", ylabel="processing time / media time", title="worst-stream RTF")
    rate.plot(n, [r["snippets_per_s"] for r in rows], marker="o")
    rate.set(xscale="log", yscale="log", xlabel="live streams", ylabel="snippets/s", title="snippets stepped per second")
    for ax in (latency, rtf, rate):
        ax.grid(alpha=0.3)
    latency.legend(fontsize=7)
    return fig


def plot_memory(plt, document: dict):
    arms = document["tests"][0]["measured"]["arms"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"engine": ("engine (TTM memory, windowed latents)", "tab:green"),
              "full_history": ("full history (no window, growing cache)", "tab:red"),
              "rerun": ("re-run the model over the history per question", "tab:orange")}
    for ax, key, title in zip(axes, ("state_bytes", "rss_bytes"), ("state bytes per stream", "process RSS")):
        for arm, (label, color) in styles.items():
            rows = arms[arm]["rows"]
            ax.plot([r["minutes"] for r in rows], [r[key] for r in rows], marker="o", color=color, label=label)
            late = next((r for r in rows if r.get("real_time") is False), None)
            if late is not None:
                ax.plot(late["minutes"], late[key], marker="X", markersize=12, color=color, ls="none")
                ax.annotate("not real time", (late["minutes"], late[key]), fontsize=7, color=color,
                            textcoords="offset points", xytext=(5, -12))
            stopped = arms[arm].get("stopped")
            if stopped and stopped["reason"] == "out of memory" and rows:
                ax.annotate(f"out of memory at {stopped['minutes']:g} min", (rows[-1]["minutes"], rows[-1][key]),
                            fontsize=7, color=color, textcoords="offset points", xytext=(5, 5))
        ax.set(xscale="log", yscale="log", xlabel="stream length (minutes)", ylabel="bytes", title=title)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    return fig


def plot_watch(plt, document: dict):
    rows = watch_rows(document)
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(rows) + 1.4))
    labels = [f"{r['watches']:,} watches" for r in rows]
    ax.barh(labels, [r["added_without_watches_ms"] for r in rows], color="tab:gray", label="embedding and index")
    ax.barh(labels, [r["watches_ms"] for r in rows], left=[r["added_without_watches_ms"] for r in rows],
            color="tab:orange", label="the watches")
    ax.set(xlabel="ms added to a batched step of 16 streams")
    ax.legend(fontsize=7)
    return fig


def plot_cluster(plt, document: dict):
    rows = cluster_live_rows(document)
    fig, ax = plt.subplots(figsize=(7, 4))
    for where in dict.fromkeys(r["where"] for r in rows):
        mine = [r for r in rows if r["where"] == where]
        ax.plot([r["streams"] for r in mine], [r["latency_ms"]["p95"] for r in mine], marker="o", label=where)
    if rows:
        ax.axhline(rows[0]["snippet_s"] * 1e3, color="red", ls="--", label="snippet duration")
    ax.set(xscale="log", yscale="log", xlabel="live streams", ylabel="p95 snippet latency (ms)",
           title="live streams: in process and on the cluster")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


PLOTS = {"micro": plot_micro, "stream": plot_stream, "scale": plot_scale, "memory": plot_memory, "watch": plot_watch,
         "cluster": plot_cluster}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the JSON of `pytest bench --benchmark-json RUN.json`")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of results files and plots")
    parser.add_argument("--readme", type=Path, action="append", default=[],
                        help="a README whose bench sections to regenerate (repeatable); none: print the tables")
    args = parser.parse_args(argv)
    if not args.run.is_file():
        raise SystemExit(f"{args.run}: no such file; run `pytest bench --benchmark-json {args.run}` first")
    run = json.loads(args.run.read_text())
    if not run.get("benchmarks"):
        raise SystemExit(f"{args.run} holds no benchmarks (was the run made with --benchmark-disable?)")
    for path in write_results(run, args.results):
        print(f"wrote {path}")
    if args.readme:
        update_readmes(args.results, args.readme)
        print("updated " + ", ".join(map(str, args.readme)))
    else:
        results = load_results(args.results)
        for name, documents in results.items():
            print(f"\n## {name}\n\n{benchmark_section(name, documents)}")


if __name__ == "__main__":
    main()
