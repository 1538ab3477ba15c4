"""A logging handler class of the project's own, named by a logging
configuration in tests/gunicorn_runtime_python.rs (it must be importable
when the configuration is applied, before the app is)."""

import logging


class TaggedFileHandler(logging.FileHandler):
    def emit(self, record):
        record.msg = "tagged " + str(record.msg)
        super().emit(record)
