"""The tools built on the library: the ``minires`` command (``cli.py``), the installation
check (``selftest.py``, ``minires selftest``), the one-minute demo (``demo.py``) and the
course kit (``course/``: student copies and the local grader). Nothing below this
package imports it."""
