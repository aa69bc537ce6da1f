"""Checks of tools/quant_study_table.py (formats, verdicts against the issue's bounds, the table); no torch
needed:

    python3 -m unittest discover -s tools -p 'test_*.py'
"""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import quant_study_table as qst  # noqa: E402


def write_results(d, name, perplexity=None, rc="0", na=None, err=""):
    def put(ext, body):
        with open(os.path.join(d, name + ext), "w") as f:
            f.write(body)
    if na is not None:
        put(".na", na)
        return
    put(".rc", rc)
    put(".err", err)
    put(".seconds", "3")
    put(".json", json.dumps({"perplexity": perplexity, "tokens": 100, "scoredTokens": 99}) if perplexity else "")


class Table(unittest.TestCase):
    def test_formats_give_awq_the_calibration_text(self):
        flags = dict(qst.format_flags("cal.txt"))
        self.assertEqual(flags["int4-awq"], ["--quantize", "int4-awq", "--calibration", "cal.txt"])
        self.assertEqual(flags["fp8-static"], ["--quantize", "fp8-static", "--calibration", "cal.txt"])
        self.assertEqual(flags["bf16"], [])
        self.assertEqual(dict(qst.format_flags())["int4-awq"], ["--quantize", "int4-awq"])

    def test_verdicts_against_the_issues_bounds(self):
        with tempfile.TemporaryDirectory() as d:
            write_results(d, "bf16", 10.0)
            write_results(d, "fp8", 10.09)  # +0.9%: within 1%
            write_results(d, "int8-wo", 10.11)  # +1.1%: over
            write_results(d, "int4-wo", 10.4)
            write_results(d, "int4-awq", 10.3)
            write_results(d, "fp8-static", 10.05)
            write_results(d, "fp8-kv", na="error: unknown option '--kv-cache-dtype'")
            rows, awq_v, _ = qst.verdicts(d)
            v = {r[0]: r[5] for r in rows}
            self.assertEqual(v, {"bf16": "reference", "fp8": "PASS", "int8-wo": "FAIL", "int4-wo": "PASS",
                                 "int4-awq": "PASS", "fp8-static": "PASS", "fp8-kv": "not available"})
            self.assertEqual(awq_v, "PASS")
            md = qst.markdown(rows, awq_v, ["note"])
            self.assertIn("| int8-wo | `--quantize int8-wo` | 10.1100 | +1.10% | ≤ +1.00% | FAIL |", md)
            self.assertIn("| fp8-kv | `--kv-cache-dtype fp8` | — | — | ≤ +0.50% | not available |", md)
            lines = qst.summary_lines(rows, awq_v, "x")
            self.assertEqual(lines[-1], "quant-study: 4 PASS, 1 FAIL, 1 not available, 0 failed; AWQ better than RTN: PASS")

    def test_awq_worse_than_rtn_and_failures(self):
        with tempfile.TemporaryDirectory() as d:
            write_results(d, "bf16", 10.0)
            write_results(d, "int4-wo", 10.2)
            write_results(d, "int4-awq", 10.3)
            write_results(d, "fp8", rc="124")
            write_results(d, "int8-wo", rc="2", err="kiln: SomeError: bad\n")
            rows, awq_v, _ = qst.verdicts(d)
            v = {r[0]: (r[5], r[3].get("why")) for r in rows}
            self.assertEqual(awq_v, "FAIL")
            self.assertEqual(v["fp8"], ("failed", "timed out"))
            self.assertEqual(v["int8-wo"], ("failed", "exit 2: kiln: SomeError: bad"))
            self.assertEqual(v["fp8-kv"], ("failed", "did not run"))

    def test_no_reference(self):
        with tempfile.TemporaryDirectory() as d:
            write_results(d, "bf16", rc="1")
            write_results(d, "int8-wo", 10.0)
            rows, _, _ = qst.verdicts(d)
            v = {r[0]: r[5] for r in rows}
            self.assertEqual((v["bf16"], v["int8-wo"]), ("failed", "no reference"))


if __name__ == "__main__":
    unittest.main()
