"""Kim, Heo, Lee: "Joint global and local hierarchical priors for learned
image compression" (Informer), CVPR 2022. https://arxiv.org/abs/2112.04487

mbt2018's transforms and 5x5 context model, with the hyperprior (h_a, h_s, z)
replaced by two hyperpriors (ARCHITECTURES.md 7):

  x -> g_a -> y
  local:   y -> 1x1 (M -> M/4) -> 1x1 (-> M/16) = local_z   (same H x W as y)
           Q, factorized prior (M/16 channels)
           local_z_hat -> 1x1 (-> M/2) -> 1x1 (-> 2M) = local params
  global:  8 learned tokens --cross-attend--> all positions of y  (CA_a)
           -> Linear M -> M/8 per token, concatenated = global_z (1 x 1 x M)
           Q, factorized prior (M channels)
           global_z_hat -> 8 x (M/8) -> Linear -> 8 tokens of width 2M
  context: y_hat -> masked 5x5 conv (M -> 2M) = ctx
           ctx at each position --cross-attends--> the 8 tokens  (CA_s)
  concat(local params, attended ctx) (4M) -> 1x1: 10M/3 -> 8M/3 -> 2M
      = [scale indexes | means] -> Gaussian conditional (mean-scale)
  y_hat -> g_s -> x_hat

Only the G = 8 tokens ever attend to the image, and each position attends to
the 8 tokens, never to other positions: the cost is linear in the number of
pixels. Because CA_s works per position against fixed tokens, the wavefront
decoder of mbt2018 (tfcodec.entropy.context) runs unchanged: each step
applies CA_s to the context vectors of its positions.

Three strings per image: y, local_z and global_z. With no downsampling
hyperprior the image is padded to a multiple of 16 only.
"""

import functools

import tensorflow as tf

from tfcodec.entropy import FactorizedPrior
from tfcodec.entropy.context import NETWORK_DTYPE
from tfcodec.layers import conv, exact
from tfcodec.models.bmshj2018 import AnalysisTransform, SynthesisTransform
from tfcodec.models.mbt2018 import JointContextModel
from tfcodec.models.registry import register_model

leaky_relu = functools.partial(tf.nn.leaky_relu, alpha=0.01)
# PyTorch's LayerNorm default; Keras' is 1e-3.
LAYER_NORM_EPSILON = 1e-5
NUM_TOKENS = 8


class CrossAttentionBlock(tf.keras.layers.Layer):
  """Pre-norm cross-attention: q + MHA(LN(q), LN(kv)); then + MLP(LN(.)).

  queries [B, Q, dim], keys/values [B, K, dim] -> [B, Q, dim]. Heads of
  width 64 with biases on q, k, v and the output projection; the MLP is
  4x wide with GELU (erf form, as PyTorch's default).
  """

  def __init__(self, dim, head_dim=64, mlp_ratio=4, name=None, **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    if dim % head_dim:
      raise ValueError(f"attention width {dim} is not a multiple of the "
                       f"head width {head_dim}")
    self.dim = dim
    self.norm_queries = tf.keras.layers.LayerNormalization(
        epsilon=LAYER_NORM_EPSILON, name="norm_queries", dtype=self.dtype)
    self.norm_memory = tf.keras.layers.LayerNormalization(
        epsilon=LAYER_NORM_EPSILON, name="norm_memory", dtype=self.dtype)
    self.attention = tf.keras.layers.MultiHeadAttention(
        num_heads=dim // head_dim, key_dim=head_dim, name="attention",
        dtype=self.dtype)
    self.norm_mlp = tf.keras.layers.LayerNormalization(
        epsilon=LAYER_NORM_EPSILON, name="norm_mlp", dtype=self.dtype)
    self.mlp_in = tf.keras.layers.Dense(
        dim * mlp_ratio, activation=functools.partial(tf.nn.gelu,
                                                      approximate=False),
        name="mlp_in", dtype=self.dtype)
    self.mlp_out = tf.keras.layers.Dense(dim, name="mlp_out", dtype=self.dtype)

  def call(self, queries, memory):
    queries = tf.cast(queries, self.compute_dtype)
    memory = self.norm_memory(tf.cast(memory, self.compute_dtype))
    queries = queries + self.attention(self.norm_queries(queries), memory)
    return queries + self.mlp_out(self.mlp_in(self.norm_mlp(queries)))

  def coding_function(self, memory):
    """The block for one image on the coding path: memory [K, dim] ->
    f(queries [Q, dim]) -> [Q, dim] float32, in tfcodec.layers.exact's
    per-row arithmetic, so each query's output is bit-identical whatever
    other queries share the call, whatever the threads, kernels or graph
    rewrites (the decoder runs CA_s on one wavefront's positions at a time).
    The memory's keys and values and the quantized kernels are computed
    here, once, not at every step."""
    attention = self.attention
    heads, head_dim = attention._num_heads, attention._key_dim

    def norm(layer, x):
      return exact.row_layer_norm(x, layer.gamma, layer.beta, layer.epsilon)

    def projection(dense):
      dense_layer = exact.RowDense(
          tf.reshape(dense.kernel, (self.dim, heads * head_dim)),
          tf.reshape(dense.bias, [-1]))
      return lambda x: tf.reshape(dense_layer(x), (-1, heads, head_dim))

    memory = norm(self.norm_memory, memory)
    key = projection(attention._key_dense)(memory)
    value = projection(attention._value_dense)(memory)
    query_projection = projection(attention._query_dense)
    output = attention._output_dense
    output_projection = exact.RowDense(
        tf.reshape(output.kernel, (heads * head_dim, self.dim)), output.bias)
    mlp_in = exact.RowDense(self.mlp_in.kernel, self.mlp_in.bias,
                            self.mlp_in.activation)
    mlp_out = exact.RowDense(self.mlp_out.kernel, self.mlp_out.bias)

    def block(queries):
      queries = tf.cast(queries, tf.float32)
      query = query_projection(norm(self.norm_queries, queries))
      mixed = exact.attend(query, key, value)
      queries = queries + output_projection(
          tf.reshape(mixed, (-1, heads * head_dim)))
      return queries + mlp_out(mlp_in(norm(self.norm_mlp, queries)))
    return block

  def coding_call(self, queries, memory):
    """coding_function(memory)(queries), for a single call."""
    return self.coding_function(memory)(queries)


class LocalHyperAnalysis(tf.keras.Sequential):
  """y -> local_z: 1x1 convolutions only, M -> M/4 -> M/16, no downsampling.

  local_z is a dense map at y's resolution, so every unit of its spread is
  paid for at every position. With Glorot initialisation its 12 channels
  start at a spread of a few units and cost ~0.2 bpp before they carry
  anything (measured on a run warm-started from mbt2018: 0.22 bpp at step
  509, still 0.16 at 1,901). The last layer therefore starts at 1/100 of
  Glorot's scale: local_z starts at ~0, nearly free, and grows where it pays.
  """

  def __init__(self, M, name="local_hyper_analysis"):
    super().__init__(name=name)
    self.add(conv(M // 4, 1, activation=leaky_relu, name="conv_0",
                  dtype="float32"))
    self.add(conv(M // 16, 1, name="conv_1", dtype="float32",
                  kernel_initializer=tf.keras.initializers.VarianceScaling(
                      scale=1e-4, mode="fan_avg", distribution="uniform")))


class LocalHyperSynthesis(tf.keras.Sequential):
  """local_z_hat -> local params (2M): 1x1, M/16 -> M/2 -> 2M."""

  def __init__(self, M, name="local_hyper_synthesis"):
    super().__init__(name=name)
    self.add(conv(M // 2, 1, activation=leaky_relu, name="conv_0",
                  dtype="float32"))
    self.add(conv(2 * M, 1, name="conv_1", dtype="float32"))


class GlobalHyperAnalysis(tf.keras.layers.Layer):
  """y [B, H, W, M] -> global_z [B, 1, 1, M].

  G learned tokens cross-attend to every position of y (CA_a); each token is
  projected to M/G channels and the G projections are concatenated.
  """

  def __init__(self, M, num_tokens=NUM_TOKENS, head_dim=64,
               name="global_hyper_analysis", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    if M % num_tokens:
      raise ValueError(f"M={M} is not a multiple of {num_tokens} tokens")
    self.M, self.num_tokens = M, num_tokens
    self.tokens = self.add_weight(
        "tokens", (num_tokens, M),
        initializer=tf.keras.initializers.TruncatedNormal(stddev=.02))
    self.attention = CrossAttentionBlock(M, head_dim, name="attention",
                                         dtype=self.dtype)
    self.project = tf.keras.layers.Dense(M // num_tokens, name="project",
                                         dtype=self.dtype)

  def call(self, y):
    batch = tf.shape(y)[0]
    memory = tf.reshape(tf.cast(y, self.compute_dtype), (batch, -1, self.M))
    queries = tf.tile(self.tokens[None], (batch, 1, 1))
    tokens = self.project(self.attention(queries, memory))
    return tf.reshape(tokens, (batch, 1, 1, self.M))

  def coding_call(self, y):
    """The same for one image [1, H, W, M] in exact per-row arithmetic, so
    the coded global_z does not depend on threads, kernels or graph rewrites."""
    memory = tf.reshape(tf.cast(y, tf.float32), (-1, self.M))
    tokens = self.attention.coding_call(self.tokens, memory)
    tokens = exact.RowDense(self.project.kernel, self.project.bias)(tokens)
    return tf.reshape(tokens, (1, 1, 1, self.M))


class GlobalHyperSynthesis(tf.keras.layers.Layer):
  """global_z_hat [B, 1, 1, M] -> G tokens [B, G, 2M].

  The per-token Linear is a 1x1 convolution over a 1 x G map, so a frozen
  model computes it with tfcodec's order-independent integer arithmetic,
  like every other layer the decoder's entropy parameters depend on.
  """

  def __init__(self, M, num_tokens=NUM_TOKENS, name="global_hyper_synthesis",
               **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self.M, self.num_tokens = M, num_tokens
    self.linear = conv(2 * M, 1, name="linear", dtype=self.dtype)

  def call(self, global_z_hat):
    batch = tf.shape(global_z_hat)[0]
    tokens = tf.reshape(tf.cast(global_z_hat, self.compute_dtype),
                        (batch, 1, self.num_tokens, self.M // self.num_tokens))
    return tf.reshape(self.linear(tokens), (batch, self.num_tokens, 2 * self.M))


@register_model("informer")
class InformerModel(JointContextModel):
  """Informer: mbt2018 with joint global and local hyperpriors. Args: N, M."""

  stride = 16
  string_names = ("y", "local_z", "global_z")
  shape_names = ("y", "local_z", "global_z")
  latent_factors = {"y": 16, "local_z": 16, "global_z": None}

  def __init__(self, N=192, M=192, gdn_form="simplified",
               num_tokens=NUM_TOKENS, head_dim=64, **kwargs):
    """`head_dim` (64 in the paper) and `num_tokens` exist for tiny test
    models; M must be a multiple of 16, of `num_tokens` and of `head_dim`."""
    super().__init__(**kwargs)
    if M % 16 or M % num_tokens or M % head_dim:
      raise ValueError(f"Informer needs M to be a multiple of 16, of "
                       f"num_tokens={num_tokens} and of head_dim={head_dim}; "
                       f"got M={M}")
    self.N, self.M = N, M
    self.g_a = AnalysisTransform(N, M, gdn_form)
    self.g_s = SynthesisTransform(N, gdn_form)
    self.local_h_a = LocalHyperAnalysis(M)
    self.local_h_s = LocalHyperSynthesis(M)
    self.global_h_a = GlobalHyperAnalysis(M, num_tokens, head_dim=head_dim)
    self.global_h_s = GlobalHyperSynthesis(M, num_tokens)
    self.global_attention = CrossAttentionBlock(2 * M, head_dim,
                                                name="global_attention")
    # local_z starts near 0 (LocalHyperAnalysis), so its prior starts narrow.
    self.local_z_prior = FactorizedPrior(M // 16, init_scale=1.,
                                         name="local_z_prior")
    self.global_z_prior = FactorizedPrior(M, name="global_z_prior")
    self._build_entropy(M, None, hidden=(M * 10 // 3, M * 8 // 3))
    self.build_variables()

  def entropy_modules(self):
    return [self.local_z_prior, self.global_z_prior, self.y_conditional]

  # -- the two hyperpriors, behind JointContextModel's hooks ----------------
  def side_information(self, y, training):
    local_z_hat, local_bits = self.local_z_prior(self.local_h_a(y),
                                                 training=training)
    global_z_hat, global_bits = self.global_z_prior(self.global_h_a(y),
                                                    training=training)
    side = (self.local_h_s(local_z_hat), self.global_h_s(global_z_hat))
    return side, dict(local_z=local_bits, global_z=global_bits)

  def attend(self, context, tokens):
    """Each position's context [B, P, 2M] cross-attends to the tokens."""
    return self.global_attention(context, tokens)

  def parameter_inputs(self, side, context):
    local_params, tokens = side
    shape = tf.shape(context)
    attended = self.attend(
        tf.reshape(tf.cast(context, tf.float32), (shape[0], -1, 2 * self.M)),
        tokens)
    attended = tf.reshape(attended, shape)
    return tf.concat([tf.cast(local_params, tf.float32), attended], axis=-1)

  def encode_side(self, y):
    local_z = self.local_h_a(y)
    global_z = self.global_h_a.coding_call(y)
    local_string, local_z_hat = \
        self.local_z_prior.compress_with_reconstruction(local_z)
    global_string, global_z_hat = \
        self.global_z_prior.compress_with_reconstruction(global_z)
    return ([local_string[0], global_string[0]],
            [tf.shape(local_z)[1:3], tf.shape(global_z)[1:3]],
            (local_z_hat, global_z_hat))

  def decode_side(self, strings, shapes):
    (local_string, global_string), (local_shape, global_shape) = strings, shapes
    return (self.local_z_prior.decompress(local_string[None], local_shape),
            self.global_z_prior.decompress(global_string[None], global_shape))

  def coding_side(self, side, y_shape):
    local_z_hat, global_z_hat = side
    local_params = self.local_h_s(local_z_hat)[0, :y_shape[0], :y_shape[1], :]
    local_params = tf.reshape(tf.cast(local_params, NETWORK_DTYPE),
                              (-1, 2 * self.M))
    tokens = tf.cast(self.global_h_s(global_z_hat), NETWORK_DTYPE)[0]
    attend_tokens = self.global_attention.coding_function(tokens)

    def inputs(positions, context):
      attended = attend_tokens(context)
      return tf.concat([tf.gather(local_params, positions),
                        tf.cast(attended, NETWORK_DTYPE)], axis=-1)
    return inputs
