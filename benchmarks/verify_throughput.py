"""Verifier throughput on this machine: HumanEval gold programs and MATH-500 gold answers per second, through the
scoring runner (worker processes, per-call deadlines), each next to a peer measured in the same run:

- code: our sandbox (namespaces, chroot, limits, call protocol) vs. a bare ``python -c program+tests``
  subprocess per item (no isolation: the usual quick-and-unsafe harness);
- math: our ``math_answer`` (strict extraction + math-verify) vs. plain ``math_verify.parse/verify`` on the
  completion.

    python benchmarks/verify_throughput.py --data-dir ../shared/datasets [--workers 2]

A second table shows how our throughput scales from 1 worker process to ``--workers``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from rlreason.scoring import Scorer
from rlreason.tasks import get_task


def _bare_humaneval(args: tuple[dict, str]) -> bool:
    record, gold = args
    program = record["prompt"] + gold + "\n" + record["test"] + f"\ncheck({record['entry_point']})\n"
    return subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=10).returncode == 0


def _plain_math_verify(args: tuple[str, str]) -> bool:
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    completion, gold = args
    return bool(verify(parse(f"${gold}$", parsing_timeout=None), parse(completion, parsing_timeout=None),
                       timeout_seconds=None))


def _rate(n: int, fn) -> tuple[float, float]:
    start = time.perf_counter()
    passed = fn()
    return n / (time.perf_counter() - start), passed / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows, scaling = [], []
    for task, peer_name, peer in (("humaneval", "bare subprocess, no isolation", _bare_humaneval),
                                  ("math500", "plain math-verify on the completion", _plain_math_verify)):
        bench = get_task(task)
        records = bench.records("test", args.data_dir)
        problems = [bench.convert(r, i) for i, r in enumerate(records)]
        golds = [bench.gold(r) for r in records]
        items = list(zip(golds, problems))
        for workers in sorted({1, args.workers}):
            with Scorer(workers=workers) as scorer:
                scorer.score(items[: 4 * workers])  # warm the workers (imports), as for the peer
                ours = _rate(len(golds), lambda: sum(r.correct for r in scorer.score(items)))
            scaling.append((task, workers, ours[0]))
        peer_items = [(r, g) for r, g in zip(records, golds)] if task == "humaneval" else \
            [(g, str(p.reference)) for g, p in zip(golds, problems)]
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(peer, peer_items[:4]))  # warm the workers (imports)
            theirs = _rate(len(golds), lambda: sum(pool.map(peer, peer_items, chunksize=4)))
        rows.append((task, len(golds), ours, peer_name, theirs))
    print(f"\n{'benchmark':10} {'items':>5} {'ours/s':>8} {'ours pass':>9}  {'peer':38} {'peer/s':>8} "
          f"{'peer pass':>9} {'ours/peer':>9}")
    for task, n, (ours_rate, ours_pass), peer_name, (peer_rate, peer_pass) in rows:
        print(f"{task:10} {n:5d} {ours_rate:8.1f} {ours_pass:9.3f}  {peer_name:38} {peer_rate:8.1f} {peer_pass:9.3f} "
              f"{ours_rate / peer_rate:9.2f}")
    print(f"\n{'benchmark':10} {'workers':>7} {'items/s':>8} {'vs 1 worker':>11}")
    base = {task: rate for task, workers, rate in scaling if workers == 1}
    for task, workers, rate in scaling:
        print(f"{task:10} {workers:7d} {rate:8.1f} {rate / base[task]:11.2f}")


if __name__ == "__main__":
    main()

