"""One lead-API request, repeated in this process: its mean wall time and, optionally,
cProfile's costliest functions. The finer comparison beside bench/reads.py, whose
percentiles scatter between runs by as much as a few milliseconds of CPU.

    .venv/bin/python bench/list_profile.py                                   # the hot-MQL list, 100 requests
    .venv/bin/python bench/list_profile.py --url '/api/v1/leads?ordering=-created_at' --profile 40

The database must hold bench/rescore.py's data, migrated (bench/reads.py does both);
the bench's people get new tokens (``reads.people``), nothing else is written.
Results: bench/RESULTS.md, "Lists, part 3".
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `leadflow` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_env, django_setup, speed_probe  # noqa: E402
from bench.reads import BROKER_URL, DATABASE_URL  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DATABASE_URL)
    parser.add_argument("--url", default="/api/v1/leads?stage=mql&ordering=-score")
    parser.add_argument("--reps", type=int, default=100, help="timed requests (after 20 warm-ups)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's N costliest (cumulative)")
    args = parser.parse_args()
    django_setup(bench_env(args.database_url, BROKER_URL))
    from django.test import Client

    from bench.reads import people

    _user, secret = people()["marketer"]
    client = Client(SERVER_NAME="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    for _ in range(20):
        assert client.get(args.url).status_code == 200
    print(f"speed probe {speed_probe():.0f} ms")
    began = time.perf_counter()
    for _ in range(args.reps):
        client.get(args.url)
    print(f"{args.url}: {(time.perf_counter() - began) * 1000 / args.reps:.2f} ms per request (mean of {args.reps})")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.reps):
            client.get(args.url)
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
