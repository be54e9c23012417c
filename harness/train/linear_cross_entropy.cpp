#include "linear_cross_entropy.h"

#include <algorithm>

#include "lory/nn/precision.h"

namespace lory {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h_ND,
                               const torch::Tensor& weight_VD, const torch::Tensor& targets_N,
                               int64_t chunk_rows, bool h_grad, bool weight_grad) {
    RECORD_FUNCTION("lory::linear_cross_entropy", std::vector<c10::IValue>());
    const int64_t N = h_ND.size(0), D = h_ND.size(1), V = weight_VD.size(0);
    TORCH_CHECK(weight_VD.size(1) == D, "linear_cross_entropy: hidden width ", D,
                " but the output weight is [", V, ", ", weight_VD.size(1), "]");
    TORCH_CHECK(targets_N.dim() == 1 && targets_N.size(0) == N, "linear_cross_entropy: ", N,
                " rows but targets of shape ", targets_N.sizes());
    TORCH_CHECK(N > 0, "linear_cross_entropy: no rows");
    // Under bf16 matmuls (trainer.precision) the three GEMMs take bf16 copies of h and W, made once
    // per call; the logits come back to fp32 before the softmax, and the loss and both gradients
    // are fp32 (dW accumulates in fp32 over the chunks). Autocast is off inside: it does not see
    // the *_out kernels, and the casts here are the only ones wanted.
    const torch::ScalarType compute = matmul_dtype(h_ND);
    NoAutocast explicit_casts;
    const bool cast = compute != h_ND.scalar_type();
    const torch::Tensor hc_ND = h_ND.to(compute), weightc_VD = weight_VD.to(compute);
    const torch::Tensor targets_N1 = targets_N.to(torch::kInt64).view({N, 1});
    const torch::Tensor weight_DV = weightc_VD.t();
    torch::Tensor dh_ND = h_grad ? torch::empty_like(h_ND) : torch::Tensor();
    torch::Tensor dweight_VD = weight_grad ? torch::zeros_like(weight_VD) : torch::Tensor();
    // The loss is summed in float64 per chunk: N can be 10^5 rows, and the mean must not depend
    // on the chunk size beyond the last fp32 bit. A tensor, not a host double: reading each
    // chunk's sum back would stop the loop once per chunk on an asynchronous device.
    torch::Tensor loss_sum = torch::zeros({}, h_ND.options().dtype(torch::kFloat64));
    const double inverse_rows = 1.0 / static_cast<double>(N);
    for (int64_t start = 0; start < N; start += chunk_rows) {
      const int64_t end = std::min(N, start + chunk_rows);
      const torch::Tensor h_CD = h_ND.slice(0, start, end);
      const torch::Tensor t_C1 = targets_N1.slice(0, start, end);
      // One exp per logit: exp(logits - max) in place gives both the log-sum-exp and, scaled by
      // 1 / (sum * N), the softmax part of the gradient (logsumexp + exp would take two).
      torch::Tensor logits_CV =
          torch::mm(hc_ND.slice(0, start, end), weight_DV).to(h_ND.scalar_type());
      const torch::Tensor max_C1 = std::get<0>(logits_CV.max(1, /*keepdim=*/true));
      const torch::Tensor target_C1 = logits_CV.gather(1, t_C1);
      torch::Tensor grad_CV = logits_CV.sub_(max_C1).exp_();
      const torch::Tensor sum_C1 = grad_CV.sum(1, /*keepdim=*/true);
      loss_sum += (sum_C1.log() + max_C1 - target_C1).sum().to(torch::kFloat64);
      if (!h_grad && !weight_grad) continue;
      // d loss / d logits = (softmax - one_hot) / N, formed in the logits' own storage.
      grad_CV.mul_(sum_C1.reciprocal().mul_(inverse_rows));
      grad_CV.scatter_add_(1, t_C1,
                           torch::full({end - start, 1}, -inverse_rows, grad_CV.options()));
      if (cast) {
        const torch::Tensor gradc_CV = grad_CV.to(compute);
        if (h_grad) dh_ND.slice(0, start, end).copy_(torch::mm(gradc_CV, weightc_VD));
        if (weight_grad) dweight_VD.add_(torch::mm(gradc_CV.t(), hc_ND.slice(0, start, end)));
        continue;
      }
      if (h_grad) {
        torch::Tensor dh_CD = dh_ND.slice(0, start, end);
        torch::mm_out(dh_CD, grad_CV, weight_VD);
      }
      if (weight_grad) dweight_VD.addmm_(grad_CV.t(), h_CD);
    }
    ctx->save_for_backward({dh_ND, dweight_VD});
    return (loss_sum * inverse_rows).to(h_ND.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& scale = grad_outputs[0];
    const torch::Tensor dh_ND = saved[0].defined() ? saved[0] * scale : torch::Tensor();
    const torch::Tensor dweight_VD = saved[1].defined() ? saved[1] * scale : torch::Tensor();
    return {dh_ND, dweight_VD, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

int64_t default_loss_chunk_rows(int64_t vocab) {
  constexpr int64_t kChunkFloats = int64_t{1} << 19;
  return std::max<int64_t>(16, kChunkFloats / std::max<int64_t>(1, vocab));
}

torch::Tensor linear_cross_entropy(const torch::Tensor& h_ND, const torch::Tensor& weight_VD,
                                   const torch::Tensor& targets_N, int64_t chunk_rows) {
  if (chunk_rows <= 0) {
    chunk_rows = default_loss_chunk_rows(weight_VD.size(0));
    // oneDNN's bf16 GEMM wants taller chunks than OpenBLAS's fp32 one ([64, 128] x [128, 8192]:
    // 310 GFLOP/s, [256, 128] x ...: 500, measured here); the chunk's logits stay cache-sized.
    if (matmul_dtype(h_ND) == torch::kBFloat16) chunk_rows *= 4;
  }
  // Which gradients to form in the forward pass, decided here: inside forward() grad mode is off,
  // and without a graph (no grad mode, no input needing one) the context cannot be asked.
  const bool recording = torch::GradMode::is_enabled();
  return LinearCrossEntropy::apply(h_ND.contiguous(), weight_VD, targets_N, chunk_rows,
                                   recording && h_ND.requires_grad(),
                                   recording && weight_VD.requires_grad());
}

torch::Tensor language_model_loss(LanguageModel& model, const torch::Tensor& inputs_BL,
                                  const torch::Tensor& targets_BL, RoutingContext& context,
                                  LmLossPath path) {
  const torch::Tensor weight_VD =
      path == LmLossPath::Chunked ? model.output_projection_VD() : torch::Tensor();
  if (weight_VD.defined()) {
    const torch::Tensor h_BLD = model.hidden_states(inputs_BL, context);
    return linear_cross_entropy(h_BLD.reshape({-1, h_BLD.size(-1)}), weight_VD,
                                targets_BL.reshape({-1}));
  }
  const torch::Tensor logits_BLV = model.forward(inputs_BL, context);
  return torch::nn::functional::cross_entropy(logits_BLV.reshape({-1, logits_BLV.size(-1)}),
                                              targets_BL.reshape({-1}));
}

}  // namespace lory
