"""Bad data, each kind in both modes: an error naming the file and line, or a counted skip."""

import io
import json
import logging
import os
import struct
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import sources
from helpers import big_gray_png
from helpers import png_chunk


def jpeg_bytes(value=120, shape=(16, 16, 3)):
  buf = io.BytesIO()
  Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="JPEG")
  return buf.getvalue()


@pytest.fixture
def folder(tmp_path):
  """Three good images; the tests add the bad rows."""
  os.makedirs(tmp_path / "img")
  for i in range(3):
    (tmp_path / f"img/{i}.jpg").write_bytes(jpeg_bytes(40 * i))
  return tmp_path


GOOD_ROWS = ["img/0.jpg,cat dog", "img/1.jpg,dog", "img/2.jpg,person"]


def write(folder, name, rows, header="image_name,tags"):
  """Rows as UTF-8; a lone surrogate "\\udcXX" stands for the raw byte 0xXX (bad UTF-8)."""
  path = folder / name
  path.write_bytes(("\n".join([header] + rows) + "\n").encode("utf-8", "surrogateescape"))
  return str(path)


def source_for(train, evaluation=None, **fields):
  config = config_lib.default_config().data
  config.update(dict(source="csv", train_csv=train, eval_csv=evaluation or train))
  config.update(fields)
  return data_lib.get_source(config)


# (name, bad row, reason). The bad row is line 3 of train.csv: after the header and one good row.
BAD_TRAIN_ROWS = [
    ("malformed_row", "img/1.jpg,dog,extra", sources.MALFORMED_ROW, "3 fields, expected 2"),
    ("empty_image_field", ",dog", sources.MALFORMED_ROW, "empty image path"),
    ("missing_file", "img/nope.jpg,dog", sources.MISSING_FILE, "'img/nope.jpg' does not exist"),
    ("undecodable", "img/garbage.jpg,dog", sources.UNDECODABLE_IMAGE, "cannot be decoded"),
    ("truncated_jpeg", "img/truncated.jpg,dog", sources.UNDECODABLE_IMAGE, "cannot be decoded"),
    ("empty_labels", "img/1.jpg,", sources.EMPTY_LABELS, "has no labels in column 'tags'"),
    ("blank_labels", "img/1.jpg,   ", sources.EMPTY_LABELS, "has no labels"),
    ("stray_quote", '"img/1.jpg,dog', sources.MALFORMED_ROW, "CSV quoting fault"),
    ("text_after_quote", 'img/1.jpg,"dog" cat', sources.MALFORMED_ROW, "CSV quoting fault"),
    ("quote_in_label", 'img/1.jpg,dog car"', sources.BAD_LABEL, "contains '\"'"),
    ("control_in_label", "img/1.jpg,do\x07g", sources.BAD_LABEL, "contains '\\x07'"),
    ("not_utf8", "img/1.jpg,caf\udce9", sources.MALFORMED_ROW, "are not utf-8"),
]


def noise_jpeg(shape=(64, 64, 3)):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def add_broken_files(folder):
  (folder / "img/garbage.jpg").write_bytes(b"this is not a JPEG at all")
  data = noise_jpeg()
  (folder / "img/truncated.jpg").write_bytes(data[:len(data) // 2])  # cut in the scan data
  (folder / "img/cut_header.jpg").write_bytes(data[:300])  # cut before the end of its header


@pytest.mark.parametrize("name,row,reason,message", BAD_TRAIN_ROWS,
                         ids=[r[0] for r in BAD_TRAIN_ROWS])
def test_bad_train_row_raises_naming_file_and_line(folder, name, row, reason, message):
  del name
  add_broken_files(folder)
  train = write(folder, "train.csv", [GOOD_ROWS[0], row] + GOOD_ROWS[1:])
  source = source_for(train)
  with pytest.raises(sources.BadDataError) as e:
    source.train_label_sets()
  text = str(e.value)
  assert f"{train} line 3" in text and message in text and f"[{reason}]" in text
  assert "skip_bad_examples=True" in text
  assert [p.reason for p in e.value.problems] == [reason]


@pytest.mark.parametrize("name,row,reason,message", BAD_TRAIN_ROWS,
                         ids=[r[0] for r in BAD_TRAIN_ROWS])
def test_bad_train_row_is_skipped_counted_and_logged(folder, caplog, name, row, reason,
                                                     message):
  del name, message
  add_broken_files(folder)
  train = write(folder, "train.csv", [GOOD_ROWS[0], row] + GOOD_ROWS[1:])
  source = source_for(train, skip_bad_examples=True)
  with caplog.at_level(logging.WARNING):
    sets = source.train_label_sets()
  assert sets == [{"cat", "dog"}, {"dog"}, {"person"}]
  assert source.num_examples("train") == 3
  assert source.skipped == {reason: 1} and source.skipped_in("train") == {reason: 1}
  assert f"{reason}=1" in caplog.text and f"{train} line 3" in caplog.text
  vocab = vocab_lib.LabelVocab.from_label_sets(sets, all_names=source.label_names)
  ds = data_lib.image_dataset(source, "train", vocab, image_size=8, batch_size=8,
                              training=False)
  assert next(iter(ds))["key"].numpy().tolist() == [b"img/0.jpg", b"img/1.jpg", b"img/2.jpg"]


def test_stray_quote_costs_only_its_own_line(folder, caplog):
  # Issue repro: line 10 is `"img/001.jpg,cat`; a lenient parser swallowed the 24 rows after
  # it (and blamed line 34).
  rows = [GOOD_ROWS[i % 3] for i in range(8)] + ['"img/001.jpg,cat'] + [
      GOOD_ROWS[i % 3] for i in range(24)]
  train = write(folder, "train.csv", rows)
  with pytest.raises(sources.BadDataError) as e:
    source_for(train).num_examples("train")
  assert [p.where for p in e.value.problems] == [f"{train} line 10"]
  assert "CSV quoting fault" in str(e.value)
  source = source_for(train, skip_bad_examples=True)
  with caplog.at_level(logging.WARNING):
    assert source.num_examples("train") == 32  # 33 rows, one lost
  assert source.skipped == {"malformed_row": 1}


def test_non_utf8_names_file_and_line_or_reads_with_csv_encoding(folder):
  train = write(folder, "train.csv", GOOD_ROWS + ["img/1.jpg,caf\udce9"])  # latin-1 "café"
  with pytest.raises(sources.BadDataError,
                     match=r"train.csv line 5: bytes b'\\xe9' at column 14 are not utf-8"):
    source_for(train).num_examples("train")
  source = source_for(train, csv_encoding="latin-1")
  assert source.label_names == ["café", "cat", "dog", "person"]
  with pytest.raises(ValueError, match="not ASCII-compatible"):
    source_for(train, csv_encoding="utf-16")


def test_labels_are_stripped_of_whitespace_and_control_characters(folder, tmp_path):
  # CRLF line ends, a BOM, a tab and a non-breaking space around labels: all stripped.
  path = folder / "train.csv"
  path.write_bytes(b"\xef\xbb\xbfimage_name,tags\r\nimg/0.jpg,cat\tdog\r\n"
                   b"img/1.jpg,\"dog\r\"\r\nimg/2.jpg,\xc2\xa0person \r\n")
  source = source_for(str(path), label_separator="\t")
  assert source.train_label_sets() == [{"cat", "dog"}, {"dog"}, {"person"}]
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets())
  vocab.save(tmp_path / "labels.txt")
  assert vocab_lib.LabelVocab.load(tmp_path / "labels.txt") == vocab


def test_unknown_label_in_eval_csv(folder, caplog):
  train = write(folder, "train.csv", GOOD_ROWS)
  evaluation = write(folder, "eval.csv", ["img/0.jpg,dog", "img/1.jpg,dog zebra"])
  with pytest.raises(sources.BadDataError, match=r"eval.csv line 3: .*'img/1.jpg'.*'zebra'"):
    source_for(train, evaluation).num_examples("test")
  source = source_for(train, evaluation, skip_bad_examples=True)
  with caplog.at_level(logging.WARNING):
    assert source.num_examples("test") == 1
  assert source.skipped == {"unknown_label": 1}
  assert "unknown_label=1" in caplog.text


def test_empty_labels_can_be_kept(folder):
  train = write(folder, "train.csv", GOOD_ROWS + ["img/1.jpg,"])
  source = source_for(train, csv_empty_labels="keep")
  sets = source.train_label_sets()
  assert sets[-1] == set() and source.skipped == {}
  vocab = vocab_lib.LabelVocab.from_label_sets(sets, all_names=source.label_names)
  batch = next(iter(data_lib.image_dataset(source, "train", vocab, image_size=8, batch_size=8,
                                           training=False)))
  assert batch["labels"].numpy()[-1].sum() == 0
  assert vocab_lib.sequence_targets(batch["labels"]).numpy()[-1, 0] == vocab.end_id


def test_several_problems_are_listed_with_their_total(folder):
  rows = [f"img/missing{i}.jpg,dog" for i in range(12)]
  train = write(folder, "train.csv", GOOD_ROWS + rows)
  with pytest.raises(sources.BadDataError) as e:
    source_for(train).num_examples("train")
  text = str(e.value)
  assert "12 bad example(s)" in text and "... and 2 more." in text
  assert f"{train} line 5" in text and len(e.value.problems) == 12


def test_header_without_the_columns_is_always_an_error(folder):
  train = write(folder, "train.csv", GOOD_ROWS, header="path,labels")
  for skip in (False, True):
    with pytest.raises(sources.BadDataError,
                       match=r"train.csv line 1: no column 'image_name' .*\['path', 'labels'\]"):
      source_for(train, skip_bad_examples=skip).label_names


def test_header_check_mode(folder):
  add_broken_files(folder)
  train = write(folder, "train.csv", GOOD_ROWS + ["img/garbage.jpg,dog",
                                                  "img/truncated.jpg,cat",
                                                  "img/cut_header.jpg,cat"])
  source = source_for(train, check_images="header", skip_bad_examples=True)
  assert source.num_examples("train") == 4  # the truncated JPEG has a valid header
  assert source.skipped == {"undecodable_image": 2}  # no JPEG magic; cut inside the header
  with pytest.raises(ValueError, match="check_images.*'full'"):
    source_for(train, check_images="full")


def test_label_not_in_vocab_both_modes(folder, caplog):
  train = write(folder, "train.csv", GOOD_ROWS)
  old_vocab = vocab_lib.LabelVocab(["dog", "cat"])  # e.g. from another run: no "person"
  source = source_for(train)
  with pytest.raises(sources.BadDataError,
                     match=r"train.csv line 4 \(image 'img/2.jpg'\): label\(s\) \['person'\]"):
    data_lib.image_dataset(source, "train", old_vocab, image_size=8, batch_size=2,
                           training=False)
  source = source_for(train, skip_bad_examples=True)
  with caplog.at_level(logging.WARNING):
    ds = data_lib.image_dataset(source, "train", old_vocab, image_size=8, batch_size=8,
                                training=False)
  assert next(iter(ds))["key"].numpy().tolist() == [b"img/0.jpg", b"img/1.jpg"]
  assert source.skipped == {"label_not_in_vocab": 1}
  assert "label_not_in_vocab" in caplog.text
  # The training stream's count is right too: every epoch is 2 examples.
  train_ds = data_lib.image_dataset(source, "train", old_vocab, image_size=8, batch_size=2,
                                    training=True, seed=0)
  for batch in train_ds.take(3):
    assert sorted(batch["key"].numpy().tolist()) == [b"img/0.jpg", b"img/1.jpg"]


def huge_png_header(width=20000, height=20000):
  """Only a PNG signature and IHDR claiming width x height: a decode would fail otherwise."""
  return b"\x89PNG\r\n\x1a\n" + png_chunk(
      b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


@pytest.mark.parametrize("check_images", ["decode", "header"])
def test_image_over_the_pixel_limit_is_refused_or_skipped_before_decoding(folder, check_images):
  (folder / "img/huge.png").write_bytes(huge_png_header())
  train = write(folder, "train.csv", GOOD_ROWS + ["img/huge.png,dog"])
  with pytest.raises(sources.BadDataError,
                     match=r"line 5: image 'img/huge.png' .* image of 20000x20000 = 400000000 "
                           r"pixels .*over the limit of 40000000 pixels .*refused before "
                           r"decoding \[undecodable_image\]"):
    source_for(train, check_images=check_images).num_examples("train")
  source = source_for(train, check_images=check_images, skip_bad_examples=True)
  assert source.num_examples("train") == 3
  assert source.skipped == {"undecodable_image": 1}
  # data.max_image_pixels sets the limit (inclusive); the good images are 16x16 = 256.
  at_limit = source_for(train, check_images=check_images, skip_bad_examples=True,
                        max_image_pixels=256)
  assert at_limit.num_examples("train") == 3
  with pytest.raises(sources.BadDataError, match=r"no usable example.*undecodable_image': 4"):
    source_for(train, check_images=check_images, skip_bad_examples=True,
               max_image_pixels=255).num_examples("train")


_HUGE_CSV_SCRIPT = """
import resource, sys
from cnn_rnn_tf import config_lib, data
config = config_lib.default_config().data
config.update(dict(source="csv", train_csv=sys.argv[1], skip_bad_examples=True))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
source = data.get_source(config)
print("examples", source.num_examples("train"), "skipped", source.skipped)
print("peak_growth_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_real_20000_square_png_in_a_csv_costs_no_memory(folder):
  # A valid 1 MB PNG of 20000x20000 (1.2 GB decoded): refused from its header.
  (folder / "img/huge.png").write_bytes(big_gray_png(20000, 20000))
  train = write(folder, "train.csv", GOOD_ROWS + ["img/huge.png,dog"])
  out = subprocess.run([sys.executable, "-c", _HUGE_CSV_SCRIPT, train], capture_output=True,
                       text=True, check=True).stdout
  assert "examples 3 skipped {'undecodable_image': 1}" in out
  growth = float(out.split("peak_growth_mb")[1])
  assert growth < 1024, out


# ------------------------------------------------------------ duplicates and train/eval overlap


def test_thirty_copies_of_one_row_are_counted_and_warned(folder, caplog):
  train = write(folder, "train.csv", GOOD_ROWS + ["img/0.jpg,cat dog"] * 30)
  evaluation = write(folder, "eval.csv", ["img/2.jpg,person"])
  source = source_for(train, evaluation)
  with caplog.at_level(logging.WARNING):
    assert source.num_examples("train") == 33  # kept (a warning, not bad data)
  assert source.hygiene["duplicate_rows"] == {"train": 30}
  warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
  assert "30 row(s) repeat an earlier row" in warning
  assert f"{train} line 5 (image 'img/0.jpg') repeats {train} line 2" in warning
  # The same image with other labels is not a copy.
  other = write(folder, "other.csv", GOOD_ROWS + ["img/0.jpg,cat"])
  relabelled = source_for(other, evaluation)
  relabelled.index("train")
  assert relabelled.hygiene["duplicate_rows"] == {"train": 0}


def test_eval_csv_equal_to_train_csv_is_counted_as_overlap(folder, caplog):
  train = write(folder, "train.csv", GOOD_ROWS)
  source = source_for(train, train)
  with caplog.at_level(logging.WARNING):
    source.index("train")
  assert source.hygiene["train_eval_overlap"] == {"same_path": 3, "same_content": 0}
  warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
  assert f"3 image(s) of {train} are also in {train}" in warning


def test_overlap_is_refused_naming_the_files_with_allow_overlap_false(folder):
  train = write(folder, "train.csv", GOOD_ROWS)
  evaluation = write(folder, "eval.csv", ["img/2.jpg,person", "img/1.jpg,dog"])
  source = source_for(train, evaluation, allow_overlap=False)
  with pytest.raises(sources.BadDataError, match="data.allow_overlap") as e:
    source.index("eval")  # either split refuses, before its images are checked
  text = str(e.value)
  assert f"{evaluation} line 2 (image 'img/2.jpg') is {train} line 4 (image 'img/2.jpg')" in text
  assert f"{evaluation} line 3 (image 'img/1.jpg')" in text
  with pytest.raises(sources.BadDataError, match="2 image"):
    source_for(train, evaluation, allow_overlap=False).index("train")
  clean = write(folder, "clean.csv", ["img/1.jpg,dog"])
  assert source_for(write(folder, "t2.csv", [GOOD_ROWS[0], GOOD_ROWS[2]]), clean,
                    allow_overlap=False).num_examples("eval") == 1


def test_identical_files_under_other_paths_are_caught_by_content(folder):
  os.makedirs(folder / "copy")
  (folder / "copy/same_as_0.jpg").write_bytes((folder / "img/0.jpg").read_bytes())
  # Same size, other bytes: not an overlap.
  other = bytearray((folder / "img/1.jpg").read_bytes())
  other[-3] ^= 0xFF
  (folder / "copy/like_1.jpg").write_bytes(bytes(other))
  train = write(folder, "train.csv", GOOD_ROWS)
  evaluation = write(folder, "eval.csv", ["copy/same_as_0.jpg,cat", "copy/like_1.jpg,dog"])
  source = source_for(train, evaluation)
  source.index("train")
  assert source.hygiene["train_eval_overlap"] == {"same_path": 0, "same_content": 1}
  with pytest.raises(sources.BadDataError, match=r"same_as_0.jpg.*img/0.jpg.*same content"):
    source_for(train, evaluation, allow_overlap=False).index("train")


def test_a_20_mb_csv_line_is_refused_without_echoing_it(folder):
  huge = "img/0.jpg," + "x" * 20_000_000
  train = write(folder, "train.csv", GOOD_ROWS + [huge, "img/1.jpg," + ",".join(["a"] * 300_000)])
  with pytest.raises(sources.BadDataError) as e:
    source_for(train).train_label_sets()
  text = str(e.value)
  assert len(text) < 5000, len(text)
  assert f"{train} line 5: CSV quoting fault" in text
  assert "(cut at 300 of 20000010 characters)" in text
  assert f"{train} line 6: 300001 fields, expected 2" in text and "characters)" in text


def test_the_counts_reach_data_report_json(folder, tmp_path):
  from cnn_rnn_tf import train_end  # pylint: disable=g-import-not-at-top
  train = write(folder, "train.csv", GOOD_ROWS + ["img/1.jpg,dog"] * 2)
  source = source_for(train, train)
  source.index("train")
  config = config_lib.default_config()
  config.model.train_backbone = False  # finish() then writes data_report.json only
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  train_end.finish(config, str(workdir), True, source, models=None)
  report = json.loads((workdir / "data_report.json").read_text())
  assert report["hygiene"] == {"duplicate_rows": {"train": 2},
                               "train_eval_overlap": {"same_path": 5, "same_content": 0}}
