"""cnn_rnn_tf/vocab.py: label names, training order, labels.txt round trip, sequence targets."""

import numpy as np
import pytest

from cnn_rnn_tf import vocab as vocab_lib

ODD_LABELS = ["traffic light", "café", "東京", "naïve-ümlaut", "emoji 🐱", "a,b", "x'y",
              "tab\u200dzwj", "ß", "100%", "#hash", "back\\slash"]


def test_training_order_is_frequency_then_name():
  vocab = vocab_lib.LabelVocab.from_label_sets([["dog", "person"], ["person"], ["cat", "dog"]],
                                               all_names=["zebra", "cat", "dog", "person"])
  assert vocab.names == ["dog", "person", "cat", "zebra"]
  assert (vocab.end_id, vocab.start_id) == (4, 5)
  assert vocab.encode(["person", "dog"]) == [0, 1]
  assert vocab.decode([1, 2, vocab.end_id, 0]) == ["person", "cat"]
  with pytest.raises(KeyError, match="Unknown label 'cow'"):
    vocab.id("cow")


def test_odd_labels_round_trip_through_labels_txt(tmp_path):
  vocab = vocab_lib.LabelVocab(ODD_LABELS)
  path = tmp_path / "run" / "labels.txt"
  vocab.save(path)
  assert vocab_lib.LabelVocab.load(path).names == ODD_LABELS
  assert path.read_bytes().decode("utf-8").split("\n")[:2] == ODD_LABELS[:2]


@pytest.mark.parametrize("written,name", [
    ("dog\r", "dog"), ("  dog ", "dog"), ("\ufeffdog", "dog"), ("\tdog\x00", "dog"),
    ("\u00a0traffic light\u2009", "traffic light"), ("", ""), (" \r ", "")])
def test_clean_label_strips_the_ends(written, name):
  assert vocab_lib.clean_label(written) == name


@pytest.mark.parametrize("written,code", [
    ('car"', "0022"), ("car\nimg/011.jpg,cat", "000A"), ("do\rg", "000D"), ("a\tb", "0009"),
    ("a\u2028b", "2028"), ("a\x85b", "0085")])
def test_clean_label_refuses_breaks_controls_and_quotes(written, code):
  with pytest.raises(vocab_lib.BadLabelError, match=rf"Bad label .*contains .* \(U\+{code}\)"):
    vocab_lib.clean_label(written)


def test_every_clean_label_round_trips(tmp_path):
  # Anything clean_label accepts is a valid name that labels.txt gives back exactly.
  rng = np.random.default_rng(0)
  alphabet = [chr(c) for c in (*range(0x20, 0x7F), 0xA0, 0xE9, 0x2009, 0x3000, 0x200D, 0xFEFF,
                               0x85, 0x0B, 0x0C, 0x1C, 0x0D, 0x2028, 0x1F431)]
  names = set()
  for _ in range(400):
    text = "".join(rng.choice(alphabet, size=rng.integers(1, 8)))
    try:
      name = vocab_lib.clean_label(text)
    except vocab_lib.BadLabelError:
      continue
    if name:
      names.add(name)
  assert len(names) > 50
  vocab = vocab_lib.LabelVocab(sorted(names))
  vocab.save(tmp_path / "labels.txt")
  assert vocab_lib.LabelVocab.load(tmp_path / "labels.txt") == vocab


def test_bad_vocabulary_names_are_refused():
  for names, message in (([], "at least one"), (["dog", "dog"], "appears twice"),
                         (["dog "], "Bad label name 'dog '"), ([""], "Bad label name ''"),
                         (['a"b'], "contains")):
    with pytest.raises(ValueError, match=message):
      vocab_lib.LabelVocab(names)


def test_load_names_the_file_of_a_bad_labels_txt(tmp_path):
  path = tmp_path / "labels.txt"
  path.write_bytes(b"dog\ncat\r\n")
  with pytest.raises(vocab_lib.BadLabelError, match=r"labels.txt: .*'cat\\r'"):
    vocab_lib.LabelVocab.load(path)
  path.write_bytes(b"caf\xe9\n")
  with pytest.raises(vocab_lib.BadLabelError, match="labels.txt: not UTF-8"):
    vocab_lib.LabelVocab.load(path)


def test_sequence_targets_and_teacher_forcing():
  multi_hot = np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]], np.float32)
  targets = vocab_lib.sequence_targets(multi_hot).numpy()
  np.testing.assert_array_equal(targets, [[1, 3, 4, -1], [4, -1, -1, -1], [0, 1, 2, 4]])
  capped = vocab_lib.sequence_targets(multi_hot, max_labels=1).numpy()
  np.testing.assert_array_equal(capped, [[1, 4], [4, -1], [0, 4]])
  inputs = vocab_lib.teacher_forcing_inputs(targets, start_id=5).numpy()
  np.testing.assert_array_equal(inputs, [[5, 1, 3, 4], [5, 4, -1, -1], [5, 0, 1, 2]])
