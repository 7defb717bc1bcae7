"""A TRMClient used across os.fork(): the child's calls answer within their deadlines.

gRPC's channel from the parent, with a stream in flight in another thread at the fork, blocked the child's
first call for good (past a 3 s deadline); gunicorn's and multiprocessing's fork workers do just that with a
client made at import.
"""

from __future__ import annotations

import subprocess
import sys

from sdk_test_support import GRID_MODEL, N_SUP, SUDOKU, TEXT_MODEL

CHILD_DEADLINE_S = 5
CHILD_ALARM_S = 20  # a child still blocked then is killed by SIGALRM: exit status -14

SCRIPT = f"""
import os, signal, sys, threading, time
from trm_client import Budget, TRMClient

client = TRMClient(sys.argv[1], timeout_s=30)
client.reason({TEXT_MODEL!r}, "warm the channel up")

def stream_without_end():
    while True:
        for _ in client.reason_stream({GRID_MODEL!r}, grid={SUDOKU!r}, budget=Budget(max_steps={N_SUP},
                                                                                    min_steps={N_SUP})):
            pass

threading.Thread(target=stream_without_end, daemon=True).start()
time.sleep(0.5)
children = []
for _ in range(3):
    child = os.fork()
    if child == 0:
        signal.alarm({CHILD_ALARM_S})
        steps = list(client.reason_stream({TEXT_MODEL!r}, "wake me up at seven", timeout_s={CHILD_DEADLINE_S}))
        answer = client.reason({TEXT_MODEL!r}, "play some jazz", timeout_s={CHILD_DEADLINE_S})
        os._exit(0 if steps[-1].final and answer.answer.label else 3)
    children.append(child)
print([os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) for child in children])
client.reason({TEXT_MODEL!r}, "the parent's own client still answers")
print("parent answered")
"""


def test_a_client_used_across_fork_answers_in_the_children_and_the_parent(server) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, server.target], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.stdout.splitlines() == ["[0, 0, 0]", "parent answered"], done.stderr[-2000:]
