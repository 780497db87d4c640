#!/usr/bin/env python3
"""Record benchmark measurements and render them as Markdown.

bench/run calls this script after each measurement. Every measurement is one JSON
object appended as a line to the results file (JSON Lines). The `report` subcommand
turns the whole file into the tables of BENCHMARKS.md: the store, throughput, ratios of
acme-dl to nginx, the crypto floor, memory, the client, the fleet and the targets.

Subcommands:
  load       parse an oha JSON report and the server CPU used during the run
  handshake-load
             parse the JSON of examples/handshake_load (a new connection and a full
             TLS handshake per request) and the server CPU used during the run
  handshake  parse `openssl s_time` output and the server CPU used during the run
  speed      parse `openssl speed` output into the per-handshake crypto floor
  record     append KEY=VALUE fields, optionally merged with a JSON object from a file
  report     print the Markdown tables

Python 3.11 standard library only.
"""

import argparse
import json
import re
import sys
from pathlib import Path


def append(results: Path, record: dict) -> None:
    with results.open("a") as file:
        file.write(json.dumps(record, sort_keys=True) + "\n")


def load_records(results: Path) -> list[dict]:
    return [json.loads(line) for line in results.read_text().splitlines() if line.strip()]


NUMBER = re.compile(r"-?\d+(\.\d+)?")


def parse_value(text: str):
    """Return `text` as an int or a float when it is a plain decimal number, else as is."""
    if not NUMBER.fullmatch(text):
        return text
    return float(text) if "." in text else int(text)


# Recording


def command_load(args: argparse.Namespace) -> None:
    """Record one oha run: rate, latency, status codes, errors and server CPU."""
    report = json.loads(Path(args.oha_json).read_text())
    status_codes = report["statusCodeDistribution"]
    errors = report["errorDistribution"]
    responses = sum(status_codes.values())
    ok_responses = status_codes.get("200", 0)
    cpu_seconds = args.cpu_user_seconds + args.cpu_system_seconds

    record = {
        "kind": "load",
        "load_generator": "oha",
        "pki": args.pki,
        "round": args.round,
        "pair": args.pair,
        "server": args.server,
        "request": args.request,
        "connection": args.connection,
        "connections": args.connections,
        "duration_s": report["summary"]["total"],
        "rps": ok_responses / report["summary"]["total"],
        "p50_ms": report["latencyPercentiles"]["p50"] * 1000.0,
        "p99_ms": report["latencyPercentiles"]["p99"] * 1000.0,
        "responses": responses,
        "ok_responses": ok_responses,
        "status_codes": status_codes,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "cpu_user_s": args.cpu_user_seconds,
        "cpu_system_s": args.cpu_system_seconds,
        "cpu_s": cpu_seconds,
        "cpu_ms_per_request": cpu_seconds * 1000.0 / max(responses, 1),
    }
    add_log_counts(record, args)
    append(Path(args.results), record)

    print(
        f"{args.pki:5} round {args.round} {args.server:7} {args.request:16} {args.connection:10} "
        f"{record['rps']:9.0f} req/s  p50 {record['p50_ms']:7.2f} ms  "
        f"p99 {record['p99_ms']:7.2f} ms  errors {record['errors']}  non-200 "
        f"{responses - ok_responses}  server CPU {record['cpu_ms_per_request']:.3f} ms/req"
    )


def add_log_counts(record: dict, args: argparse.Namespace) -> None:
    """Copy the server log counts that bench/run passed into `record`."""
    if args.server_warnings is not None:
        record["server_warnings"] = args.server_warnings
    if args.sessions_reused is not None:
        record["sessions_reused"] = args.sessions_reused
        record["sessions_logged"] = args.sessions_logged


def command_handshake_load(args: argparse.Namespace) -> None:
    """Record one examples/handshake_load run in the fields of an oha run.

    Every request of such a run had its own TCP connection and a full TLS handshake. Its
    latency percentiles cover every response, like oha's. The rate counts 2xx responses,
    where the oha rows count only 200 responses.
    """
    report = json.loads(Path(args.json).read_text())
    other_statuses = report["other_statuses"]
    responses = report["successes"] + sum(other_statuses.values())
    cpu_seconds = args.cpu_user_seconds + args.cpu_system_seconds
    no_response = float("nan")
    record = {
        "kind": "load",
        "load_generator": "handshake_load",
        "pki": args.pki,
        "round": args.round,
        "pair": args.pair,
        "server": args.server,
        "request": args.request,
        "connection": "new, full handshake",
        "connections": report["connections"],
        "duration_s": report["duration_s"],
        "rps": report["successes_per_second"],
        "p50_ms": report["p50_ms"] if report["p50_ms"] is not None else no_response,
        "p99_ms": report["p99_ms"] if report["p99_ms"] is not None else no_response,
        "requests": report["requests"],
        "responses": responses,
        "ok_responses": report["successes"],
        "status_codes": {"2xx": report["successes"], **other_statuses},
        "errors": report["errors"],
        "error_kinds": report["error_kinds"],
        "tls_versions": report["tls_versions"],
        "handshake_kinds": report["handshake_kinds"],
        "cpu_user_s": args.cpu_user_seconds,
        "cpu_system_s": args.cpu_system_seconds,
        "cpu_s": cpu_seconds,
        "cpu_ms_per_request": cpu_seconds * 1000.0 / max(responses, 1),
    }
    add_log_counts(record, args)
    append(Path(args.results), record)

    versions = ", ".join(f"{name} {count}" for name, count in report["tls_versions"].items())
    kinds = ", ".join(f"{name} {count}" for name, count in report["handshake_kinds"].items())
    print(
        f"{args.pki:5} round {args.round} {args.server:7} {args.request:16} full handshake "
        f"{record['rps']:9.0f} req/s  p50 {record['p50_ms']:7.2f} ms  "
        f"p99 {record['p99_ms']:7.2f} ms  errors {record['errors']}  non-2xx "
        f"{responses - record['ok_responses']}  server CPU {record['cpu_ms_per_request']:.3f} "
        f"ms/req  TLS: {versions or 'none'}  handshakes: {kinds or 'none'}"
    )


def command_handshake(args: argparse.Namespace) -> None:
    """Record one `openssl s_time -new` run: full handshakes and server CPU per handshake."""
    text = Path(args.s_time_output).read_text()
    match = re.search(r"(\d+) connections in ([\d.]+) real seconds", text)
    if not match:
        sys.exit(f"results.py: no 'connections in ... real seconds' line in {args.s_time_output}")
    connections = int(match.group(1))
    cpu_seconds = args.cpu_user_seconds + args.cpu_system_seconds
    record = {
        "kind": "handshake",
        "pki": args.pki,
        "server": args.server,
        "handshakes": connections,
        "real_s": float(match.group(2)),
        "cpu_user_s": args.cpu_user_seconds,
        "cpu_system_s": args.cpu_system_seconds,
        "cpu_s": cpu_seconds,
        "cpu_ms_per_handshake": cpu_seconds * 1000.0 / max(connections, 1),
        "resumption_offered": args.resumption_offered,
    }
    append(Path(args.results), record)
    print(
        f"{args.pki:5} {args.server:7} full handshakes: {connections} in {record['real_s']} s, "
        f"server CPU {record['cpu_ms_per_handshake']:.3f} ms per handshake; "
        f"resumption offered: {args.resumption_offered}"
    )


SPEED_PATTERNS = {
    # OpenSSL 3.0.19 prints "rsa 2048 bits 0.000275s 0.000019s   3635.8  51475.8".
    "rsa2048": re.compile(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", re.M),
    # " 256 bits ecdsa (nistp256)   0.0000s   0.0001s  46802.0  15577.6"
    "ecdsap256": re.compile(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)"),
    # " 253 bits ecdh (X25519)   0.0000s  26459.6"
    "x25519": re.compile(r"bits ecdh \(X25519\)\s+\S+\s+([\d.]+)"),
}


def command_speed(args: argparse.Namespace) -> None:
    """Record the crypto floor of one full mutual-TLS handshake for each key type.

    The floor is one signature with the server key, two verifications (the CA's
    signature on the client certificate and the client's CertificateVerify) and one
    X25519 key exchange, each at the single-thread rate `openssl speed` measured.
    """
    text = Path(args.speed_output).read_text()
    rates = {}
    for name, pattern in SPEED_PATTERNS.items():
        match = pattern.search(text)
        if not match:
            sys.exit(f"results.py: no {name} line in {args.speed_output}")
        rates[name] = [float(group) for group in match.groups()]
    x25519_ms = 1000.0 / rates["x25519"][0]
    for pki, algorithm in (("rsa", "rsa2048"), ("ecdsa", "ecdsap256")):
        sign_per_s, verify_per_s = rates[algorithm]
        record = {
            "kind": "floor",
            "pki": pki,
            "sign_per_s": sign_per_s,
            "verify_per_s": verify_per_s,
            "x25519_per_s": rates["x25519"][0],
            "floor_ms": 1000.0 / sign_per_s + 2000.0 / verify_per_s + x25519_ms,
        }
        append(Path(args.results), record)
        print(
            f"{pki:5} crypto floor {record['floor_ms']:.3f} ms per handshake "
            f"({algorithm}: {sign_per_s:.0f} sign/s, {verify_per_s:.0f} verify/s; "
            f"X25519: {rates['x25519'][0]:.0f} op/s)"
        )


def command_record(args: argparse.Namespace) -> None:
    record = {}
    if args.json:
        record.update(json.loads(Path(args.json).read_text()))
    for field in args.fields:
        key, separator, value = field.partition("=")
        if not separator:
            sys.exit(f"results.py: field {field!r} is not KEY=VALUE")
        record[key] = parse_value(value)
    if "kind" not in record:
        sys.exit("results.py: record needs a kind=... field")
    append(Path(args.results), record)


# Report


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def find(records: list[dict], **fields) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in fields.items())]


def one(records: list[dict], **fields) -> dict | None:
    matches = find(records, **fields)
    return matches[0] if matches else None


def system_share(record: dict) -> str:
    return f"{100.0 * record['cpu_system_s'] / record['cpu_s']:.0f}%" if record["cpu_s"] else "n/a"


def mean_load(records: list[dict], pki: str, pair: int, server: str) -> dict | None:
    """Return the mean over rounds of one server's runs in one pair, with each round's run."""
    runs = find(records, kind="load", pki=pki, pair=pair, server=server)
    if not runs:
        return None
    fields = ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
    mean = {field: sum(run[field] for run in runs) / len(runs) for field in fields}
    mean["cpu_s"] = sum(run["cpu_s"] for run in runs)
    mean["cpu_system_s"] = sum(run["cpu_system_s"] for run in runs)
    mean["runs"] = sorted(runs, key=lambda run: run["round"])
    return mean


def round_ratios(acme: dict, nginx: dict, field: str) -> list[float]:
    """Return acme-dl / nginx for `field` in each round both servers ran."""
    nginx_by_round = {run["round"]: run for run in nginx["runs"]}
    return [
        ratio(run[field], nginx_by_round[run["round"]][field])
        for run in acme["runs"]
        if run["round"] in nginx_by_round
    ]


PAIR_TITLES = {
    1: "oha, new connection per request: check (acme-dl) vs GET fullchain.pem (nginx)",
    2: "oha, keep-alive: check (acme-dl) vs GET fullchain.pem (nginx)",
    3: "oha, keep-alive GET fullchain.pem on both",
    4: "oha, new connection per request: GET fullchain.pem on both",
    5: "handshake_load, new connection and full handshake per request: "
       "check (acme-dl) vs GET fullchain.pem (nginx)",
    6: "handshake_load, new connection and full handshake per request: "
       "GET fullchain.pem on both",
}


def render_load(records: list[dict]) -> str:
    rows = []
    for r in find(records, kind="load"):
        reused = ""
        if "sessions_reused" in r and r.get("sessions_logged"):
            reused = f"{100.0 * r['sessions_reused'] / r['sessions_logged']:.1f}%"
        non_ok = r["responses"] - r["ok_responses"]
        rows.append([
            r["pki"], r["round"], r["pair"], r["server"], r.get("load_generator", "oha"),
            r["request"], r["connection"], f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
            r["ok_responses"], non_ok, r["errors"],
            f"{r['cpu_s']:.2f}", system_share(r), f"{r['cpu_ms_per_request']:.3f}",
            reused or "n/a", r.get("server_warnings", "n/a"),
        ])
    return table(
        ["PKI", "round", "pair", "server", "load generator", "request", "connection",
         "req/s (200 for oha, 2xx for handshake_load)", "p50 ms", "p99 ms",
         "200 or 2xx responses", "other responses", "errors", "server CPU s",
         "of which system", "server CPU ms/request", "TLS sessions resumed (nginx log)",
         "warning and error lines (acme-dl log)"],
        rows,
    )


def render_handshake_load_tls(records: list[dict]) -> str:
    """Render the TLS versions and handshake kinds that handshake_load's client saw."""
    rows = []
    for r in find(records, kind="load", load_generator="handshake_load"):
        versions = r["tls_versions"]
        kinds = r["handshake_kinds"]
        full = kinds.get("full", 0) + kinds.get("full with HelloRetryRequest", 0)
        rows.append([
            r["pki"], r["round"], r["pair"], r["server"], r["request"], r["requests"],
            versions.get("TLSv1.3", 0), versions.get("TLSv1.2", 0), full,
            kinds.get("resumed", 0),
        ])
    return table(
        ["PKI", "round", "pair", "server", "request", "requests", "TLS 1.3 connections",
         "TLS 1.2 connections", "full handshakes", "resumed handshakes"],
        rows,
    )


def render_ratios(records: list[dict]) -> str:
    rows = []
    for pki in ("rsa", "ecdsa"):
        for pair, title in PAIR_TITLES.items():
            acme = mean_load(records, pki, pair, "acme-dl")
            nginx = mean_load(records, pki, pair, "nginx")
            if not acme or not nginx:
                continue
            per_round = round_ratios(acme, nginx, "rps")
            rows.append([
                pki, pair, title,
                f"{ratio(acme['rps'], nginx['rps']):.2f}",
                " / ".join(f"{value:.2f}" for value in per_round),
                f"{ratio(acme['p50_ms'], nginx['p50_ms']):.2f}",
                f"{ratio(acme['p99_ms'], nginx['p99_ms']):.2f}",
                f"{ratio(acme['cpu_ms_per_request'], nginx['cpu_ms_per_request']):.2f}",
            ])
    return table(
        ["PKI", "pair", "workload", "req/s ratio (means over rounds)", "req/s ratio per round",
         "p50 ratio", "p99 ratio", "server CPU per request ratio"],
        rows,
    )


def render_handshakes(records: list[dict]) -> str:
    rows = []
    for pki in ("rsa", "ecdsa"):
        floor = one(records, kind="floor", pki=pki)
        floor_ms = floor["floor_ms"] if floor else float("nan")
        for pair, server, load in (
            (1, "acme-dl", "oha, new connection per check, mean over rounds"),
            (1, "nginx", "oha, new connection per GET, mean over rounds"),
            (5, "acme-dl", "handshake_load, new connection and full handshake per check, "
                           "mean over rounds"),
            (5, "nginx", "handshake_load, new connection and full handshake per GET, "
                         "mean over rounds"),
        ):
            mean = mean_load(records, pki, pair, server)
            if mean:
                rows.append([
                    pki, server, load, f"{mean['cpu_ms_per_request']:.3f}", system_share(mean),
                    f"{floor_ms:.3f}", f"{ratio(mean['cpu_ms_per_request'], floor_ms):.2f}",
                ])
        for r in find(records, kind="handshake", pki=pki):
            rows.append([
                pki, r["server"], "openssl s_time -new (full handshake, GET over HTTP/1.0)",
                f"{r['cpu_ms_per_handshake']:.3f}", system_share(r), f"{floor_ms:.3f}",
                f"{ratio(r['cpu_ms_per_handshake'], floor_ms):.2f}",
            ])
        for r in find(records, kind="fleet", pki=pki):
            per_check = r["cpu_s"] * 1000.0 / max(r["clients"], 1)
            rows.append([
                pki, "acme-dl", "fleet: acme-dl client processes, full handshake and check",
                f"{per_check:.3f}", system_share(r), f"{floor_ms:.3f}",
                f"{ratio(per_check, floor_ms):.2f}",
            ])
    return table(
        ["PKI", "server", "load", "server CPU ms per connection", "of which system",
         "crypto floor ms", "ratio to floor"],
        rows,
    )


def render_floor(records: list[dict]) -> str:
    rows = [
        [r["pki"], f"{r['sign_per_s']:.0f}", f"{r['verify_per_s']:.0f}",
         f"{r['x25519_per_s']:.0f}", f"{r['floor_ms']:.3f}"]
        for r in find(records, kind="floor")
    ]
    return table(
        ["PKI", "sign/s", "verify/s", "X25519 op/s", "floor: 1 sign + 2 verify + 1 X25519, ms"],
        rows,
    )


def render_memory(records: list[dict]) -> str:
    rows = []
    for r in find(records, kind="memory"):
        rows.append([
            r["pki"], r["server"], r["state"], f"{r['rss_mib']:.1f}", f"{r['pss_mib']:.1f}",
            r.get("connections_open", ""), r.get("connections_failed", ""),
            r.get("open_secs", ""),
        ])
    return table(
        ["PKI", "server", "state", "VmRSS MiB (sum over processes)", "Pss MiB (sum)",
         "connections held", "connections failed", "seconds to open them"],
        rows,
    )


def render_client(records: list[dict]) -> str:
    rows = []
    for r in find(records, kind="client"):
        rows.append([
            r["pki"], r["name"], r["runs"],
            f"{r['wall_ms']['median']:.2f}", f"{r['wall_ms']['min']:.2f}",
            f"{r['wall_ms']['max']:.2f}", f"{r['cpu_ms']['median']:.2f}",
        ])
    return table(
        ["PKI", "run", "runs", "wall ms median", "wall ms min", "wall ms max",
         "CPU ms median"],
        rows,
    )


def render_fleet(records: list[dict]) -> str:
    rows = []
    for r in find(records, kind="fleet"):
        rows.append([
            r["pki"], r["clients"], r["failed"], f"{r['window_secs']:.0f}",
            f"{r['elapsed_secs']:.1f}", f"{r['cpu_s']:.2f}", system_share(r),
            f"{100.0 * r['cpu_s'] / r['elapsed_secs']:.1f}%",
            f"{r['cpu_s'] * 1000.0 / max(r['clients'], 1):.3f}",
            r.get("up_to_date_logged", "n/a"),
            f"{r['wall_ms']['median']:.1f}", f"{r['wall_ms']['p99']:.1f}",
            f"{r['wall_ms']['max']:.1f}", f"{r['client_cpu_ms_median']:.1f}",
        ])
    return table(
        ["PKI", "clients (distinct certificates)", "failed runs", "splay window s",
         "elapsed s", "server CPU s", "of which system", "server CPU share of one core",
         "server CPU ms per check", "checks logged up to date", "client wall ms median",
         "client wall ms p99", "slowest client run, wall ms", "client CPU ms median"],
        rows,
    )


def at_least(value: float, target: float) -> list[str]:
    """Return the verdict and margin of a measurement that must reach `target`."""
    change = abs(value / target - 1.0) * 100.0
    if value >= target:
        return ["met", f"{change:.0f}% above the target"]
    return ["missed", f"{change:.0f}% below the target"]


def at_most(value: float, limit: float, strict: bool = False) -> list[str]:
    """Return the verdict and margin of a measurement that must stay at or under `limit`."""
    change = abs(value / limit - 1.0) * 100.0
    met = value < limit if strict else value <= limit
    if met:
        return ["met", f"{change:.0f}% under the limit"]
    return ["missed", f"{change:.0f}% over the limit"]


def render_targets(records: list[dict]) -> str:
    rows = []
    for pki in ("rsa", "ecdsa"):
        floor = one(records, kind="floor", pki=pki)
        pairs = {
            pair: (mean_load(records, pki, pair, "acme-dl"), mean_load(records, pki, pair, "nginx"))
            for pair in PAIR_TITLES
        }
        acme, nginx = pairs[1]
        if acme and nginx:
            value = ratio(acme["rps"], nginx["rps"])
            rows.append([pki, "new connection per check: req/s at least nginx's new-connection GET",
                         f"{value:.2f} x nginx", *at_least(value, 1.0)])
            value = ratio(acme["cpu_ms_per_request"], nginx["cpu_ms_per_request"])
            rows.append([pki, "server CPU per check at most 0.9 x nginx's per new-connection GET, "
                              "oha, TLS sessions resumed",
                         f"{value:.2f} x nginx", *at_most(value, 0.9)])
            if floor:
                value = ratio(acme["cpu_ms_per_request"], floor["floor_ms"])
                rows.append([pki, "server CPU per check within 15% of the crypto floor (at most 1.15 x), "
                                  "oha new connections, TLS sessions resumed",
                             f"{acme['cpu_ms_per_request']:.3f} ms = {value:.2f} x floor",
                             *at_most(value, 1.15)])
        full_acme = one(records, kind="handshake", pki=pki, server="acme-dl")
        full_nginx = one(records, kind="handshake", pki=pki, server="nginx")
        if full_acme and full_nginx:
            value = ratio(full_acme["cpu_ms_per_handshake"], full_nginx["cpu_ms_per_handshake"])
            rows.append([pki, "same, full handshakes (openssl s_time -new, GET on both): "
                              "server CPU at most 0.9 x nginx's",
                         f"{value:.2f} x nginx", *at_most(value, 0.9)])
        if full_acme and floor:
            value = ratio(full_acme["cpu_ms_per_handshake"], floor["floor_ms"])
            rows.append([pki, "same, full handshakes (openssl s_time -new, GET): "
                              "within 15% of the crypto floor",
                         f"{full_acme['cpu_ms_per_handshake']:.3f} ms = {value:.2f} x floor",
                         *at_most(value, 1.15)])
        acme, nginx = pairs[5]
        if acme and nginx:
            value = ratio(acme["rps"], nginx["rps"])
            rows.append([pki, "new connection and full handshake per check (handshake_load): "
                              "req/s at least nginx's per GET",
                         f"{value:.2f} x nginx", *at_least(value, 1.0)])
            value = ratio(acme["cpu_ms_per_request"], nginx["cpu_ms_per_request"])
            rows.append([pki, "same, full handshakes (handshake_load, check vs GET): "
                              "server CPU at most 0.9 x nginx's",
                         f"{value:.2f} x nginx", *at_most(value, 0.9)])
            if floor:
                value = ratio(acme["cpu_ms_per_request"], floor["floor_ms"])
                rows.append([pki, "same, full handshakes (handshake_load, check): "
                                  "within 15% of the crypto floor",
                             f"{acme['cpu_ms_per_request']:.3f} ms = {value:.2f} x floor",
                             *at_most(value, 1.15)])
        fleet = one(records, kind="fleet", pki=pki)
        if fleet and floor:
            per_check = fleet["cpu_s"] * 1000.0 / max(fleet["clients"], 1)
            value = ratio(per_check, floor["floor_ms"])
            rows.append([pki, "same, full handshakes (fleet, one check per connection): "
                              "within 15% of the crypto floor",
                         f"{per_check:.3f} ms = {value:.2f} x floor", *at_most(value, 1.15)])
        for pair, name in ((2, "keep-alive check: req/s at least nginx's keep-alive static GET"),
                           (3, "keep-alive download: req/s at least nginx's")):
            acme, nginx = pairs[pair]
            if acme and nginx:
                value = ratio(acme["rps"], nginx["rps"])
                rows.append([pki, name, f"{value:.2f} x nginx", *at_least(value, 1.0)])
    for state, limit in (("idle", 8.0), ("10000 idle connections", 150.0)):
        for memory in find(records, kind="memory", server="acme-dl", state=state):
            rows.append([memory["pki"], f"acme-dl VmRSS {state} under {limit:.0f} MiB",
                         f"{memory['rss_mib']:.1f} MiB",
                         *at_most(memory["rss_mib"], limit, strict=True)])
    for pki in ("rsa", "ecdsa"):
        single = one(records, kind="client", pki=pki, name="1 lineage, up to date")
        many = one(records, kind="client", pki=pki, name="100 lineages, up to date")
        if single:
            wall = single["wall_ms"]["median"]
            rows.append([pki, "client up-to-date run under 10 ms wall", f"{wall:.2f} ms",
                         *at_most(wall, 10.0, strict=True)])
        if single and many:
            for measure, label in (("wall_ms", "wall"), ("cpu_ms", "CPU")):
                value = ratio(many[measure]["median"], single[measure]["median"])
                rows.append([pki, f"100 lineages under 3 x one lineage ({label} time)",
                             f"{value:.2f} x", *at_most(value, 3.0, strict=True)])
    return table(["PKI", "target", "measured", "verdict", "margin"], rows)


def render_store(records: list[dict]) -> str:
    store = one(records, kind="store")
    if not store:
        return "No store was recorded."
    return table(["item", "value"], [
        ["source", store["source"]],
        ["lineage", store["lineage"]],
        ["description", store["description"]],
    ])


def render_environment(records: list[dict]) -> str:
    environment = one(records, kind="environment") or {}
    rows = [[key, value] for key, value in environment.items() if key != "kind"]
    return table(["item", "value"], rows)


def command_report(args: argparse.Namespace) -> None:
    records = load_records(Path(args.results))
    sections = [
        ("Machine, versions and settings", render_environment(records)),
        ("Store", render_store(records)),
        ("Throughput, latency and server CPU (oha and handshake_load)", render_load(records)),
        ("TLS versions and handshake kinds (handshake_load)",
         render_handshake_load_tls(records)),
        ("Ratios, acme-dl / nginx", render_ratios(records)),
        ("Crypto floor (openssl speed, one thread)", render_floor(records)),
        ("Server CPU per connection against the crypto floor", render_handshakes(records)),
        ("Resident memory", render_memory(records)),
        ("Client runs", render_client(records)),
        ("Fleet simulation", render_fleet(records)),
        ("Targets", render_targets(records)),
    ]
    for title, body in sections:
        print(f"### {title}\n\n{body}\n")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="JSON Lines file of measurements")
    commands = parser.add_subparsers(dest="command", required=True)

    load = commands.add_parser("load", help="record an oha run")
    load.add_argument("--oha-json", required=True)
    load.add_argument("--pki", required=True)
    load.add_argument("--round", type=int, required=True)
    load.add_argument("--pair", type=int, required=True)
    load.add_argument("--server", required=True)
    load.add_argument("--request", required=True)
    load.add_argument("--connection", required=True, choices=["new", "keep-alive"])
    load.add_argument("--connections", type=int, required=True)
    load.add_argument("--cpu-user-seconds", type=float, required=True)
    load.add_argument("--cpu-system-seconds", type=float, required=True)
    load.add_argument("--sessions-reused", type=int)
    load.add_argument("--sessions-logged", type=int)
    load.add_argument("--server-warnings", type=int, help="warning and error lines in the server log")

    handshake_load = commands.add_parser(
        "handshake-load", help="record an examples/handshake_load run"
    )
    handshake_load.add_argument("--json", required=True, help="output of handshake_load")
    handshake_load.add_argument("--pki", required=True)
    handshake_load.add_argument("--round", type=int, required=True)
    handshake_load.add_argument("--pair", type=int, required=True)
    handshake_load.add_argument("--server", required=True)
    handshake_load.add_argument("--request", required=True)
    handshake_load.add_argument("--cpu-user-seconds", type=float, required=True)
    handshake_load.add_argument("--cpu-system-seconds", type=float, required=True)
    handshake_load.add_argument("--sessions-reused", type=int)
    handshake_load.add_argument("--sessions-logged", type=int)
    handshake_load.add_argument("--server-warnings", type=int,
                                help="warning and error lines in the server log")

    handshake = commands.add_parser("handshake", help="record an openssl s_time run")
    handshake.add_argument("--s-time-output", required=True)
    handshake.add_argument("--pki", required=True)
    handshake.add_argument("--server", required=True)
    handshake.add_argument("--cpu-user-seconds", type=float, required=True)
    handshake.add_argument("--cpu-system-seconds", type=float, required=True)
    handshake.add_argument("--resumption-offered", required=True, choices=["yes", "no"])

    speed = commands.add_parser("speed", help="record the crypto floor")
    speed.add_argument("--speed-output", required=True)

    record = commands.add_parser("record", help="record KEY=VALUE fields")
    record.add_argument("--json", help="file with a JSON object to merge")
    record.add_argument("fields", nargs="*")

    commands.add_parser("report", help="print the Markdown tables")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    {
        "load": command_load,
        "handshake-load": command_handshake_load,
        "handshake": command_handshake,
        "speed": command_speed,
        "record": command_record,
        "report": command_report,
    }[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
