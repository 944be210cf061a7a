"""The live states PCC's HTCondor jobs publish in their ``PccState`` attribute: one
vocabulary for the jobs that write it, the submit templates' initial values and the
reconcile loop that reads it (``condor_q -af PccState`` shows the same words)."""

from __future__ import annotations

import enum

# What `pcc-job boot` exits with when the site refused the boot for good (unknown image, no
# capacity, bad key, ...): the DAG says `RETRY BOOT_<site> N UNLESS-EXIT 42`, so it is not retried.
BOOT_PERMANENT_EXIT = 42


class PccState(enum.StrEnum):
    SCHEDULED = "scheduled"  # a boot job waiting for its time
    BOOTING = "booting"  # `pragma boot` is running
    RETRYING = "retrying"  # a boot attempt failed; DAGMan runs the next
    FAILED = "failed"  # the boot failed for good (last attempt, or a permanent error)
    BOOTED = "booted"  # the boot returned; the cluster's first status is not known yet
    RUNNING = "running"  # every node runs
    DEGRADED = "degraded"  # some nodes run
    LOST = "lost"  # the site reports no nodes for the cluster
    UNREACHABLE = "unreachable"  # the site's monitor cannot reach the site (never an end)
    ENDING = "ending"  # the reservation's end is reached
    STOPPING = "stopping"  # the teardown runs
    STOPPED = "stopped"  # torn down at every site
    TEARDOWN_FAILED = "teardown-failed"  # some site could not be torn down

    @classmethod
    def parse(cls, value: object) -> PccState | None:
        """The state an ad carries, or None when it carries none (or a word PCC never writes)."""
        try:
            return cls(str(value)) if value is not None else None
        except ValueError:
            return None
