// Batch norm in training mode on channels-last fp32 CPU tensors, with a
// backward pass of our own (see src/models/batch_norm.rs for why and when).
//
// The forward pass is libtorch's (`_native_batch_norm_legit`: the output, the
// batch mean and 1/sqrt(var + eps), the running statistics updated in place).
// The backward pass sees the activation as a [rows, C] matrix and walks it in
// periods of `period = C * k` floats, k the smallest count of rows that makes the
// period a multiple of 16 floats: per-period arrays of the per-channel factors
// turn every loop into one the compiler vectorises whatever C is. Two passes over
// the gradient and the input: the sums per channel, then the input's gradient.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

// On x86-64 the loops are compiled for AVX-512, AVX2 and the baseline, and the
// loader picks the widest the CPU has; elsewhere for the baseline.
#if defined(__x86_64__) && defined(__GNUC__)
#define SCOP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SCOP_VECTOR_CLONES
#endif

namespace {

// Rows of one period summed in fp32 before they are added to the fp64 totals.
constexpr int64_t kBlockRows = 512;

// sum_g[l] += g[r][l] and sum_gx[l] += g[r][l] * (x[r][l] - mean[l]) over `rows` periods.
SCOP_VECTOR_CLONES
void sum_rows(const float* __restrict g, const float* __restrict x, const float* __restrict mean,
              float* __restrict sum_g, float* __restrict sum_gx, int64_t rows, int64_t period) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * period;
    const float* xr = x + r * period;
    for (int64_t l = 0; l < period; ++l) {
      const float gv = gr[l];
      sum_g[l] += gv;
      sum_gx[l] += gv * (xr[l] - mean[l]);
    }
  }
}

// out = scale * (g - shift - (x - mean) * proj), per position of the period.
SCOP_VECTOR_CLONES
void input_grad(const float* __restrict g, const float* __restrict x, float* __restrict out,
                const float* __restrict mean, const float* __restrict scale, const float* __restrict shift,
                const float* __restrict proj, int64_t rows, int64_t period) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * period;
    const float* xr = x + r * period;
    float* o = out + r * period;
    for (int64_t l = 0; l < period; ++l) {
      o[l] = scale[l] * (gr[l] - shift[l] - (xr[l] - mean[l]) * proj[l]);
    }
  }
}

// The per-channel values `v` repeated to fill one period.
std::vector<float> tile(const std::vector<float>& v, int64_t period) {
  std::vector<float> out(period);
  for (int64_t l = 0; l < period; ++l) out[l] = v[l % v.size()];
  return out;
}

std::vector<float> to_vector(const at::Tensor& t) {
  auto c = t.contiguous();
  const float* p = c.const_data_ptr<float>();
  return std::vector<float>(p, p + c.numel());
}

struct ChannelsLastBatchNorm : public torch::autograd::Function<ChannelsLastBatchNorm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                            double momentum, double eps) {
    auto [y, mean, invstd] =
        at::_native_batch_norm_legit(x, weight, bias, running_mean, running_var, true, momentum, eps);
    ctx->save_for_backward({x, weight, mean, invstd});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const auto weight = to_vector(saved[1]);
    const auto mean = to_vector(saved[2]);
    const auto invstd = to_vector(saved[3]);
    const at::Tensor g = grads[0].contiguous(at::MemoryFormat::ChannelsLast);

    const int64_t c = x.size(1);
    const int64_t rows_c = x.numel() / c;  // rows of C floats
    const int64_t k = 16 / std::gcd<int64_t>(c, 16);
    const int64_t period = c * k;
    const int64_t rows = rows_c / k;  // whole periods
    const float* gp = g.const_data_ptr<float>();
    const float* xp = x.const_data_ptr<float>();
    const auto mean_p = tile(mean, period);

    // Per-channel sums: each task sums its share of periods in fp32 blocks into fp64.
    const int64_t tasks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kBlockRows));
    std::vector<double> partial(tasks * 2 * period, 0.0);
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> block(2 * period);
      for (int64_t t = begin; t < end; ++t) {
        double* total = &partial[t * 2 * period];
        for (int64_t r = rows * t / tasks, r1 = rows * (t + 1) / tasks; r < r1; r += kBlockRows) {
          std::fill(block.begin(), block.end(), 0.f);
          sum_rows(gp + r * period, xp + r * period, mean_p.data(), block.data(), block.data() + period,
                   std::min(kBlockRows, r1 - r), period);
          for (int64_t l = 0; l < 2 * period; ++l) total[l] += block[l];
        }
      }
    });
    std::vector<double> sum_g(c, 0.0), sum_gx(c, 0.0);
    for (int64_t t = 0; t < tasks; ++t) {
      for (int64_t l = 0; l < period; ++l) {
        sum_g[l % c] += partial[t * 2 * period + l];
        sum_gx[l % c] += partial[t * 2 * period + period + l];
      }
    }
    // The rows after the last whole period (fewer than k) go through the same loops
    // with a period of one row: each tiled array starts with one value per channel.
    const int64_t tail = rows_c - rows * k;
    const int64_t tail_at = rows * period;
    std::vector<float> tail_sums(2 * c, 0.f);
    sum_rows(gp + tail_at, xp + tail_at, mean_p.data(), tail_sums.data(), tail_sums.data() + c, tail, c);
    for (int64_t ch = 0; ch < c; ++ch) {
      sum_g[ch] += tail_sums[ch];
      sum_gx[ch] += tail_sums[c + ch];
    }

    // d loss / d x = γ·invstd · (g − mean(g) − (x − μ)·invstd² · mean(g·(x − μ))).
    auto grad_weight = at::empty({c}, x.options());
    auto grad_bias = at::empty({c}, x.options());
    float* gw = grad_weight.mutable_data_ptr<float>();
    float* gb = grad_bias.mutable_data_ptr<float>();
    std::vector<float> scale(c), shift(c), proj(c);
    for (int64_t ch = 0; ch < c; ++ch) {
      gw[ch] = static_cast<float>(sum_gx[ch] * invstd[ch]);
      gb[ch] = static_cast<float>(sum_g[ch]);
      scale[ch] = weight[ch] * invstd[ch];
      shift[ch] = static_cast<float>(sum_g[ch] / rows_c);
      proj[ch] = static_cast<float>(sum_gx[ch] / rows_c * invstd[ch] * invstd[ch]);
    }
    const auto scale_p = tile(scale, period), shift_p = tile(shift, period), proj_p = tile(proj, period);
    auto grad_x = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    float* op = grad_x.mutable_data_ptr<float>();
    at::parallel_for(0, rows, kBlockRows, [&](int64_t r0, int64_t r1) {
      input_grad(gp + r0 * period, xp + r0 * period, op + r0 * period, mean_p.data(), scale_p.data(),
                 shift_p.data(), proj_p.data(), r1 - r0, period);
    });
    input_grad(gp + tail_at, xp + tail_at, op + tail_at, mean_p.data(), scale_p.data(), shift_p.data(),
               proj_p.data(), tail, c);
    return {grad_x, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

thread_local std::string last_error;

}  // namespace

// The output of batch norm in training mode on `x` (a 4-D fp32 CPU tensor,
// channels-last) with the fp32 `weight` and `bias`, updating the running
// statistics; a new tensor the caller owns, or null with the reason in
// `scop_batch_norm_error`. The arguments are libtorch tensors as tch holds them.
extern "C" at::Tensor* scop_batch_norm_channels_last(const at::Tensor* x, const at::Tensor* weight,
                                                     const at::Tensor* bias, const at::Tensor* running_mean,
                                                     const at::Tensor* running_var, double momentum,
                                                     double eps) noexcept {
  try {
    TORCH_CHECK(x->dim() == 4 && x->is_cpu() && x->scalar_type() == at::kFloat &&
                    x->is_contiguous(at::MemoryFormat::ChannelsLast),
                "the input must be a 4-D fp32 CPU tensor laid out channels-last");
    TORCH_CHECK(weight->defined() && bias->defined() && weight->scalar_type() == at::kFloat &&
                    bias->scalar_type() == at::kFloat,
                "weight and bias must be fp32 tensors");
    return new at::Tensor(
        ChannelsLastBatchNorm::apply(*x, *weight, *bias, *running_mean, *running_var, momentum, eps));
  } catch (const c10::Error& e) {
    last_error = e.what_without_backtrace();
  } catch (const std::exception& e) {
    last_error = e.what();
  }
  return nullptr;
}

// Why the last failed call on this thread returned null.
extern "C" const char* scop_batch_norm_error() noexcept { return last_error.c_str(); }
