#!/usr/bin/env python3
"""Run a command several times and print its wall and CPU time as JSON.

Wall time runs from just before the fork to the return of wait4, so it includes
process start-up. CPU time is the child's user plus system time from wait4's resource
usage. Every run must exit 0; the first failure stops the script with the command's
stderr. The output is one JSON object with the median, minimum and maximum of each,
in milliseconds.

Python 3.11 standard library only.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, required=True, help="number of runs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args()
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("a command is required after --")
    return args


def run_once(command: list[str]) -> tuple[float, float]:
    """Run `command` once and return (wall ms, CPU ms)."""
    # A file, not a pipe, takes stderr, so a chatty child cannot block on a full pipe.
    with tempfile.TemporaryFile() as stderr_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr_file)
        _, wait_status, usage = os.wait4(process.pid, 0)
        wall_ms = (time.perf_counter() - started) * 1000.0
        process.returncode = os.waitstatus_to_exitcode(wait_status)
        if process.returncode != 0:
            stderr_file.seek(0)
            stderr = stderr_file.read().decode(errors="replace")
            sys.exit(f"time_command.py: {command[0]} exited with {process.returncode}:\n{stderr}")
    return wall_ms, (usage.ru_utime + usage.ru_stime) * 1000.0


def summarize(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def main() -> int:
    args = parse_args()
    walls, cpus = [], []
    for _ in range(args.runs):
        wall_ms, cpu_ms = run_once(args.command)
        walls.append(wall_ms)
        cpus.append(cpu_ms)
    print(json.dumps({"runs": args.runs, "wall_ms": summarize(walls), "cpu_ms": summarize(cpus)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
