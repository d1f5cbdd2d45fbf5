"""What /proc says about a process tree (gunicorn's master and its workers): memory, CPU time."""

import os
import threading
from typing import Optional

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(root_pid: int) -> list:
    """`root_pid` and all its descendants that are alive now."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name may hold spaces and parentheses: split after its last ')'.
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
        children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root_pid]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: list) -> float:
    """User plus system CPU time the processes have used so far (threads included)."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
    return ticks / CLOCK_TICKS


def resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


class PeakResidentMemory:
    """Samples a process tree's resident memory in a thread while the block runs.

        with PeakResidentMemory(pid) as memory:
            ...
        memory.growth_bytes  # peak minus what it used when the block began
    """

    def __init__(self, root_pid: int, interval_seconds: float = 0.01):
        self.root_pid = root_pid
        self.interval_seconds = interval_seconds
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self._pids: list = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def growth_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes

    def __enter__(self) -> "PeakResidentMemory":
        # The tree is read once: listing /proc at every sample would cost more than the sample.
        self._pids = process_tree(self.root_pid)
        self.baseline_bytes = self.peak_bytes = self._resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._record()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self._record()

    def _record(self) -> None:
        self.peak_bytes = max(self.peak_bytes, self._resident_bytes())

    def _resident_bytes(self) -> int:
        return sum(resident_bytes(pid) for pid in self._pids)
