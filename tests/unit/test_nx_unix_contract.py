"""The Unix-socket launcher's contract with nx-27017 internals (signaling/store/nx_unix.py):
fails loudly when an nx-27017 upgrade changes them."""

from __future__ import annotations

import inspect

from nx_27017.handler import NeoSQLiteHandler
from nx_27017.server import handle_client


def test_handle_client_takes_reader_writer_handler() -> None:
    assert inspect.iscoroutinefunction(handle_client)
    assert list(inspect.signature(handle_client).parameters) == ["reader", "writer", "handler"]


def test_handler_accepts_a_data_dir_and_journal_mode() -> None:
    params = inspect.signature(NeoSQLiteHandler.__init__).parameters
    assert {"db_path", "journal_mode", "data_dir"} <= set(params)
    assert callable(getattr(NeoSQLiteHandler, "close_all", None))
