"""Training throughput of bmshj2018-hyperprior, three ways, in one process.

  (a) reference  the recipe of tfc's own bmshj2018 example: tfc.SignalConv2D
                 layers with tfc.GDN activations, float32, Keras' plain
                 apply_gradients (no clipping, no non-finite guard);
  (b) tfcodec    tfcodec's model and train step in float32;
  (c) tfcodec    the same under the mixed_bfloat16 policy.

All three see the same pre-generated batches (random crops of the training
images, or uniform noise without them), warm up (tracing and oneDNN kernel
selection) and then time `--steps` steps each. Prints images/s and the ratio
to the reference. Example:

  nice -n 5 .venv/bin/python bench/train_throughput.py --steps=6
"""

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_integer("batch_size", 8, "The number of crops per step.")
flags.DEFINE_integer("patch_size", 256, "The side of the square crops.")
flags.DEFINE_integer("steps", 6, "The number of timed steps per variant.")
flags.DEFINE_integer("warmup", 2, "The number of untimed steps per variant, "
                     "covering tracing and kernel selection.")
flags.DEFINE_integer("N", 128, "The hidden channel count of the transforms.")
flags.DEFINE_integer("M", 192, "The latent channel count.")
flags.DEFINE_string("train_glob", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
    "train"), "Training images to crop the batches from; when none are found "
    "the batches are uniform noise.")
flags.DEFINE_list("variants", ["reference", "tfcodec-fp32", "tfcodec-bf16"],
                  "Which variants to time, in order.")
FLAGS = flags.FLAGS


def reference_model(N, M, lmbda=0.0067):
  """A scale-hyperprior model built the way tfc's bmshj2018 example is."""
  import tensorflow as tf
  import tensorflow_compression as tfc
  from tfcodec.entropy.models import NUM_SCALES, scale_from_index

  def down(filters, size, gdn=True, activation=None, bias=True):
    return tfc.SignalConv2D(
        filters, (size, size), corr=True, strides_down=2 if size == 5 else 1,
        padding="same_zeros", use_bias=bias,
        activation=tfc.GDN() if gdn else activation)

  def up(filters, size, gdn=True, activation=None):
    return tfc.SignalConv2D(
        filters, (size, size), corr=False, strides_up=2 if size == 5 else 1,
        padding="same_zeros", use_bias=True,
        activation=tfc.GDN(inverse=True) if gdn else activation)

  class Reference(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.g_a = tf.keras.Sequential(
          [down(N, 5), down(N, 5), down(N, 5), down(M, 5, gdn=False)])
      self.g_s = tf.keras.Sequential(
          [up(N, 5), up(N, 5), up(N, 5), up(3, 5, gdn=False)])
      self.h_a = tf.keras.Sequential([
          down(N, 3, gdn=False, activation=tf.nn.relu),
          down(N, 5, gdn=False, activation=tf.nn.relu),
          down(N, 5, gdn=False, bias=False)])
      self.h_s = tf.keras.Sequential([
          up(N, 5, gdn=False, activation=tf.nn.relu),
          up(N, 5, gdn=False, activation=tf.nn.relu),
          up(M, 3, gdn=False)])
      self.hyperprior = tfc.NoisyDeepFactorized(batch_shape=(N,))
      # An eager pass creates the variables: SignalConv2D's tensor-valued
      # initialisers cannot run in the graph Keras' symbolic build() uses.
      with tf.init_scope():
        self(tf.zeros((1, 64, 64, 3)), training=True)

    def call(self, x, training):
      y_model = tfc.LocationScaleIndexedEntropyModel(
          tfc.NoisyNormal, NUM_SCALES, scale_from_index, coding_rank=3,
          compression=False)
      z_model = tfc.ContinuousBatchedEntropyModel(
          self.hyperprior, coding_rank=3, compression=False)
      y = self.g_a(x)
      z = self.h_a(abs(y))
      z_hat, z_bits = z_model(z, training=training)
      y_hat, y_bits = y_model(y, self.h_s(z_hat), training=training)
      x_hat = self.g_s(y_hat)
      pixels = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
      bpp = (tf.reduce_sum(y_bits) + tf.reduce_sum(z_bits)) / pixels
      mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat)) * 255. ** 2
      return bpp + lmbda * mse

    def train_step(self, x):
      with tf.GradientTape() as tape:
        loss = self(x, training=True)
      grads = tape.gradient(loss, self.trainable_variables)
      self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
      return loss

  model = Reference()
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
  model.optimizer.build(model.trainable_variables)
  return model


def tfcodec_model(N, M):
  import tensorflow as tf
  from tfcodec.models import create_model
  model = create_model("bmshj2018-hyperprior", 3, N=N, M=M)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-4, global_clipnorm=1.))
  model.optimizer.build(model.trainable_variables)
  return model


def make_batches(count):
  import tensorflow as tf
  from tfcodec.train import data
  try:
    ds = data.train_dataset(FLAGS.train_glob, FLAGS.patch_size,
                            FLAGS.batch_size, seed=0)
    source = f"random crops of {FLAGS.train_glob}"
    batches = [b for b in ds.take(count)]
  except ValueError:
    source = "uniform noise"
    batches = [tf.random.uniform(
        (FLAGS.batch_size, FLAGS.patch_size, FLAGS.patch_size, 3), seed=i)
               for i in range(count)]
  return batches, source


def time_variant(name, batches):
  import tensorflow as tf
  policy = "mixed_bfloat16" if name.endswith("bf16") else "float32"
  tf.keras.mixed_precision.set_global_policy(policy)
  tf.keras.utils.set_random_seed(0)
  if name == "reference":
    model = reference_model(FLAGS.N, FLAGS.M)
  else:
    model = tfcodec_model(FLAGS.N, FLAGS.M)
  step = tf.function(model.train_step)
  for batch in batches[:FLAGS.warmup]:
    tf.nest.map_structure(lambda t: t.numpy(), step(batch))
  start, cpu_start = time.perf_counter(), time.process_time()
  for batch in batches[FLAGS.warmup:]:
    tf.nest.map_structure(lambda t: t.numpy(), step(batch))
  seconds = time.perf_counter() - start
  cpu_seconds = time.process_time() - cpu_start
  tf.keras.mixed_precision.set_global_policy("float32")
  images = FLAGS.steps * FLAGS.batch_size
  return images / seconds, seconds / FLAGS.steps, images / cpu_seconds


def main(argv):
  del argv
  from tfcodec.train.precision import cpu_flags
  from tfcodec.util import quiet_tensorflow
  quiet_tensorflow()
  batches, source = make_batches(FLAGS.warmup + FLAGS.steps)
  bf16 = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"}) or ["none"]
  print(f"bmshj2018-hyperprior N={FLAGS.N} M={FLAGS.M}, "
        f"{FLAGS.batch_size}x{FLAGS.patch_size}^2 crops ({source}); "
        f"{FLAGS.warmup} warm-up + {FLAGS.steps} timed steps per variant; "
        f"CPU bf16 flags: {', '.join(bf16)}; {os.cpu_count()} CPUs")
  # Images per CPU-second is printed too: on a shared machine the wall-clock
  # rate depends on what else runs, the CPU time a step costs much less.
  print(f"{'variant':<14} {'s/step':>8} {'images/s':>9} {'vs (a)':>7} "
        f"{'images/cpu-s':>13} {'vs (a)':>7}")
  reference = None
  for name in FLAGS.variants:
    images_per_second, seconds, images_per_cpu_second = time_variant(
        name, batches)
    if name == "reference":
      reference = (images_per_second, images_per_cpu_second)
    ratios = ([f"{images_per_second / reference[0]:.2f}x",
               f"{images_per_cpu_second / reference[1]:.2f}x"]
              if reference else ["-", "-"])
    print(f"{name:<14} {seconds:>8.3f} {images_per_second:>9.2f} "
          f"{ratios[0]:>7} {images_per_cpu_second:>13.3f} {ratios[1]:>7}",
          flush=True)


if __name__ == "__main__":
  app.run(main)
