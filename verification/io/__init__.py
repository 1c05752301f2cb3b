"""Outputs and reports of a run: the HTML page (:mod:`verification.io.html`) and JUnit XML (:mod:`verification.io.junit`)."""
