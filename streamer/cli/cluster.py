"""`streamer cluster status`: what each engine worker of a Ray cluster is doing.

It joins the cluster as one more driver, finds the workers by name (a front started them
in the `streamer` namespace) and asks each for its figures; nothing is changed.
"""

from __future__ import annotations

import argparse
import os
import sys

_COLUMNS = [("name", "worker", "{}"), ("node", "node", "{}"), ("pid", "pid", "{}"), ("device", "device", "{}"),
            ("sessions", "sessions", "{}"), ("snippets_per_s", "snippets/s", "{:.1f}"),
            ("mean_batch", "batch", "{:.2f}"), ("busy", "busy", "{:.0%}"), ("max_lag_s", "lag s", "{:.2f}")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["status"], help="status: one line per engine worker")
    parser.add_argument("--address", default="auto",
                        help="the Ray cluster: auto (the one this machine runs), HOST:PORT or ray://HOST:PORT")
    parser.add_argument("--namespace", default="streamer", help="Ray namespace the front started its workers in")


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        print("streamer cluster: the cluster mode needs Ray: pip install 'streamer[cluster]'", file=sys.stderr)
        return 2
    try:
        ray.init(address=args.address, namespace=args.namespace, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        print(f"streamer cluster: cannot join a Ray cluster at {args.address}: {exc}", file=sys.stderr)
        return 2
    try:
        rows = worker_rows(ray)
    finally:
        ray.shutdown()
    if not rows:
        print(f"no engine workers in namespace {args.namespace!r}; start some with streamer.connect() or "
              "`streamer serve --cluster`")
        return 1
    print(format_table(rows))
    return 0


def worker_rows(ray) -> list[dict]:
    """Each named engine worker's figures, or `alive: False` for one that does not answer."""
    rows = []
    for name in sorted(n for n in ray.util.list_named_actors() if n.startswith("streamer-worker-")):
        try:
            info = ray.get(ray.get_actor(name).info.remote(), timeout=5.0)
            info.pop("media", None)
            rows.append({**info, "alive": True})
        except Exception as exc:
            rows.append({"name": name.removeprefix("streamer-"), "alive": False, "error": type(exc).__name__})
    return rows


def format_table(rows: list[dict]) -> str:
    header = [title for _, title, _ in _COLUMNS]
    lines = [[fmt.format(row[key]) if row.get("alive") else ("down" if key == "node" else
              row.get(key, "-") if key == "name" else "-") for key, _, fmt in _COLUMNS] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    return "\n".join(out)
