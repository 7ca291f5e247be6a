#!/usr/bin/env python
"""Mutation check: each curated mutant breaks one paper concept in the package; the fast tests that pin
that concept must then fail. A mutant whose tests still pass is a *survivor*: the concept is not pinned.

    python tools/mutation_check.py                 # every mutant (make mutation)
    python tools/mutation_check.py --list          # names, concepts and tests, nothing run
    python tools/mutation_check.py --only mnc_     # mutants whose name starts with mnc_
    python tools/mutation_check.py -j 2            # two mutants at a time

The mutants are the ``MUTANTS`` lists of ``tests/mutants/*.py``. Each one replaces a snippet that occurs
exactly once in a file of ``projects/cascades/`` and names the tests that must catch it. The working
tree is never edited: every worker mutates its own copy of the package (compiled extension included)
and runs pytest with that copy first on ``PYTHONPATH``. Before any mutant, the named tests must pass on
the unmutated copy. Exit status 0 only when every mutant is killed.
"""

import argparse
import concurrent.futures
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join("projects", "cascades")
sys.path.insert(0, os.path.join(ROOT, "tests"))

from mutants import Mutant  # noqa: E402  (tests/mutants/__init__.py)


def load_mutants() -> List[Mutant]:
    folder = os.path.join(ROOT, "tests", "mutants")
    mutants: List[Mutant] = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"mutants.{name[:-3]}", os.path.join(folder, name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        mutants += module.MUTANTS
    names = [m.name for m in mutants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"mutation_check: duplicate mutant names: {', '.join(duplicates)}")
    return mutants


def check_mutant(m: Mutant) -> str:
    """The mutated source of ``m``'s file; fails when the snippet is gone or ambiguous (a stale mutant)."""
    if not m.path.startswith(PACKAGE + "/"):
        raise SystemExit(f"mutation_check: {m.name}: path {m.path!r} must be under {PACKAGE}/")
    with open(os.path.join(ROOT, m.path)) as f:
        source = f.read()
    count = source.count(m.old)
    if count != 1:
        raise SystemExit(f"mutation_check: {m.name}: its snippet occurs {count} times in {m.path} (expected once); "
                         f"update the mutant to the current code:\n{m.old}")
    mutated = source.replace(m.old, m.new)
    compile(mutated, m.path, "exec")  # a mutant must be valid Python: a syntax error proves nothing
    return mutated


def copy_package(dest: str) -> str:
    """A private copy of the package (with its compiled extension) under ``dest``; returns its parent."""
    shutil.copytree(os.path.join(ROOT, PACKAGE), os.path.join(dest, "cascades"),
                    ignore=shutil.ignore_patterns("__pycache__", "model_zoo/configs"))
    return dest


def run_pytest(tests: List[str], pythonpath: str, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=pythonpath + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, returncode=-1, stdout=str(e.stdout or ""), stderr="timeout")


def _tail(proc: subprocess.CompletedProcess, lines: int = 15) -> str:
    return "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-lines:])


class Worker:
    """One private package copy; mutates one file at a time and restores it afterwards."""

    def __init__(self, scratch: str, timeout: float):
        self.pythonpath = copy_package(scratch)
        self.timeout = timeout

    def _target(self, m: Mutant) -> str:
        return os.path.join(self.pythonpath, "cascades", os.path.relpath(m.path, PACKAGE))

    def run(self, m: Mutant, mutated: str) -> Dict:
        target = self._target(m)
        with open(target) as f:
            original = f.read()
        start = time.perf_counter()
        try:
            with open(target, "w") as f:
                f.write(mutated)
            proc = run_pytest(m.tests, self.pythonpath, self.timeout)
        finally:
            with open(target, "w") as f:
                f.write(original)
        # pytest: 1 = some test failed (killed), 0 = all passed (survived); anything else (collection
        # error, timeout, no tests) is an error of the mutant or of its test list, not a kill.
        outcome = {0: "SURVIVED", 1: "killed"}.get(proc.returncode, f"ERROR (pytest exit {proc.returncode})")
        return {"mutant": m, "outcome": outcome, "seconds": time.perf_counter() - start, "log": _tail(proc)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutants whose name starts with this prefix")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at a time (default 1)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per pytest run")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")

    mutants = [m for m in load_mutants() if m.name.startswith(args.only)]
    if not mutants:
        raise SystemExit(f"mutation_check: no mutant name starts with {args.only!r}")
    if args.list:
        for m in mutants:
            print(f"{m.name}\n    concept: {m.concept}\n    {m.path}; tests: {' '.join(m.tests)}")
        return 0
    sources = {m.name: check_mutant(m) for m in mutants}

    with tempfile.TemporaryDirectory(prefix="mutation-check-") as scratch:
        workers = [Worker(os.path.join(scratch, f"w{i}"), args.timeout) for i in range(args.jobs)]
        tests = sorted({t for m in mutants for t in m.tests})
        print(f"Baseline: {len(tests)} test selections on the unmutated package ...", flush=True)
        base = run_pytest(tests, workers[0].pythonpath, args.timeout * 2)
        if base.returncode != 0:
            print(_tail(base, 40))
            raise SystemExit("mutation_check: the mutants' tests fail on the unmutated package; fix them first")

        free = list(workers)
        results = []
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            pending = {}
            queue = list(mutants)
            while queue or pending:
                while queue and free:
                    m, w = queue.pop(0), free.pop()
                    pending[pool.submit(w.run, m, sources[m.name])] = w
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    free.append(pending.pop(future))
                    r = future.result()
                    results.append(r)
                    print(f"[{len(results)}/{len(mutants)}] {r['outcome']:<8} {r['mutant'].name} "
                          f"({r['seconds']:.0f} s)", flush=True)
                    if r["outcome"] != "killed":
                        print("    " + r["log"].replace("\n", "\n    "))

    bad = [r for r in results if r["outcome"] != "killed"]
    print(f"\n{len(results) - len(bad)} of {len(results)} mutants killed; "
          f"{sum(r['outcome'] == 'SURVIVED' for r in results)} survived, "
          f"{sum(r['outcome'].startswith('ERROR') for r in results)} errors")
    for r in bad:
        print(f"  {r['outcome']}: {r['mutant'].name}: {r['mutant'].concept}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
