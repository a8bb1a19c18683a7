"""Image reading: accepted modes convert with a warning, others fail clearly."""

import numpy as np
import pytest
from PIL import Image

from tfcodec.io.images import ImageError, atomic_write, read_image


def save(tmp_path, name, image, **kwargs):
  path = tmp_path / name
  image.save(path, **kwargs)
  return str(path)


def test_rgb_reads_unchanged(tmp_path):
  array = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
  path = save(tmp_path, "rgb.png", Image.fromarray(array))
  np.testing.assert_array_equal(read_image(path), array)


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P"])
def test_convertible_modes_warn_and_become_rgb(tmp_path, mode):
  image = Image.new("RGB", (6, 4), (10, 200, 30)).convert(mode)
  path = save(tmp_path, f"img_{mode}.png", image)
  with pytest.warns(UserWarning, match=mode):
    array = read_image(path)
  assert array.shape == (4, 6, 3) and array.dtype == np.uint8


def test_sixteen_bit_png_is_refused(tmp_path):
  image = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
  path = save(tmp_path, "deep.png", image)
  with pytest.raises(ImageError, match="deep.png.*mode"):
    read_image(path)


def test_cmyk_jpeg_is_refused(tmp_path):
  path = save(tmp_path, "cmyk.jpg", Image.new("CMYK", (8, 8)))
  with pytest.raises(ImageError, match="CMYK"):
    read_image(path)


@pytest.mark.parametrize("content", [b"", b"not an image at all",
                                     b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_broken_files_name_the_file(tmp_path, content):
  path = tmp_path / "broken.png"
  path.write_bytes(content)
  with pytest.raises(ImageError, match="broken.png"):
    read_image(str(path))


def test_atomic_write_leaves_no_partial_file(tmp_path):
  target = tmp_path / "out.bin"

  with pytest.raises(TypeError):
    atomic_write(str(target), object())
  assert not target.exists()
  assert [p.name for p in tmp_path.iterdir()] == []
  atomic_write(str(target), b"abc")
  assert target.read_bytes() == b"abc"
