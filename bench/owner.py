"""Which process owns a run, and whether it is gone: the evidence `bench run` needs to tell a run that died
(SIGKILL, the OOM killer) from one that still runs, without any tracking store.

Every run records its owner (host, pid, process start time) in `owner.json` of its report folder and in tags of
its MLflow runs (bench.track). Only the same host can judge: a run of another host is never declared dead.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from datetime import datetime
from pathlib import Path

from bench.files import write_atomically

log = logging.getLogger(__name__)

OWNER_FILE = "owner.json"  # in a report folder: the process that writes it (see owner())
START_SLACK_S = 2.0  # start times read through psutil and /proc may differ by rounding


def _process(pid: int) -> tuple[bool, float | None] | None:
    """(is a zombie, start time in seconds since the epoch or None) of process `pid`; None when there is no such
    process. Whatever cannot be read counts as a live process: a run is marked dead only on evidence."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            return process.status() == psutil.STATUS_ZOMBIE, process.create_time()
        except psutil.ZombieProcess:  # a subclass of NoSuchProcess: it exited, its parent has not reaped it
            return True, None
        except psutil.NoSuchProcess:
            return None
        except psutil.Error:  # access denied: it exists
            return False, None
    if Path("/proc/self/stat").is_file():  # Linux without psutil: what psutil reads
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return False, None
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces and ")"
        boot = next(
            (
                float(line.split()[1])
                for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime")
            ),
            None,
        )
        started = None if boot is None else boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return fields[0] == "Z", started
    if os.name == "posix":  # no start time here, so a reused pid looks alive
        try:
            os.kill(pid, 0)  # signal 0 only asks whether the process exists
        except ProcessLookupError:
            return None
        except OSError:
            pass
    return False, None  # elsewhere (os.kill would terminate on Windows): unknown, so alive


def owner() -> dict[str, str]:
    """This process as the owner of a run: host name, pid and start time (so that a reused pid is not taken for
    the owner)."""
    process = _process(os.getpid())
    started = process[1] if process else None
    return {
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "started": "" if started is None else f"{started:.2f}",
    }


def owner_gone(recorded: dict[str, str]) -> str | None:
    """Why the process `recorded` by owner() on this host is gone, or None when it may still run."""
    try:
        pid = int(recorded.get("pid", ""))
    except ValueError:
        return None
    process = _process(pid)
    if process is None:
        return f"process {pid} no longer exists"
    zombie, started = process
    if zombie:
        return f"process {pid} has exited (not yet reaped by its parent)"
    try:
        then = float(recorded.get("started") or "nan")
    except ValueError:
        then = math.nan
    if started is not None and math.isfinite(then) and abs(started - then) > START_SLACK_S:
        return f"pid {pid} now belongs to another process (started {_when(started)}, the run's at {_when(then)})"
    return None


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).isoformat(sep=" ", timespec="seconds")


def rebuild_hint(results: Path) -> str:
    return f"python -m bench report {results}"


def claim_report_folder(reports_dir: Path, run_id: str) -> None:
    """At the start of a run: one warning per sibling report folder whose run died before writing its report
    (results.json without index.html, its owner process gone), with the command that rebuilds it; then this
    process is recorded as the owner of `reports_dir/run_id`.

    The dead run's folder is only named, not rebuilt: its document may stop in the middle of a method, and whether
    that is worth a report is for its owner to decide."""
    here = socket.gethostname()
    for results in sorted(Path(reports_dir).glob("*/results.json")):
        folder = results.parent
        if folder.name == run_id or (folder / "index.html").exists():
            continue
        try:
            recorded = json.loads((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):  # a run of an older harness, or the file is damaged: cannot tell
            recorded = None
        if not isinstance(recorded, dict):
            log.debug("%s has no report, and no readable %s to tell whether its run is alive", folder, OWNER_FILE)
            continue
        if recorded.get("host") != here:
            log.debug("%s has no report; its run is on host %r, which alone can tell", folder, recorded.get("host"))
            continue
        why = owner_gone(recorded)
        if why is not None:
            log.warning(
                "%s was left without its report (index.html): its run died (%s); rebuild it with: %s",
                folder,
                why,
                rebuild_hint(results),
            )
    mine = Path(reports_dir) / run_id / OWNER_FILE
    write_atomically(mine, lambda tmp: tmp.write_text(json.dumps(owner(), indent=1)))
