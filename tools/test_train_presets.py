"""Checks of tools/train_presets.py (presets, held-out split, training framing); no torch needed:

    python3 -m unittest discover -s tools -p 'test_*.py'
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from train_presets import EOS, BOS, framed, held_out_cut, paragraphs, resolve_preset  # noqa: E402


class Presets(unittest.TestCase):
    def test_default_is_the_bundled_models_settings(self):
        # The values train_default_model.py had before presets existed: the bundled model must rebuild as before.
        p = resolve_preset("default", {"runs": None, "max_seconds": None, "lr": None})
        self.assertEqual((p["hidden_size"], p["intermediate_size"], p["num_hidden_layers"]), (256, 640, 6))
        self.assertEqual((p["num_attention_heads"], p["num_key_value_heads"], p["max_position_embeddings"]), (8, 4, 512))
        self.assertEqual((p["runs"], p["max_seconds"], p["lr"], p["max_bytes"]),
                         ("2500:0.2,1000:0.2,600:0.1", 240.0, 3e-3, 9_500_000))
        self.assertEqual(p["split"], "tokens")

    def test_quant_study_is_tens_of_millions_without_a_size_limit(self):
        p = resolve_preset("quant-study", {})
        h, i, n, kv = p["hidden_size"], p["intermediate_size"], p["num_hidden_layers"], p["num_key_value_heads"]
        head = h // p["num_attention_heads"]
        per_layer = 2 * h * h + 2 * h * kv * head + 3 * h * i + 2 * h
        params = n * per_layer + 2048 * h + h
        self.assertGreater(params, 20e6)
        self.assertLess(params, 60e6)
        self.assertIsNone(p["max_bytes"])
        self.assertEqual(p["split"], "paragraphs")

    def test_command_line_options_win(self):
        p = resolve_preset("quant-study", {"runs": "10:0.0", "max_seconds": 5.0, "lr": None})
        self.assertEqual((p["runs"], p["max_seconds"], p["lr"]), ("10:0.0", 5.0, 1e-3))

    def test_unknown_preset(self):
        with self.assertRaises(ValueError):
            resolve_preset("huge", {})


class HeldOutSplit(unittest.TestCase):
    text = "\n\n".join(f"SPEAKER {k}:\nline {k} of the play" for k in range(20))

    def test_cut_at_the_first_blank_line_after_ninety_percent(self):
        train, held = held_out_cut(self.text)
        self.assertGreaterEqual(len(train), int(0.9 * len(self.text)))
        self.assertEqual(train + "\n\n" + held, self.text)
        # whole speeches on each side, none shared, none lost
        self.assertEqual(paragraphs(train) + paragraphs(held), paragraphs(self.text))
        self.assertTrue(held.startswith("SPEAKER "))
        self.assertFalse(set(paragraphs(train)) & set(paragraphs(held)))

    def test_no_blank_line_late_enough(self):
        with self.assertRaises(ValueError):
            held_out_cut("one speech only\n\nand a second, long one " + "x" * 100)

    def test_framing_matches_the_training_stream(self):
        pars = ["A:\nhi", "B:\nho"]
        # kiln eval adds <|bos|> in front: [bos] A [eos] [bos] B [eos], as encode_corpus frames them
        self.assertEqual(framed(pars), "A:\nhi" + EOS + BOS + "B:\nho" + EOS)

    def test_framing_cut_to_whole_leading_paragraphs(self):
        pars = ["a" * 10, "b" * 10, "c" * 10]
        step = 10 + len(EOS) + len(BOS)
        self.assertEqual(framed(pars, max_chars=2 * step), framed(pars[:2]))
        self.assertEqual(framed(pars, max_chars=1), framed(pars[:1]))  # at least one


if __name__ == "__main__":
    unittest.main()
