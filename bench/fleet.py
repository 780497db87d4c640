#!/usr/bin/env python3
"""Simulate a fleet of acme-dl clients checking within a splay window.

Each client directory under --clients-root contains `client.crt`, `client.key` and a
synchronized `dest/`. Every client runs `acme-dl client` once, at a start offset drawn
uniformly from [0, --window-secs), against the same server, so each run is an up-to-date
check over a new mutual-TLS connection with its own certificate. The output is one JSON
object: how many runs there were and failed, the elapsed time from the first start to
the last exit, and the wall time of the runs in milliseconds.

Python 3.11 standard library only.
"""

import argparse
import ipaddress
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="path of the acme-dl binary")
    parser.add_argument("--server", required=True, help="server URL, on a loopback address")
    parser.add_argument("--ca", required=True, help="CA bundle for the server certificate")
    parser.add_argument("--clients-root", required=True, type=Path)
    parser.add_argument("--lineage", required=True)
    parser.add_argument("--window-secs", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1, help="seed of the start offsets")
    return parser.parse_args()


def require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"fleet.py: {url} does not name a loopback address; refusing to connect")


def run_client(args: argparse.Namespace, client_dir: Path, start_at: float, results: list) -> None:
    time.sleep(max(0.0, start_at - time.monotonic()))
    command = [
        args.binary, "client", "--no-syslog", "--timeout", "60",
        "--server", args.server,
        "--cert", str(client_dir / "client.crt"),
        "--key", str(client_dir / "client.key"),
        "--ca", args.ca,
        "--dest", str(client_dir / "dest"),
        args.lineage,
    ]
    with open(client_dir / "stderr.log", "wb") as stderr_file:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file)
        _, wait_status, usage = os.wait4(process.pid, 0)
        finished = time.monotonic()
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    results.append(
        {
            "client": client_dir.name,
            "exit_code": process.returncode,
            "wall_ms": (finished - started) * 1000.0,
            "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000.0,
            "finished": finished,
        }
    )


def main() -> int:
    args = parse_args()
    require_loopback(args.server)
    client_dirs = sorted(path for path in args.clients_root.iterdir() if path.is_dir())
    if not client_dirs:
        sys.exit(f"fleet.py: no client directories in {args.clients_root}")

    generator = random.Random(args.seed)
    began = time.monotonic() + 0.5
    results: list = []
    threads = []
    for client_dir in client_dirs:
        start_at = began + generator.uniform(0.0, args.window_secs)
        thread = threading.Thread(target=run_client, args=(args, client_dir, start_at, results))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()

    walls = sorted(result["wall_ms"] for result in results)
    failed = [result for result in results if result["exit_code"] != 0]
    for result in failed[:3]:
        print(f"fleet.py: client {result['client']} exited with {result['exit_code']}", file=sys.stderr)
    print(
        json.dumps(
            {
                "clients": len(results),
                "failed": len(failed),
                "window_secs": args.window_secs,
                "elapsed_secs": max(result["finished"] for result in results) - began,
                "wall_ms": {
                    "median": statistics.median(walls),
                    "p99": walls[min(len(walls) - 1, int(len(walls) * 0.99))],
                    "max": walls[-1],
                },
                "client_cpu_ms_median": statistics.median(r["cpu_ms"] for r in results),
            }
        )
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
