"""cpuprofile_top.py: self time per function from a V8 profile, idle left out, idle threads skipped."""
import contextlib
import io
import json
import os
import tempfile
import unittest

from cpuprofile_top import top


def profile(samples: list[tuple[int, int]]) -> dict:
    frame = lambda name, url: {"functionName": name, "url": url, "lineNumber": 9}  # noqa: E731
    return {
        "nodes": [
            {"id": 1, "callFrame": frame("(idle)", "")},
            {"id": 2, "callFrame": frame("schedule", "file:///k/src/executor/scheduler.ts")},
            {"id": 3, "callFrame": frame("", "file:///k/src/executor/step_pipeline.ts")},
        ],
        "samples": [s for s, _ in samples],
        "timeDeltas": [d for _, d in samples],
    }


class TopTest(unittest.TestCase):
    def run_top(self, p: dict) -> str:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.cpuprofile")
            with open(path, "w") as f:
                json.dump(p, f)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                top(path)
            return out.getvalue()

    def test_self_time_ranked_without_idle(self):
        text = self.run_top(profile([(2, 3000), (3, 1000), (2, 3000), (1, 500)]))
        lines = text.splitlines()
        self.assertIn("7 ms busy, 0 ms idle", lines[0])
        self.assertRegex(lines[1], r"6\.0 ms\s+85\.7%\s+schedule\s+scheduler\.ts:10")
        self.assertRegex(lines[2], r"1\.0 ms\s+14\.3%\s+\(anonymous\)\s+step_pipeline\.ts:10")
        self.assertEqual(len(lines), 3)

    def test_a_thread_that_mostly_waited_prints_nothing(self):
        self.assertEqual(self.run_top(profile([(1, 100000), (2, 10)])), "")


if __name__ == "__main__":
    unittest.main()
