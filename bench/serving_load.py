"""A small HTTP/1.1 load generator for bench/compare_serving (asyncio, keep-alive connections).

  python3 bench/serving_load.py URL --concurrency 32 --requests 400 PHOTO [PHOTO ...]

Each of `concurrency` connections POSTs raw JPEG bodies (Content-Type: image/jpeg), the photos in
turn, until `requests` answers have come back. Prints one JSON object: requests, errors (non-200 or
transport), seconds, images_per_second, p50_ms, p99_ms (latency of each request, send to last byte).
"""
import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


async def worker(host, port, path, bodies, counter, total, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = counter[0]
            if i >= total:
                return
            counter[0] += 1
            body = bodies[i % len(bodies)]
            head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status_line:
                errors.append(status_line.decode("latin-1").strip())
    finally:
        writer.close()


async def run(url, concurrency, total, photos):
    parts = urlsplit(url)
    bodies = [open(p, "rb").read() for p in photos]
    latencies, errors, counter = [], [], [0]
    start = time.perf_counter()
    await asyncio.gather(*[worker(parts.hostname, parts.port, parts.path + (("?" + parts.query) if parts.query else ""),
                                  bodies, counter, total, latencies, errors) for _ in range(concurrency)])
    seconds = time.perf_counter() - start
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {"requests": len(latencies), "errors": len(errors), "seconds": seconds,
            "images_per_second": len(latencies) / seconds,
            "p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.concurrency, args.requests, args.photos))
    result["concurrency"] = args.concurrency
    print(json.dumps(result))
    if result["errors"]:
        print(f"{result['errors']} requests failed", file=sys.stderr)


if __name__ == "__main__":
    main()
