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
    def run_top(self, p: dict, window: tuple[float, float] | None = None) -> str:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.cpuprofile")
            with open(path, "w") as f:
                json.dump(p, f)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                top(path, window=window)
            return out.getvalue()

    def test_self_time_ranked_without_idle(self):
        text = self.run_top(profile([(2, 3000), (3, 1000), (2, 3000), (1, 500)]))
        lines = text.splitlines()
        self.assertIn("7 ms busy, 0 ms idle", lines[0])
        self.assertRegex(lines[1], r"6\.0 ms\s+85\.7%\s+schedule\s+scheduler\.ts:10")
        self.assertRegex(lines[2], r"1\.0 ms\s+14\.3%\s+\(anonymous\)\s+step_pipeline\.ts:10")
        self.assertEqual(len(lines), 3)

    def test_window_keeps_the_samples_taken_inside_it(self):
        p = profile([(2, 3000), (3, 1000), (2, 3000), (1, 500)])
        p["startTime"] = 1000
        # Samples at 4000 (schedule), 5000 (step_pipeline), 8000 (schedule), 8500 (idle).
        text = self.run_top(p, window=(4500, 8200))
        lines = text.splitlines()
        self.assertIn("4 ms busy, 0 ms idle", lines[0])
        self.assertRegex(lines[1], r"3\.0 ms\s+75\.0%\s+schedule")
        self.assertRegex(lines[2], r"1\.0 ms\s+25\.0%\s+\(anonymous\)")

    def test_a_thread_that_mostly_waited_prints_nothing(self):
        self.assertEqual(self.run_top(profile([(1, 100000), (2, 10)])), "")


if __name__ == "__main__":
    unittest.main()
