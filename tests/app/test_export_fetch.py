"""An export's file stays on the server until the browser has fetched it (issue #17, load test).

Streamlit keeps the bytes a deferred download returns under an id no session references, and the
end of every session's script run collects unreferenced downloads: marked at the first collection,
deleted at the second. Under load (20 sessions, two cores) two other sessions' runs ended before
the browser's GET, and the export failed with a 404. ``widgets.keep_until_fetched`` references the
file per user and format until that user's next export in that format.
"""

from __future__ import annotations

from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from app_pages.widgets import EXPORT_MIME, keep_until_fetched


def _manager() -> MediaFileManager:
    return MediaFileManager(MemoryMediaFileStorage("/media"))


def _click(manager: MediaFileManager, make) -> str:
    """Register ``make`` as a download button's callable and run it as a click does; the file id."""
    placeholder = manager.add_deferred(make, EXPORT_MIME["csv"], "1.(2.0).0", file_name="list.csv")
    url = manager.execute_deferred(placeholder)
    return url.rsplit("/", 1)[-1].split(".")[0]


def _other_sessions_run(manager: MediaFileManager, runs: int = 3) -> None:
    for _ in range(runs):
        manager.remove_orphaned_files()


def test_without_the_reference_streamlit_deletes_the_file_after_two_other_runs():
    # Why the reference exists: if Streamlit ever keeps deferred files itself, this fails and the
    # workaround can go.
    manager = _manager()
    file_id = _click(manager, lambda: b"customer_id\n1\n")
    assert manager.read_file(file_id) is not None
    _other_sessions_run(manager)
    assert manager.read_file(file_id) is None


def test_the_file_survives_other_sessions_runs_until_the_users_next_export():
    manager = _manager()

    def export(data: bytes, username: str):
        return lambda: keep_until_fetched(data, EXPORT_MIME["csv"], "list.csv", username, "csv", manager=manager)

    first = _click(manager, export(b"customer_id\n1\n", "ana"))
    other_user = _click(manager, export(b"customer_id\n3\n", "bo"))
    _other_sessions_run(manager)
    assert manager.read_file(first).content == b"customer_id\n1\n"
    assert manager.read_file(other_user).content == b"customer_id\n3\n"

    second = _click(manager, export(b"customer_id\n2\n", "ana"))
    _other_sessions_run(manager)
    assert manager.read_file(second).content == b"customer_id\n2\n"
    assert manager.read_file(first) is None, "a user's earlier export is released by their next one"
    assert manager.read_file(other_user) is not None, "another user's export is not theirs to release"
