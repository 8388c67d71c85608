"""One renderer from model objects to JSON and to tables.

Every result is plain data (frozen dataclasses). :mod:`portkit.render.jsonout` turns any of
them into JSON-ready values; :mod:`portkit.render.table` lays rows out as an aligned text
table (ANSI colour only on a TTY). Per-domain modules (``render/sockets.py``, ...) decide
which fields go in which column and build the JSON document, and nothing else renders.
"""
