"""ferricorn: a pre-fork HTTP/1.1 WSGI server written in Rust.

Installed with pip, it gives the ``ferricorn`` command (``ferricorn.cli``),
which runs the server inside this virtualenv's interpreter::

    ferricorn --bind 0.0.0.0:8000 --workers 9 app.wsgi
"""

__all__ = ["__version__"]


def __getattr__(name):
    # Lazily, so that importing ferricorn.cli does not load the extension
    # module before cli.main has checked the Python version.
    if name == "__version__":
        from ferricorn._ferricorn import VERSION

        return VERSION
    raise AttributeError("module 'ferricorn' has no attribute %r" % name)
