// Snake, dilated 7-tap convolution ("same" padding), bias and Snake in one pass over time chunks, with the
// convolution computed by Winograd's minimal filtering F(m, 7): per tile of m outputs, n = m + 6 transformed
// inputs, one matrix product per transform point, then the output transform. A measured, dropped lever:
// benchmarks/bench_winograd_convolution.py builds and times it, docs/benchmarks.md has the figures.
//
// A tile is m outputs `dilation` apart; tile (block, phase) covers outputs block * m * dilation + phase +
// dilation * i. Within a chunk, tiles are ordered phase-major (phase * blocks_per_chunk + block) so that the
// transforms run over contiguous memory for every dilation.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace {

// snake(x) = x + sin(alpha x)^2 / (alpha + 1e-9), in place, in the order of DacSnake1d's inference path.
void snake_(at::Tensor values, const at::Tensor& alpha, const at::Tensor& inv_alpha, at::Tensor scratch) {
  at::mul_out(scratch, values, alpha);
  scratch.sin_().square_().mul_(inv_alpha);
  values.add_(scratch);
}

}  // namespace

at::Tensor snake_conv_snake(
    const at::Tensor& input,               // (batch, channels, length), float32, contiguous
    const at::Tensor& alpha1,              // (channels, 1)
    const at::Tensor& inv_alpha1,          // (channels, 1)
    const at::Tensor& transformed_weight,  // (n, out_channels, channels)
    const at::Tensor& bias,                // (out_channels,)
    const at::Tensor& alpha2,              // (out_channels, 1)
    const at::Tensor& inv_alpha2,          // (out_channels, 1)
    const at::Tensor& input_transform,     // (n, n), float64: B^T
    const at::Tensor& output_transform,    // (m, n), float64: A^T
    int64_t dilation,
    int64_t tiles_per_chunk) {
  TORCH_CHECK(input.dim() == 3 && input.is_contiguous() && input.scalar_type() == at::kFloat,
              "input must be a contiguous float32 (batch, channels, length) tensor");
  const int64_t batch = input.size(0), channels = input.size(1), length = input.size(2);
  const int64_t n = input_transform.size(0), m = output_transform.size(0);
  TORCH_CHECK(n == m + 6, "a 7-tap kernel needs n = m + 6 transform points");
  const int64_t out_channels = transformed_weight.size(1);
  const int64_t block = m * dilation;
  const int64_t n_blocks = (length + block - 1) / block;
  const int64_t blocks_per_chunk = std::max<int64_t>(1, tiles_per_chunk / dilation);
  const int64_t n_chunks = (n_blocks + blocks_per_chunk - 1) / blocks_per_chunk;
  // A chunk reads its input from `lead_blocks` blocks before its first output; tap u of a tile then sits
  // u + shift dilations after that point.
  const int64_t lead_blocks = (3 + m - 1) / m;
  const int64_t shift = lead_blocks * m - 3;
  const int64_t span_blocks = blocks_per_chunk + (n - 1 + shift) / m + 1;
  const int64_t span = span_blocks * block;
  const int64_t out_span = blocks_per_chunk * block;

  std::vector<float> bt(n * n), at(m * n);
  const auto bt64 = input_transform.contiguous(), at64 = output_transform.contiguous();
  const auto to_float = [](double value) { return static_cast<float>(value); };
  std::transform(bt64.data_ptr<double>(), bt64.data_ptr<double>() + n * n, bt.begin(), to_float);
  std::transform(at64.data_ptr<double>(), at64.data_ptr<double>() + m * n, at.begin(), to_float);

  auto output = at::empty({batch, out_channels, length}, input.options());
  const float* x = input.data_ptr<float>();
  float* y = output.data_ptr<float>();
  const float* b = bias.data_ptr<float>();

  at::parallel_for(0, batch * n_chunks, 1, [&](int64_t begin, int64_t end) {
    const auto options = input.options();
    const int64_t max_tiles = blocks_per_chunk * dilation;
    auto span_values = at::empty({channels, span}, options);
    auto span_scratch = at::empty({channels, span}, options);
    auto transformed = at::empty({n, channels, max_tiles}, options);
    auto products = at::empty({n, out_channels, max_tiles}, options);
    auto out_values = at::empty({out_channels, out_span}, options);
    auto out_scratch = at::empty({out_channels, out_span}, options);
    std::vector<float> phases(span), out_phases(out_span);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t item = job / n_chunks, first_block = (job % n_chunks) * blocks_per_chunk;
      const int64_t nbc = std::min(blocks_per_chunk, n_blocks - first_block), tiles = nbc * dilation;
      const int64_t start = (first_block - lead_blocks) * block;
      // 1. The input span, zero outside the signal (snake(0) = 0), through the first Snake.
      float* sv = span_values.data_ptr<float>();
      const float* item_input = x + item * channels * length;
      const int64_t lo = std::clamp<int64_t>(-start, 0, span), hi = std::clamp<int64_t>(length - start, lo, span);
      for (int64_t c = 0; c < channels; ++c) {
        float* row = sv + c * span;
        std::fill(row, row + lo, 0.f);
        std::copy(item_input + c * length + start + lo, item_input + c * length + start + hi, row + lo);
        std::fill(row + hi, row + span, 0.f);
      }
      snake_(span_values, alpha1, inv_alpha1, span_scratch);
      // 2. Input transform, one channel at a time through a phase-major copy of its span.
      auto transformed_view = at::from_blob(transformed.data_ptr<float>(), {n, channels, tiles}, options);
      float* tv = transformed_view.data_ptr<float>();
      for (int64_t c = 0; c < channels; ++c) {
        const float* row = sv + c * span;
        for (int64_t j = 0; j < span_blocks; ++j)
          for (int64_t ph = 0; ph < block; ++ph) phases[ph * span_blocks + j] = row[j * block + ph];
        for (int64_t p = 0; p < n; ++p) {
          for (int64_t r = 0; r < dilation; ++r) {
            float* dst = tv + (p * channels + c) * tiles + r * nbc;
            std::fill(dst, dst + nbc, 0.f);
            for (int64_t u = 0; u < n; ++u) {
              const float coefficient = bt[p * n + u];
              if (coefficient == 0.f) continue;
              const int64_t tap = u + shift;
              const float* src = phases.data() + ((tap % m) * dilation + r) * span_blocks + tap / m;
              for (int64_t bb = 0; bb < nbc; ++bb) dst[bb] += coefficient * src[bb];
            }
          }
        }
      }
      // 3. One matrix product per transform point.
      auto products_view = at::from_blob(products.data_ptr<float>(), {n, out_channels, tiles}, options);
      at::bmm_out(products_view, transformed_weight, transformed_view);
      // 4. Output transform and bias, back to time order, then the second Snake.
      const float* pv = products_view.data_ptr<float>();
      float* ov = out_values.data_ptr<float>();
      const int64_t out_length = nbc * block;
      for (int64_t co = 0; co < out_channels; ++co) {
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t r = 0; r < dilation; ++r) {
            float* dst = out_phases.data() + (i * dilation + r) * nbc;
            std::fill(dst, dst + nbc, b[co]);
            for (int64_t p = 0; p < n; ++p) {
              const float coefficient = at[i * n + p];
              if (coefficient == 0.f) continue;
              const float* src = pv + (p * out_channels + co) * tiles + r * nbc;
              for (int64_t bb = 0; bb < nbc; ++bb) dst[bb] += coefficient * src[bb];
            }
          }
        }
        float* out_row = ov + co * out_length;
        for (int64_t bb = 0; bb < nbc; ++bb)
          for (int64_t ph = 0; ph < block; ++ph) out_row[bb * block + ph] = out_phases[ph * nbc + bb];
      }
      auto out_view = at::from_blob(ov, {out_channels, out_length}, options);
      auto scratch_view = at::from_blob(out_scratch.data_ptr<float>(), {out_channels, out_length}, options);
      snake_(out_view, alpha2, inv_alpha2, scratch_view);
      const int64_t valid = std::min(out_length, length - first_block * block);
      float* item_output = y + item * out_channels * length + first_block * block;
      for (int64_t co = 0; co < out_channels; ++co)
        std::copy(ov + co * out_length, ov + co * out_length + valid, item_output + co * length);
    }
  });
  return output;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("snake_conv_snake", &snake_conv_snake, "Snake, Winograd F(m, 7) dilated convolution, bias, Snake");
}
