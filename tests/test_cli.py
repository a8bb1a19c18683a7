"""encoder.py / decoder.py on a folder with a corrupt image in it."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import ROOT, random_image


def run(script, *args):
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                        capture_output=True, text=True, timeout=600)


def test_encode_decode_folder_with_one_bad_file(tmp_path):
  images, bits, recon = tmp_path / "in", tmp_path / "bits", tmp_path / "out"
  images.mkdir()
  Image.fromarray(random_image(40, 70, seed=1)).save(images / "good1.png")
  Image.fromarray(random_image(17, 5, seed=2)).save(images / "good2.png")
  (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")

  enc = run("encoder.py", f"--input_dir={images}", f"--output_dir={bits}")
  assert enc.returncode == 1, enc.stdout + enc.stderr
  assert "error: broken.png" in enc.stdout
  assert "good1.png" in enc.stdout and "mean:" in enc.stdout
  assert sorted(os.listdir(bits)) == ["good1.tfci", "good2.tfci"]

  # Corrupt one bitstream: the other still decodes, the bad one is named.
  data = bytearray((bits / "good2.tfci").read_bytes())
  data[len(data) // 2] ^= 0x10
  (bits / "good2.tfci").write_bytes(bytes(data))
  dec = run("decoder.py", f"--input_dir={bits}", f"--output_dir={recon}",
            f"--reference_dir={images}")
  assert dec.returncode == 1, dec.stdout + dec.stderr
  assert "error: good2.tfci" in dec.stdout and "CRC" in dec.stdout
  assert "PSNR" in dec.stdout
  assert sorted(os.listdir(recon)) == ["good1.png"]
  out = np.asarray(Image.open(recon / "good1.png"))
  assert out.shape == (40, 70, 3)


def test_missing_input_dir_is_a_clear_error(tmp_path):
  enc = run("encoder.py", f"--input_dir={tmp_path / 'nope'}",
            f"--output_dir={tmp_path / 'b'}")
  assert enc.returncode == 2
  assert "does not exist" in enc.stderr
