"""``provision migrate``: copy local Supervisely storage into a grant's buckets."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from provision.actions.common import Notify, _quiet, data_grant, require
from provision.errors import PartialFailure
from provision.state import StateStore


# ---- migrate ----------------------------------------------------------------------------------------------------
def migrate(store: StateStore, data_path: Path, *, grant: str | None = None, dry_run: bool = False,
            concurrency: int | None = None, progress: Any = None, notify: Notify = _quiet) -> Any:
    """`provision.migrate.migrate` on the environment, under its lock.

    Args:
        store: the environment (must exist).
        data_path: Supervisely's DATA_PATH (made absolute).
        grant: the grant whose buckets receive the files (``--grant``; default: the only grant, else the one
            `render-env` chose as instance storage).
        dry_run, concurrency, progress: as in `provision.migrate.migrate` (None: its default).
        notify: told how to resume when the run is interrupted.

    Returns:
        The `provision.migrate.MigrateReport`; `migrate_failed` turns its failures into an error.

    Raises:
        BadInput: nothing provisioned; what `provision.migrate.migrate` raises. KeyboardInterrupt is re-raised.
    """
    from provision.migrate import migrate as run

    require(store)
    given = {"concurrency": concurrency, "progress": progress}
    kwargs: dict[str, Any] = {"dry_run": dry_run, **{k: v for k, v in given.items() if v is not None}}
    with store.lock():
        state = store.load()
        record = data_grant(state, grant, "migrate")
        started = datetime.now(timezone.utc)
        try:  # the checksum cache is migrate's default, `migrate_cache.cache_path(env)` (destroy removes it)
            report = run(record, data_path.absolute(), **kwargs)
            if not dry_run and not report.failures:
                record.migrated[str(data_path.absolute())] = started
                store.save(state)
            return report
        except KeyboardInterrupt:
            notify("interrupted: re-run the same command to resume (what was uploaded is skipped)")
            raise


def migrate_failed(report: Any, data_path: Path) -> PartialFailure | None:
    """The `PartialFailure` (exit 4) for a migrate run whose uploads failed, naming the first; None when none did
    (or in a dry run)."""
    failures = report.failures
    if not failures or report.dry_run:
        return None
    bucket, first = failures[0]
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    return PartialFailure(f"{len(failures)} of {report.total('files')} files were not uploaded: "
                          f"{bucket}/{first.key} ({first.error}){more}",
                          f"fix the cause and re-run `provision migrate --env {report.env} --data-path "
                          f"{data_path}`; files already uploaded are skipped")
