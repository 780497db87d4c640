#!/usr/bin/env python3
"""Open mutual-TLS connections to a loopback server and hold them idle.

Each connection completes the TLS handshake with the client certificate, sends one
keep-alive GET request and reads the whole response, so the server has finished the
handshake and served the connection once. The script then prints
`ready OPENED FAILED SECONDS` on stdout and keeps every open connection until SIGTERM
or SIGINT arrives, or until --hold-secs have passed, whichever comes first.

Python 3.11 standard library only.
"""

import argparse
import asyncio
import ipaddress
import resource
import signal
import ssl
import sys
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address of the server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="client certificate, PEM")
    parser.add_argument("--key", required=True, help="client key, PEM")
    parser.add_argument("--ca", required=True, help="CA bundle for the server certificate")
    parser.add_argument("--path", required=True, help="path of the GET request sent once")
    parser.add_argument("--count", type=int, required=True, help="connections to open")
    parser.add_argument(
        "--concurrency", type=int, default=100, help="handshakes in progress at once"
    )
    parser.add_argument(
        "--timeout-secs", type=float, default=30.0, help="time allowed per connection"
    )
    parser.add_argument(
        "--hold-secs", type=float, default=300.0, help="maximum time to hold the connections"
    )
    return parser.parse_args()


def require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"hold_connections.py: {host} is not a loopback address; refusing to connect")


def raise_file_limit(count: int) -> None:
    """Raise the soft limit of open files to the hard limit, which must fit `count`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + 64
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(
            f"hold_connections.py: the hard limit of open files is {hard}, "
            f"but {count} connections need about {needed}; raise it with `ulimit -Hn`"
        )
    if soft == resource.RLIM_INFINITY or soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def read_content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    raise ValueError("response has no Content-Length header")


async def open_connection(
    args: argparse.Namespace,
    context: ssl.SSLContext,
    limiter: asyncio.Semaphore,
    writers: list,
    failures: list,
) -> None:
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    async with limiter:
        try:
            async with asyncio.timeout(args.timeout_secs):
                reader, writer = await asyncio.open_connection(
                    args.host, args.port, ssl=context, server_hostname=args.host
                )
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status_line = head.split(b"\r\n", 1)[0]
                if b" 200 " not in status_line:
                    writer.close()
                    raise ValueError(f"unexpected status line {status_line!r}")
                await reader.readexactly(read_content_length(head))
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError, ValueError) as error:
            failures.append(repr(error))
            return
    writers.append(writer)


async def hold(args: argparse.Namespace) -> int:
    context = ssl.create_default_context(cafile=args.ca)
    context.load_cert_chain(args.cert, args.key)

    writers: list = []
    failures: list = []
    limiter = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()
    await asyncio.gather(
        *(open_connection(args, context, limiter, writers, failures) for _ in range(args.count))
    )
    elapsed = time.monotonic() - started
    if failures:
        print(f"hold_connections.py: first failure: {failures[0]}", file=sys.stderr)
    print(f"ready {len(writers)} {len(failures)} {elapsed:.1f}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.hold_secs)
    except TimeoutError:
        print("hold_connections.py: --hold-secs elapsed, closing", file=sys.stderr)
    for writer in writers:
        writer.close()
    return 0 if not failures else 1


def main() -> int:
    args = parse_args()
    require_loopback(args.host)
    raise_file_limit(args.count)
    return asyncio.run(hold(args))


if __name__ == "__main__":
    sys.exit(main())
