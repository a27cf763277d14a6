"""CPU-bound work handed to `off_the_hub` leaves the eventlet hub serving the other greenthreads.

Run in a child interpreter, monkey-patched like a service process: a ticker greenthread notes the
longest gap between its 10-ms ticks while another greenthread burns 1.2 s of CPU, once inline (the
gap is the whole burn: the check can fail) and once through `off_the_hub`.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import ROOT

CHILD = """
import eventlet
eventlet.monkey_patch()
import json, time
from sportello.edge.offload import off_the_hub

def burn(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n

def longest_gap(offload):
    gaps, stop = [], []
    def ticker():
        last = time.perf_counter()
        while not stop:
            eventlet.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
    thread = eventlet.spawn(ticker)
    eventlet.sleep(0.05)
    result = off_the_hub(burn, 1.2) if offload else burn(1.2)
    stop.append(True)
    thread.wait()
    assert result > 0
    return max(gaps)

print(json.dumps({"inline": longest_gap(False), "offloaded": longest_gap(True)}))
"""


def test_cpu_work_off_the_hub_does_not_stall_the_other_greenthreads() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    gaps = json.loads(done.stdout.strip().splitlines()[-1])
    assert gaps["inline"] >= 1.0, gaps  # the whole burn: nothing else ran
    assert gaps["offloaded"] < 0.3, gaps  # the hub kept ticking (a busy 2-core machine included)
