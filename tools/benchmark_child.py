"""One benchmark setting per fresh Python process, for the benchmark scripts in tools/ (imported from
beside them): the CPU's peak resident memory is per process, and no setting warms another's caches."""
import json
import subprocess
import sys


def measure_in_child(script, setting, argv):
    """Runs ``script --only setting *argv`` (the script measures that one setting and prints it as JSON
    on its last output line) and returns what it measured. Raises RuntimeError with the exit status and
    the end of the child's stderr when it fails, e.g. killed by the kernel when memory runs out."""
    done = subprocess.run([sys.executable, script, "--only", setting, *argv], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{setting}: the measuring process failed (exit status {done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
