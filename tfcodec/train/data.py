"""tf.data pipelines: random crops for training, whole images for validation."""

import glob
import os

import tensorflow as tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")


def list_images(patterns):
  """Expands folders and globs (comma-separated) into a sorted file list."""
  files = []
  for pattern in patterns.split(",") if isinstance(patterns, str) else patterns:
    pattern = pattern.strip()
    if not pattern:
      continue
    if os.path.isdir(pattern):
      for ext in IMAGE_EXTENSIONS:
        files += glob.glob(os.path.join(pattern, "**", "*" + ext), recursive=True)
    else:
      files += glob.glob(pattern, recursive=True)
  files = sorted(set(f for f in files if f.endswith(IMAGE_EXTENSIONS)))
  if not files:
    raise ValueError(f"no PNG/JPEG images found in {patterns!r}")
  return files


def _decode(path):
  image = tf.io.decode_image(tf.io.read_file(path), channels=3,
                             expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _crop_or_pad(image, patch_size):
  """A random crop; images smaller than the crop are edge-padded first.

  Edge padding (not zeros, not skipping) keeps small images usable without
  teaching the model artificial black borders, and never yields NaNs.
  """
  shape = tf.shape(image)

  def pad():
    height = tf.maximum(shape[0], patch_size)
    width = tf.maximum(shape[1], patch_size)
    rows = tf.minimum(tf.range(height), shape[0] - 1)
    cols = tf.minimum(tf.range(width), shape[1] - 1)
    return tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)

  small = tf.logical_or(shape[0] < patch_size, shape[1] < patch_size)
  image = tf.cond(small, pad, lambda: image)
  return tf.image.random_crop(image, (patch_size, patch_size, 3))


# The smallest scale `rescale` draws (uniform in [RESCALE_MIN, 1]): at 0.5 a
# 128-pixel crop covers 256 pixels of the photo, which BSDS500's 321-pixel
# side still holds.
RESCALE_MIN = .5
AUGMENTATIONS = ("flip", "rescale")


def _rescaled_crop(image, patch_size):
  """A random square region resized to `patch_size` by a random factor in
  [RESCALE_MIN, 1] (never beyond what the image's shorter side allows),
  antialiased and rounded back to 8 bits like a real downscaled photo.

  Downscaling is how the 659 photos yield content they do not hold at their
  own scale: finer detail per pixel, less sensor noise and JPEG residue.
  """
  shape = tf.shape(image)
  shortest = tf.minimum(shape[0], shape[1])
  scale = tf.random.uniform([], RESCALE_MIN, 1.)
  size = tf.cast(tf.math.ceil(patch_size / scale), tf.int32)
  size = tf.clip_by_value(size, patch_size, tf.maximum(shortest, patch_size))
  region = _crop_or_pad(image, size)
  resized = tf.image.resize(tf.cast(region, tf.float32),
                            (patch_size, patch_size), method="bicubic",
                            antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0., 255.), tf.uint8)


def _augmented_crop(image, patch_size, augment):
  if "rescale" in augment:
    crop = _rescaled_crop(image, patch_size)
  else:
    crop = _crop_or_pad(image, patch_size)
  if "flip" in augment:
    crop = tf.image.random_flip_left_right(crop)
  return crop


def check_augment(augment):
  """The augmentation names, validated; raises ValueError naming the bad one."""
  augment = tuple(a.strip() for a in augment if a.strip())
  for name in augment:
    if name not in AUGMENTATIONS:
      raise ValueError(f"unknown augmentation {name!r}: choose from "
                       f"{', '.join(AUGMENTATIONS)}")
  return augment


def steps_per_epoch(num_images, batch_size):
  """Steps in one epoch: one random crop of every training image."""
  return max(1, -(-num_images // batch_size))


def train_dataset(patterns, patch_size=256, batch_size=8, seed=None,
                  crops_per_image=1, shuffle_buffer=256, parallel_calls=None,
                  augment=()):
  """Infinite dataset of float32 [batch, patch, patch, 3] batches in [0, 1].

  `augment`: any of "flip" (left-right, half the crops) and "rescale"
  (`_rescaled_crop`); none by default, so older recipes replay as they ran.

  Decoded images are cached in memory (the 659 training photos take ~0.6 GB)
  so decoding is paid once. Keep `crops_per_image` at 1: with 4 crops per image
  visit and a small shuffle buffer, consecutive batches shared images and a
  model trained at lr 5e-4 tracked the recent images (training-batch PSNR
  ~22 dB while fresh crops from the same photos gave ~15 dB).
  `parallel_calls` bounds the decode and crop threads (None: tf.data tunes it).
  A file that fails to decode is skipped with a warning rather than ending
  the run hours in.
  """
  parallel_calls = parallel_calls or tf.data.AUTOTUNE
  augment = check_augment(augment)
  files = list_images(patterns)
  ds = tf.data.Dataset.from_tensor_slices(files)
  ds = ds.map(_decode, num_parallel_calls=parallel_calls)
  ds = ds.ignore_errors(log_warning=True).cache()
  ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.flat_map(lambda im: tf.data.Dataset.from_tensors(im).repeat(
      crops_per_image))
  ds = ds.map(lambda im: _augmented_crop(im, patch_size, augment),
              num_parallel_calls=parallel_calls)
  ds = ds.shuffle(shuffle_buffer, seed=seed)
  ds = ds.map(lambda im: tf.cast(im, tf.float32) / 255.)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def distributed_train_dataset(strategy, patterns, patch_size, global_batch_size,
                              seed=None, parallel_calls=None, augment=()):
  """`train_dataset` split over a strategy's replicas.

  Every input pipeline reads all images (crops are random, so sharding files
  would only shrink each worker's variety) with its own shuffle seed, and
  yields its replicas' share of the global batch.
  """
  def dataset_fn(context):
    pipeline_seed = None if seed is None else seed + context.input_pipeline_id
    return train_dataset(
        patterns, patch_size,
        context.get_per_replica_batch_size(global_batch_size),
        seed=pipeline_seed, parallel_calls=parallel_calls, augment=augment)
  return strategy.distribute_datasets_from_function(dataset_fn)


def eval_images(patterns):
  """(file names, list of uint8 arrays) for a validation folder."""
  files = list_images(patterns)
  return files, [_decode(f).numpy() for f in files]
