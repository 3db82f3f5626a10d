"""A soak of `finetune serve` for bench/serve_soak: many requests of every kind the API meets, and reloads.

  python3 bench/serve_soak.py URL PID --requests 15000 --phases 3 --concurrency 4 --model NAME PHOTO [PHOTO ...]

--concurrency keep-alive connections (threads) send, in a seeded random order: raw JPEG and PNG bodies, three-part multipart
bodies, junk, truncated JPEGs, a PNG header claiming 10^10 pixels, bodies over --max-body-bytes (the
server must run with --max-body-bytes 2000000), a text body, an unknown model, a bad top_k, a multipart
body with one undecodable part, GET /metrics and /v1/models, POST :reload (0.5%), and requests the client abandons halfway through the body (the socket
closed; no status). The requests are sent in --phases equal phases; at the end of each, every client
connection is closed and, a second later, the server's resident memory (VmRSS) and open file
descriptors are read from /proc/PID. They are also sampled every 250 requests.
Prints one JSON object: samples [[request, seconds, rss_mb, fds]], phase_ends (samples likewise),
statuses {kind: {status: count}}, and unexpected (kinds answered with a status other than the one
the API promises).
"""
import argparse
import http.client
import json
import os
import random
import socket
import struct
import threading
import time
import zlib
from urllib.parse import urlsplit

EXPECTED = {"jpeg": "200", "png": "200", "multipart3": "200", "junk": "400", "truncated_jpeg": "400",
            "png_bomb": "400", "too_large": "413", "text_body": "400", "unknown_model": "404",
            "bad_top_k": "400", "multipart_bad_part": "400", "metrics": "200", "models": "200",
            "reload": "200", "abandoned": "none"}


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png(rng, size=28):
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(size)) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def png_bomb():
    header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + b"junk"


def multipart(parts):
    boundary = "soakBoundary7f3a"
    body = b""
    for i, (content_type, data) in enumerate(parts):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{i}\"; filename=\"p{i}\"\r\n"
                 f"Content-Type: {content_type}\r\n\r\n").encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("pid", type=int)
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--model", default="m")
    parser.add_argument("--kinds", help="comma-separated kinds to send (default: all), to find what grows")
    args = parser.parse_args()
    rng = random.Random(0)
    jpegs = [open(p, "rb").read() for p in args.photos]
    pngs = [grey_png(rng) for _ in range(50)]
    url = urlsplit(args.url)
    predict = f"/v1/models/{args.model}:predict?top_k=3"

    def status_of_process():
        rss = next(int(l.split()[1]) // 1024 for l in open(f"/proc/{args.pid}/status") if l.startswith("VmRSS"))
        return rss, len(os.listdir(f"/proc/{args.pid}/fd"))

    local = threading.local()

    def send(method, path, body=None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        for _ in range(2):
            if local.connection is None:
                local.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
            try:
                local.connection.request(method, path, body=body, headers=headers)
                response = local.connection.getresponse()
                response.read()
                if (response.getheader("Connection") or "").lower() == "close":
                    local.connection.close()
                    local.connection = None
                return str(response.status)
            except (ConnectionError, http.client.HTTPException):
                local.connection.close()
                local.connection = None
        return "transport-error"

    def abandon(rng):
        with socket.create_connection((url.hostname, url.port), timeout=30) as s:
            s.sendall((f"POST {predict} HTTP/1.1\r\nHost: soak\r\nContent-Type: image/jpeg\r\n"
                       f"Content-Length: 100000\r\n\r\n").encode() + rng.choice(jpegs)[:1000])
        return "none"

    kinds = [  # (kind, weight, request(rng))
        ("jpeg", 35, lambda r: send("POST", predict, r.choice(jpegs), "image/jpeg")),
        ("png", 25, lambda r: send("POST", predict, r.choice(pngs), "image/png")),
        ("multipart3", 8, lambda r: send("POST", predict, *multipart(
            [("image/jpeg", r.choice(jpegs)), ("image/png", r.choice(pngs)), ("image/png", r.choice(pngs))]))),
        ("junk", 5, lambda r: send("POST", predict, os.urandom(r.randint(1, 5000)), "image/jpeg")),
        ("truncated_jpeg", 4, lambda r: (lambda j: send("POST", predict, j[: len(j) // 2], "image/jpeg"))(r.choice(jpegs))),
        ("png_bomb", 3, lambda r: send("POST", predict, png_bomb(), "image/png")),
        ("too_large", 2, lambda r: send("POST", predict, b"\xff\xd8" + b"x" * 2_100_000, "image/jpeg")),
        ("text_body", 3, lambda r: send("POST", predict, b"hello", "text/plain")),
        ("unknown_model", 2, lambda r: send("POST", "/v1/models/no-such-model:predict", r.choice(jpegs), "image/jpeg")),
        ("bad_top_k", 2, lambda r: send("POST", f"/v1/models/{args.model}:predict?top_k=abc", r.choice(jpegs), "image/jpeg")),
        ("multipart_bad_part", 3, lambda r: send("POST", predict, *multipart(
            [("image/jpeg", r.choice(jpegs)), ("image/jpeg", b"garbage")]))),
        ("metrics", 4, lambda r: send("GET", "/metrics")),
        ("models", 3, lambda r: send("GET", "/v1/models")),
        ("reload", 0.5, lambda r: send("POST", f"/v1/models/{args.model}:reload")),
        ("abandoned", 0.5, abandon),
    ]
    if args.kinds:
        kinds = [k for k in kinds if k[0] in args.kinds.split(",")]
    weights = [w for _, w, _ in kinds]
    statuses, lock, counter = {}, threading.Lock(), [0]

    def worker(seed, until):
        r = random.Random(seed)
        local.connection = None
        while True:
            with lock:
                if counter[0] >= until:
                    break
                counter[0] += 1
            kind, _, request = r.choices(kinds, weights)[0]
            status = request(r)
            with lock:
                statuses.setdefault(kind, {}).setdefault(status, 0)
                statuses[kind][status] += 1
        if local.connection is not None:
            local.connection.close()

    samples, phase_ends = [], []
    start = time.time()
    next_sample = 0
    for phase in range(args.phases):
        until = args.requests * (phase + 1) // args.phases
        threads = [threading.Thread(target=worker, args=(phase * 1000 + seed, until))
                   for seed in range(args.concurrency)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            with lock:
                done = sum(sum(v.values()) for v in statuses.values())
            if done >= next_sample:
                samples.append([done, round(time.time() - start, 1), *status_of_process()])
                next_sample += 250
            time.sleep(0.05)
        time.sleep(1)  # every connection closed; the server's closes and the abandoned uploads settle
        phase_ends.append([until, round(time.time() - start, 1), *status_of_process()])
    unexpected = {k: v for k, v in statuses.items() if set(v) != {EXPECTED[k]}}
    print(json.dumps({"samples": samples, "phase_ends": phase_ends, "statuses": statuses, "unexpected": unexpected}))


if __name__ == "__main__":
    main()
