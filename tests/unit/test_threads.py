"""The daemon's threads carry their names into the kernel (top -H, /proc/PID/task/TID/comm)."""

from __future__ import annotations

import threading
from pathlib import Path

from bootstrapd.threads import name_os_thread


def test_a_thread_is_named_for_the_kernel() -> None:
    seen: list[str] = []

    def run() -> None:
        name_os_thread()
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    thread = threading.Thread(target=run, name="lease-checkpoint-and-more")
    thread.start()
    thread.join()
    assert seen == ["lease-checkpoin"]  # 15 bytes: the kernel's limit
