"""ferricorn: a pre-fork HTTP/1.1 WSGI server written in Rust.

Installed with pip, it gives the ``ferricorn`` command (``ferricorn.cli``),
which runs the server inside this virtualenv's interpreter::

    ferricorn --bind 0.0.0.0:8000 --workers 9 app.wsgi
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
