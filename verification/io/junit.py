"""JUnit XML of a run (``iclkd verify --junit-xml PATH``): the verdicts in the format CI systems read.

One ``<testsuite>`` inside ``<testsuites>``, one ``<testcase>`` per check (real-model checks included),
valid against the common JUnit schema (the Jenkins xUnit plugin's ``junit-10.xsd``, which GitLab and
GitHub test reporters read too):

=============  ===========================================================================
status         testcase
=============  ===========================================================================
holds          passes
survives       passes (a conjecture that no case refuted)
refuted        passes (the suite's finding); the counterexample is in ``<system-out>``
violated       ``<failure>`` with the check's summary as its message
error          ``<error>`` with the exception's summary, the traceback as its text
inconclusive   ``<skipped>`` with the summary (no verdict either way)
=============  ===========================================================================

Every testcase has ``classname="iclkd.<kind>"`` (``iclkd.theorem``, ...), ``name`` = the check id,
``time`` in seconds, and the summary, worst value, tolerance and tightness in ``<system-out>``.
The self-test (``--self-test --junit-xml``) writes one testcase per mutant instead
(``classname="iclkd.self-test.<check id>"``, ``name`` = the mutant): a mutant that escaped is a failure.

Like :mod:`verification.io.html`, it reads the report data only (the JSON report's dict).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any


def _seconds(value: Any) -> str:
    """Seconds in the schema's SUREFIRE_TIME form (digits and a point, no exponent)."""
    try:
        return f"{max(float(value), 0.0):.3f}"
    except (TypeError, ValueError):
        return "0.000"


def _text(value: Any) -> str:
    """Text that XML 1.0 can carry: the control characters it forbids are dropped."""
    text = str(value)
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def _check_output(check: Mapping) -> str:
    lines = [f"status: {check.get('status')}", f"summary: {check.get('summary', '')}",
             f"worst: {check.get('worst')} ({check.get('worst_label', '')})",
             f"tolerance: {check.get('tolerance')} ({check.get('tolerance_reason', '')})",
             f"tightness: {check.get('tightness')}", f"cases: {check.get('cases')}"]
    if check.get("counterexample"):
        lines.append("counterexample: " + json.dumps(check["counterexample"], allow_nan=True))
    if check.get("certificate"):
        cert = check["certificate"]
        lines.append(f"certificate: {cert.get('status')} at {cert.get('precision_bits')} bits: {cert.get('reason', '')}")
    return "\n".join(lines)


def _suite(name: str, cases: list[ET.Element], properties: Mapping[str, Any], time: float) -> ET.Element:
    suite = ET.Element("testsuite", {
        "name": name, "tests": str(len(cases)),
        "failures": str(sum(c.find("failure") is not None for c in cases)),
        "errors": str(sum(c.find("error") is not None for c in cases)),
        "skipped": str(sum(c.find("skipped") is not None for c in cases)),
        "time": _seconds(time)})
    props = ET.SubElement(suite, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", {"name": str(key), "value": _text(value)})
    suite.extend(cases)
    return suite


def _document(suite: ET.Element) -> str:
    root = ET.Element("testsuites", {key: suite.get(key) for key in ("name", "tests", "failures", "errors", "time")})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _properties(report: Mapping) -> dict[str, Any]:
    props = {"profile": report.get("profile"), "seed": report.get("seed")}
    props.update({f"version.{k}": v for k, v in (report.get("versions") or {}).items()})
    return props


def verify_junit(report: Mapping) -> str:
    """The JUnit XML of ``iclkd verify``'s report dict (module docstring: which status becomes what)."""
    cases = []
    for check in report.get("checks", []):
        case = ET.Element("testcase", {"classname": f"iclkd.{check.get('kind', 'check')}", "name": str(check["id"]),
                                       "time": _seconds(check.get("elapsed_s", 0.0))})
        status, summary = check.get("status"), _text(check.get("summary", ""))
        if status == "violated":
            ET.SubElement(case, "failure", {"type": "violated", "message": summary}).text = summary
        elif status == "error":
            traceback = (check.get("figures") or {}).get("traceback", summary)
            ET.SubElement(case, "error", {"type": "error", "message": summary}).text = _text(traceback)
        elif status == "inconclusive":
            ET.SubElement(case, "skipped", {"type": "inconclusive", "message": summary})
        ET.SubElement(case, "system-out").text = _text(_check_output(check))
        cases.append(case)
    total = sum(float(c.get("elapsed_s") or 0.0) for c in report.get("checks", []))
    return _document(_suite("iclkd verify", cases, _properties(report), total))


def self_test_junit(report: Mapping, outcomes: Sequence[Mapping] | None = None) -> str:
    """The JUnit XML of ``iclkd verify --self-test``: one testcase per mutant, an escaped mutant a failure."""
    cases = []
    for o in outcomes if outcomes is not None else report.get("mutants", []):
        case = ET.Element("testcase", {"classname": f"iclkd.self-test.{o['check_id']}", "name": str(o["mutant"]),
                                       "time": "0.000"})
        verdict = f"{o.get('baseline_status')} -> {o.get('mutant_status')}: {o.get('description', '')}"
        if not o.get("caught"):
            ET.SubElement(case, "failure", {"type": "mutant escaped", "message": _text(verdict)}).text = _text(verdict)
        ET.SubElement(case, "system-out").text = _text(verdict)
        cases.append(case)
    return _document(_suite("iclkd verify --self-test", cases, _properties(report), 0.0))
