"""cnn_rnn_tf.images and image_files: formats, header sizes, the pixel limit, RGB, resize."""

import io
import struct

import numpy as np
from PIL import Image
from PIL import ImageOps
import pytest
import tensorflow as tf

from cnn_rnn_tf import image_files
from cnn_rnn_tf import image_headers
from cnn_rnn_tf import images
from helpers import big_gray_png
from helpers import png_chunk


def encode(array, fmt, **kwargs):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kwargs)
  return buf.getvalue()


def rgb(h=9, w=13, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


LOSSLESS = [("PNG", {}), ("BMP", {}), ("WEBP", {"lossless": True})]


@pytest.mark.parametrize("fmt,kwargs", LOSSLESS)
def test_lossless_formats_decode_exactly(fmt, kwargs):
  array = rgb()
  out = images.decode_rgb(encode(array, fmt, **kwargs)).numpy()
  np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("fmt,kwargs,expected", [
    ("JPEG", {}, "jpeg"), ("PNG", {}, "png"), ("GIF", {}, "gif"), ("BMP", {}, "bmp"),
    ("WEBP", {}, "webp_vp8"), ("WEBP", {"lossless": True}, "webp_vp8l")])
def test_header_gives_format_and_size_without_decoding(fmt, kwargs, expected):
  data = encode(rgb(h=21, w=34), fmt, **kwargs)
  assert image_files.read_header(data) == image_files.ImageHeader(expected, 21, 34)
  assert image_files.sniff_format(data) == expected


def test_webp_with_alpha_is_vp8x_and_decodes_to_rgb():
  rgba = np.random.default_rng(1).integers(0, 256, (6, 10, 4), dtype=np.uint8)
  data = encode(rgba, "WEBP", quality=100)
  assert image_files.read_header(data) == image_files.ImageHeader("webp_vp8x", 6, 10)
  out = images.decode_rgb(data).numpy()
  assert out.shape == (6, 10, 3)
  expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[..., :3]  # libwebp via PIL
  assert np.abs(out.astype(int) - expected).max() <= 2


def test_grayscale_rgba_palette_become_rgb():
  gray = rgb()[..., 0]
  out = images.decode_rgb(encode(gray, "PNG")).numpy()
  np.testing.assert_array_equal(out, np.stack([gray] * 3, -1))
  rgba = np.concatenate([rgb(), np.full((9, 13, 1), 7, np.uint8)], -1)
  np.testing.assert_array_equal(images.decode_rgb(encode(rgba, "PNG")).numpy(), rgba[..., :3])
  palette = Image.fromarray(rgb()).convert("P", palette=Image.ADAPTIVE, colors=8)
  buf = io.BytesIO()
  palette.save(buf, "PNG")
  out = images.decode_rgb(buf.getvalue()).numpy()
  np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))
  la = np.stack([gray, np.full_like(gray, 200)], -1)
  np.testing.assert_array_equal(images.decode_rgb(encode(la, "PNG")).numpy(),
                                np.stack([gray] * 3, -1))


def test_unknown_format_is_refused_naming_the_image():
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"photo\.txt: not a JPEG, PNG"):
    images.decode_rgb(b"hello, this is text", name="photo.txt")
  with pytest.raises(tf.errors.InvalidArgumentError, match="img: not a JPEG"):
    images.decode_rgb(b"", name="img")


def test_animated_webp_is_refused_before_decode():
  frames = [Image.fromarray(rgb(seed=s)) for s in range(3)]
  buf = io.BytesIO()
  frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:])
  with pytest.raises(image_files.ImageError, match="anim.webp: animated WebP is not supported"):
    image_files.read_header(buf.getvalue(), name="anim.webp")


def test_header_only_huge_png_is_refused_before_decode():
  # Only a header (no image data at all): a decode would fail differently.
  data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2,
                                                               0, 0, 0))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"image_bytes\[0\]: image of 20000x20000 = 400000000 pixels.*"
                           r"over the limit of 40000000"):
    images.decode_rgb(data, name="image_bytes[0]")
  with pytest.raises(tf.errors.InvalidArgumentError, match="limit of 1000 pixels"):
    images.decode_rgb(encode(rgb(h=40, w=30), "JPEG"), max_pixels=1000)
  assert images.decode_rgb(encode(rgb(h=40, w=25), "JPEG"), max_pixels=1000).shape == (40, 25, 3)


def test_real_20000_square_png_is_refused_without_decoding(tmp_path):
  data = big_gray_png(20000, 20000)
  assert len(data) < 2_000_000  # a small file ...
  path = tmp_path / "huge.png"
  path.write_bytes(data)
  header = image_files.read_header(data, max_pixels=None)
  assert header == image_files.ImageHeader("png", 20000, 20000)
  with pytest.raises(image_files.ImageError,
                     match=r"huge\.png: image of 20000x20000.*over the limit"):
    image_files.load_rgb(path)  # ... refused in the header check: no 1.2 GB decode


def test_bmp_top_down_negative_height():
  data = bytearray(encode(rgb(h=5, w=6), "BMP"))
  height = struct.unpack_from("<i", data, 22)[0]
  struct.pack_into("<i", data, 22, -height)
  assert image_files.read_header(bytes(data)) == image_files.ImageHeader("bmp", 5, 6)


def test_decode_in_a_graph_and_in_tf_data():
  good, bad = encode(rgb(), "PNG"), b"GIF89a-truncated"
  ds = tf.data.Dataset.from_tensor_slices(([good, bad], ["a.png", "b.gif"]))
  ds = ds.map(lambda b, n: tf.shape(images.decode_rgb(b, name=n)))
  it = iter(ds)
  assert list(next(it).numpy()) == [9, 13, 3]
  with pytest.raises(tf.errors.InvalidArgumentError, match="b.gif"):
    next(it)


def test_resize_uint8_equals_float_resize():
  array = rgb(h=37, w=53)[None]
  out = images.resize(array, 16)
  assert out.dtype == tf.float32 and out.shape == (1, 16, 16, 3)
  np.testing.assert_array_equal(out.numpy(),
                                tf.image.resize(tf.cast(array, tf.float32), [16, 16]).numpy())
  assert images.resize(array[0], 8).shape == (8, 8, 3)


def test_decode_batch_names_the_bad_index():
  good = encode(rgb(), "JPEG")
  out = images.decode_batch([good, encode(rgb(h=3, w=4), "PNG")], 8)
  assert out.shape == (2, 8, 8, 3) and out.dtype == tf.float32
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\]: not a JPEG"):
    images.decode_batch([good, b"nonsense bytes"], 8)
  fn = tf.function(lambda b: images.decode_batch(b, 8, max_pixels=100),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\]: image of 13x9"):
    fn(tf.constant([encode(rgb(h=3, w=4), "PNG"), good]))
  with pytest.raises(ValueError, match="1-D string tensor"):
    images.decode_batch(tf.constant(good), 8)


def test_load_rgb_names_missing_and_corrupt_files(tmp_path):
  with pytest.raises(image_files.ImageError, match="nope.jpg: cannot read"):
    image_files.load_rgb(tmp_path / "nope.jpg")
  path = tmp_path / "cut.jpg"
  path.write_bytes(encode(rgb(h=64, w=64), "JPEG")[:200])
  with pytest.raises(image_files.ImageError, match="cut.jpg"):
    image_files.load_rgb(path)
  path = tmp_path / "ok.png"
  path.write_bytes(encode(rgb(), "PNG"))
  np.testing.assert_array_equal(image_files.load_rgb(path), rgb())


def test_config_default_is_the_images_default():
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  assert config_lib.default_config().data.max_image_pixels == images.DEFAULT_MAX_PIXELS


# --- GIF: the bound comes from every frame's image descriptor (issue 20 item 1) ------------


def lzw_constant(n_pixels, min_code_size=2):
  """GIF LZW data of `n_pixels` pixels of colour 0, written directly (runs of growing codes):
  a 20000x20000 frame is 270 KB and written in a second, with no 400 MB array."""
  clear, eoi = 1 << min_code_size, (1 << min_code_size) + 1
  out, acc, nbits = bytearray(), 0, 0

  def emit(code, size):
    nonlocal acc, nbits
    acc |= code << nbits
    nbits += size
    while nbits >= 8:
      out.append(acc & 0xFF)
      acc >>= 8
      nbits -= 8

  size, next_code, length, left = min_code_size + 1, eoi + 1, 1, n_pixels
  emit(clear, size)
  while left > 0:
    run = min(length, left)
    emit(0 if run == 1 else eoi + run - 1, size)  # the code of `run` zeros
    left -= run
    if not left:
      break
    next_code, length = next_code + 1, length + 1
    if next_code == 4096:  # table full: start again
      emit(clear, size)
      size, next_code, length = min_code_size + 1, eoi + 1, 1
    elif next_code == (1 << size) + 1 and size < 12:
      size += 1
  emit(eoi, size)
  return bytes(out + (bytes([acc]) if nbits else b""))


def gif_bytes(width, height, frames=1, screen=None, comment=b""):
  """A GIF of `frames` single-colour frames of width x height; `screen`: the logical-screen
  size written in the header (default the frame size); `comment`: a comment extension."""
  def sub_blocks(data):
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255)) + b"\0"

  out = b"GIF89a" + struct.pack("<HHBBB", *(screen or (width, height)), 0x81, 0, 0)
  out += bytes([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 255])  # global colour table, 4
  if comment:
    out += b"\x21\xfe" + sub_blocks(comment)
  frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02"
  frame += sub_blocks(lzw_constant(width * height))
  return out + frame * frames + b";"


def test_gif_writer_is_a_gif_pil_and_tensorflow_read():
  data = gif_bytes(300, 200, frames=2, comment=b"c" * 300)
  assert Image.open(io.BytesIO(data)).size == (300, 200)
  np.testing.assert_array_equal(images.decode_rgb(data), np.zeros((200, 300, 3), np.uint8))


def test_gif_frames_reads_every_image_descriptor():
  # PIL's animated GIF: differently sized frames (only the changed box is stored), a comment,
  # the NETSCAPE loop extension, graphics control blocks.
  frames = [Image.new("RGB", (64, 48), (0, 0, 0))]
  frames += [frames[0].copy() for _ in range(3)]
  for i, frame in enumerate(frames[1:], 1):
    frame.paste((255, 40 * i, 0), (i, 2 * i, 10 * i + 5, 8 * i + 3))
  buf = io.BytesIO()
  frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], comment=b"x" * 600,
                 loop=0, optimize=False)
  pil = Image.open(buf)
  boxes = []
  for i in range(pil.n_frames):
    pil.seek(i)
    x0, y0, x1, y1 = pil.tile[0][1] if pil.tile else pil.dispose_extent
    boxes.append((y1 - y0, x1 - x0))
  assert len(set(boxes)) > 1  # frames of different sizes
  expected = [max(h for h, _ in boxes), max(w for _, w in boxes), sum(h * w for h, w in boxes)]
  assert image_headers.gif_frames(buf.getvalue()).numpy().tolist() == expected
  # A header claiming 10x10 changes nothing: the frames are what the decoder allocates.
  data = bytearray(gif_bytes(700, 500, frames=3, comment=b"y" * 70000))  # > 2 walk windows
  data[6:10] = struct.pack("<HH", 10, 10)
  assert image_headers.gif_frames(bytes(data)).numpy().tolist() == [500, 700, 3 * 500 * 700]
  fn = tf.function(image_headers.gif_frames, input_signature=[tf.TensorSpec([], tf.string)])
  assert fn(bytes(data)).numpy().tolist() == [500, 700, 3 * 500 * 700]
  assert image_files.read_header(bytes(data)) == image_files.ImageHeader("gif", 500, 700)


def test_gif_with_many_frames_is_refused_by_what_the_decoder_holds():
  # 100x100 frames: the canvas (10000 pixels) is under the limit, but TensorFlow's decoder
  # holds every frame (1 byte per pixel) besides the RGB canvas: 3 x 10000 + 5 x 10000.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"^frames\.gif: GIF frames of 50000 pixels in all .* 80000 bytes, "
                           r"over the limit of 3 x 20000"):
    images.decode_rgb(gif_bytes(100, 100, frames=5), max_pixels=20000, name="frames.gif")
  assert images.decode_rgb(gif_bytes(100, 100, frames=3), max_pixels=20000).shape == (
      100, 100, 3)
  fn = tf.function(lambda b: images.decode_batch(b, 8, max_pixels=20000),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"image_bytes\[1\]: GIF frames"):
    fn(tf.constant([gif_bytes(4, 4), gif_bytes(100, 100, frames=5)]))


def test_apng_decodes_its_default_image_of_the_header_size():
  # TensorFlow's PNG decoder ignores the animation chunks: the IHDR size is what it allocates.
  frames = [Image.new("RGB", (40, 30), (50 * i, 0, 0)) for i in range(3)]
  buf = io.BytesIO()
  frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:])
  assert b"acTL" in buf.getvalue()
  assert image_files.read_header(buf.getvalue()) == image_files.ImageHeader("png", 30, 40)
  assert images.decode_rgb(buf.getvalue()).shape == (30, 40, 3)


PATCHED_GIF_RSS = """
import resource, sys
import tensorflow as tf
from cnn_rnn_tf import image_files
from cnn_rnn_tf import images
images.decode_rgb(tf.constant(open(sys.argv[2], "rb").read()))  # warm up: kernels, graph
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
  image_files.load_rgb(sys.argv[1])
  print("DECODED")
except image_files.ImageError as e:
  print("REFUSED", e)
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_gif_whose_header_understates_its_frame_is_refused_with_little_memory(tmp_path):
  # The reproduction: a 20000x20000 frame, the logical screen patched to 10x10.
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  data = bytearray(gif_bytes(20000, 20000))
  data[6:10] = struct.pack("<HH", 10, 10)
  (tmp_path / "patched.gif").write_bytes(bytes(data))
  (tmp_path / "small.gif").write_bytes(gif_bytes(10, 10))
  out = subprocess.run([sys.executable, "-c", PATCHED_GIF_RSS, str(tmp_path / "patched.gif"),
                        str(tmp_path / "small.gif")], capture_output=True, text=True,
                       check=True, timeout=300).stdout
  assert "REFUSED" in out and "patched.gif: image of 20000x20000" in out, out
  growth_mb = int(out.split("GROWTH_KB")[1]) / 1024
  assert growth_mb < 200, f"peak RSS grew {growth_mb:.0f} MB"


# --- EXIF orientation: applied, as viewers do, in every path (issue 20 item 2) -------------


def with_exif_orientation(jpeg, orientation, order="<"):
  """`jpeg` with an APP1 Exif segment written by hand: IFD0 with a Make entry, then the
  Orientation tag (0x0112, SHORT); `order` "<" little-endian ("II"), ">" big-endian ("MM")."""
  ifd = struct.pack(order + "H", 2) + struct.pack(order + "HHI", 0x010F, 2, 4) + b"abc\0"
  ifd += struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(order + "I", 0)
  tiff = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", 8) + ifd
  app1 = b"Exif\0\0" + tiff
  return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def phone_photo():
  """JPEG bytes of a 32 high x 48 wide image with a white top-left corner, a green right edge."""
  array = np.zeros((32, 48, 3), np.uint8)
  array[:4, :8] = 255
  array[:, -3:, 1] = 200
  return encode(array, "JPEG", quality=100)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_do(orientation, order):
  data = with_exif_orientation(phone_photo(), orientation, order)
  assert int(image_headers.exif_orientation(data)) == orientation
  viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
  ours = images.decode_rgb(data).numpy()
  assert ours.shape == viewer.shape == ((32, 48, 3) if orientation < 5 else (48, 32, 3))
  assert np.abs(ours.astype(int) - viewer).max() < 40  # decoders differ a little, not 255
  upright = images.decode_rgb(phone_photo()).numpy()
  np.testing.assert_array_equal(ours, images.orient(upright, orientation).numpy())


def test_exif_orientation_gives_the_same_pixels_in_every_path(tmp_path):
  data = with_exif_orientation(phone_photo(), 6)  # a phone held upright: 48 high, 32 wide
  path = tmp_path / "phone.jpg"
  path.write_bytes(data)
  loaded = image_files.load_rgb(path)  # predict's and visualize's reader
  assert loaded.shape == (48, 32, 3)
  graph = tf.function(lambda b: images.decode_rgb(b, name="x"),  # the tf.data pipeline's
                      input_signature=[tf.TensorSpec([], tf.string)])(tf.constant(data))
  np.testing.assert_array_equal(graph.numpy(), loaded)
  served = tf.function(lambda b: images.decode_batch(b, 16),  # serving_default's
                       input_signature=[tf.TensorSpec([None], tf.string)])(tf.constant([data]))
  np.testing.assert_array_equal(served.numpy()[0], images.resize(loaded, 16).numpy())
  from cnn_rnn_tf.serving import format as format_lib  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(format_lib.decode_rgb(data), loaded.astype(np.float32))


def test_no_or_odd_exif_orientation_means_upright():
  jpeg = phone_photo()
  assert int(image_headers.exif_orientation(jpeg)) == 1
  for bad in (0, 9, 300):
    assert int(image_headers.exif_orientation(with_exif_orientation(jpeg, bad))) == 1
  assert images.decode_rgb(with_exif_orientation(jpeg, 9)).shape == (32, 48, 3)
  assert int(image_headers.exif_orientation(with_exif_orientation(jpeg, 6)[:40])) == 1  # cut short


def test_error_messages_name_the_element_and_are_cut():
  fn = tf.function(lambda b: images.decode_batch(b, 8),
                   input_signature=[tf.TensorSpec([None], tf.string)])
  png = encode(rgb(h=20, w=30), "PNG")
  with pytest.raises(tf.errors.InvalidArgumentError) as e:
    fn(tf.constant([png, png[:60]]))  # the decoder's own failure: "Invalid PNG data, size 60"
  assert image_files.error_message(e.value).startswith(
      "image_bytes[1]: its png data does not decode (corrupt or truncated")
  long = tf.errors.InvalidArgumentError(None, None, "x: " + "y" * 20000)
  assert len(image_files.error_message(long)) < image_files.MAX_MESSAGE_CHARS + 40
  assert image_files.error_message(long).endswith("(19703 more chars)")
