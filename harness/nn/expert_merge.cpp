#include "lory/nn/expert_merge.h"

#include "lory/nn/feed_forward.h"
#include "lory/nn/precision.h"

namespace lory {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Merged weights of segments [start, end): three GEMMs of [C, E] x [E, F*D]. Their inputs are in
// the precision of the FFN's matmuls (`compute`): under bf16 the merge is a bf16 GEMM with fp32
// accumulation whose output is the bf16 merged weight the FFN needs. Merging in fp32 and casting
// after would write and read every merged weight twice more: at short segments the merged
// weights outweigh the segment's activations (F*D against T*D), and that traffic is the layer's
// cost, so bf16 would buy nothing (measured: 238 against 244 ms, E = 8, T = 64, d 256).
struct MergedChunk {
  torch::Tensor gate_CFD, up_CFD, down_CDF;
};

MergedChunk merge_chunk(const torch::Tensor& w_CE, const torch::Tensor& gate_EFD,
                        const torch::Tensor& up_EFD, const torch::Tensor& down_EDF) {
  const int64_t C = w_CE.size(0), E = gate_EFD.size(0), F = gate_EFD.size(1), D = gate_EFD.size(2);
  return {torch::mm(w_CE, gate_EFD.reshape({E, F * D})).view({C, F, D}),
          torch::mm(w_CE, up_EFD.reshape({E, F * D})).view({C, F, D}),
          torch::mm(w_CE, down_EDF.reshape({E, D * F})).view({C, D, F})};
}

class MergedExpertFFN : public torch::autograd::Function<MergedExpertFFN> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x_STD,
                               const torch::Tensor& w_SE, const torch::Tensor& gate_EFD,
                               const torch::Tensor& up_EFD, const torch::Tensor& down_EDF,
                               int64_t chunk_segments) {
    RECORD_FUNCTION("lory::merged_expert_ffn", std::vector<c10::IValue>());
    // The FFN's matmuls run in `compute` (bf16 under trainer.precision = "bf16", as autocast would
    // run a dense FFN's), casting explicitly: autocast does not see the *_out kernels below.
    const torch::ScalarType compute = matmul_dtype(x_STD);
    NoAutocast explicit_casts;
    const torch::Tensor xc_STD = x_STD.to(compute), wc_SE = w_SE.to(compute);
    const torch::Tensor gatec_EFD = gate_EFD.to(compute), upc_EFD = up_EFD.to(compute),
                        downc_EDF = down_EDF.to(compute);
    const int64_t S = x_STD.size(0), T = x_STD.size(1), D = x_STD.size(2), F = gate_EFD.size(1);
    torch::Tensor y_STD = torch::empty({S, T, D}, xc_STD.options());
    // The FFN's own activations are kept, as a dense FFN's autograd would keep them; only the
    // merged weights (E/T times smaller per token, but per segment) are recomputed.
    torch::Tensor gate_pre_STF = torch::empty({S, T, F}, xc_STD.options());
    torch::Tensor up_pre_STF = torch::empty({S, T, F}, xc_STD.options());
    for (int64_t start = 0; start < S; start += chunk_segments) {
      const int64_t end = std::min(S, start + chunk_segments);
      const MergedChunk merged =
          merge_chunk(wc_SE.slice(0, start, end), gatec_EFD, upc_EFD, downc_EDF);
      const torch::Tensor x_CTD = xc_STD.slice(0, start, end);
      torch::Tensor gate_pre_CTF = gate_pre_STF.slice(0, start, end);
      torch::Tensor up_pre_CTF = up_pre_STF.slice(0, start, end);
      torch::bmm_out(gate_pre_CTF, x_CTD, merged.gate_CFD.transpose(1, 2));
      torch::bmm_out(up_pre_CTF, x_CTD, merged.up_CFD.transpose(1, 2));
      const torch::Tensor hidden_CTF = torch::silu(gate_pre_CTF) * up_pre_CTF;
      torch::Tensor y_CTD = y_STD.slice(0, start, end);
      torch::bmm_out(y_CTD, hidden_CTF, merged.down_CDF.transpose(1, 2));
    }
    ctx->save_for_backward({xc_STD, w_SE, gate_EFD, up_EFD, down_EDF, gate_pre_STF, up_pre_STF});
    ctx->saved_data["chunk"] = chunk_segments;
    ctx->saved_data["x_dtype"] = static_cast<int64_t>(x_STD.scalar_type());
    return y_STD;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    RECORD_FUNCTION("lory::merged_expert_ffn_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    NoAutocast explicit_casts;
    const torch::Tensor &x_STD = saved[0], &w_SE = saved[1], &gate_EFD = saved[2],
                        &up_EFD = saved[3], &down_EDF = saved[4], &gate_pre_STF = saved[5],
                        &up_pre_STF = saved[6];
    const int64_t chunk_segments = ctx->saved_data["chunk"].toInt();
    // x_STD is the saved copy in the matmuls' precision. The gradients of the experts and of the
    // merge weights are accumulated in their own (fp32) precision from the compute-precision GEMMs.
    const torch::ScalarType compute = x_STD.scalar_type();
    const bool cast = compute != gate_EFD.scalar_type();
    const torch::Tensor wc_SE = w_SE.to(compute);
    const torch::Tensor gatec_EFD = gate_EFD.to(compute), upc_EFD = up_EFD.to(compute),
                        downc_EDF = down_EDF.to(compute);
    const torch::Tensor dy_STD = grad_outputs[0].to(compute).contiguous();
    const int64_t S = x_STD.size(0), E = gate_EFD.size(0), F = gate_EFD.size(1),
                  D = gate_EFD.size(2);
    torch::Tensor dx_STD = torch::empty_like(x_STD);
    torch::Tensor dw_SE = torch::empty_like(w_SE);
    torch::Tensor dgate_EFD = torch::zeros_like(gate_EFD), dup_EFD = torch::zeros_like(up_EFD),
                  ddown_EDF = torch::zeros_like(down_EDF);
    const torch::Tensor gate_flat = gatec_EFD.reshape({E, F * D}),
                        up_flat = upc_EFD.reshape({E, F * D}),
                        down_flat = downc_EDF.reshape({E, D * F});
    for (int64_t start = 0; start < S; start += chunk_segments) {
      const int64_t end = std::min(S, start + chunk_segments);
      const int64_t C = end - start;
      const torch::Tensor w_CE = wc_SE.slice(0, start, end);
      const MergedChunk merged = merge_chunk(w_CE, gatec_EFD, upc_EFD, downc_EDF);
      const torch::Tensor x_CTD = x_STD.slice(0, start, end);
      const torch::Tensor dy_CTD = dy_STD.slice(0, start, end);
      const torch::Tensor gate_pre_CTF = gate_pre_STF.slice(0, start, end);
      const torch::Tensor up_pre_CTF = up_pre_STF.slice(0, start, end);
      // Elementwise work kept to what a dense FFN's autograd does: silu, the product, its two
      // gradients and one fused silu backward.
      const torch::Tensor gate_act_CTF = torch::silu(gate_pre_CTF);
      const torch::Tensor hidden_CTF = gate_act_CTF * up_pre_CTF;
      // Per-segment weight gradients of the merged FFN (dW̄), as a dense FFN would compute them.
      const torch::Tensor ddown_CDF = torch::bmm(dy_CTD.transpose(1, 2), hidden_CTF);
      torch::Tensor dhidden_CTF = torch::bmm(dy_CTD, merged.down_CDF);
      const torch::Tensor dup_pre_CTF = dhidden_CTF * gate_act_CTF;
      const torch::Tensor dgate_pre_CTF =
          torch::silu_backward(dhidden_CTF.mul_(up_pre_CTF), gate_pre_CTF);
      torch::Tensor dx_CTD = dx_STD.slice(0, start, end);
      torch::bmm_out(dx_CTD, dgate_pre_CTF, merged.gate_CFD);
      dx_CTD.baddbmm_(dup_pre_CTF, merged.up_CFD);
      const torch::Tensor dgate_CFD = torch::bmm(dgate_pre_CTF.transpose(1, 2), x_CTD);
      const torch::Tensor dup_CFD = torch::bmm(dup_pre_CTF.transpose(1, 2), x_CTD);
      // Back through the merge: dW_E += wᵀ dW̄ and dw = dW̄ W_Eᵀ, both GEMMs.
      const torch::Tensor dgate_flat = dgate_CFD.reshape({C, F * D}),
                          dup_flat = dup_CFD.reshape({C, F * D}),
                          ddown_flat = ddown_CDF.reshape({C, D * F});
      torch::Tensor dw_CE = dw_SE.slice(0, start, end);
      if (cast) {
        // [E, F*D] and [C, E] results: small next to dW̄, so the fp32 accumulation costs little.
        dgate_EFD.view({E, F * D}).add_(torch::mm(w_CE.t(), dgate_flat));
        dup_EFD.view({E, F * D}).add_(torch::mm(w_CE.t(), dup_flat));
        ddown_EDF.view({E, D * F}).add_(torch::mm(w_CE.t(), ddown_flat));
        dw_CE.copy_(torch::mm(dgate_flat, gate_flat.t()));
        dw_CE.add_(torch::mm(dup_flat, up_flat.t())).add_(torch::mm(ddown_flat, down_flat.t()));
        continue;
      }
      dgate_EFD.view({E, F * D}).addmm_(w_CE.t(), dgate_flat);
      dup_EFD.view({E, F * D}).addmm_(w_CE.t(), dup_flat);
      ddown_EDF.view({E, D * F}).addmm_(w_CE.t(), ddown_flat);
      torch::mm_out(dw_CE, dgate_flat, gate_flat.t());
      dw_CE.addmm_(dup_flat, up_flat.t()).addmm_(ddown_flat, down_flat.t());
    }
    const auto x_dtype = static_cast<torch::ScalarType>(ctx->saved_data["x_dtype"].toInt());
    return {dx_STD.to(x_dtype), dw_SE, dgate_EFD, dup_EFD, ddown_EDF, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor merged_expert_ffn(const torch::Tensor& x_STD, const torch::Tensor& w_SE,
                                const ExpertWeights& experts, int64_t chunk_segments) {
  return MergedExpertFFN::apply(x_STD.contiguous(), w_SE.contiguous(), experts.w_gate_EFD,
                                experts.w_up_EFD, experts.w_down_EDF,
                                std::max<int64_t>(1, chunk_segments));
}

torch::Tensor merged_expert_ffn_reference(const torch::Tensor& x_STD, const torch::Tensor& w_SE,
                                          const ExpertWeights& experts) {
  const int64_t S = x_STD.size(0), E = experts.w_gate_EFD.size(0);
  std::vector<torch::Tensor> outputs;
  for (int64_t s = 0; s < S; ++s) {
    torch::Tensor gate_FD = w_SE[s][0] * experts.w_gate_EFD[0];
    torch::Tensor up_FD = w_SE[s][0] * experts.w_up_EFD[0];
    torch::Tensor down_DF = w_SE[s][0] * experts.w_down_EDF[0];
    for (int64_t e = 1; e < E; ++e) {
      gate_FD = gate_FD + w_SE[s][e] * experts.w_gate_EFD[e];
      up_FD = up_FD + w_SE[s][e] * experts.w_up_EFD[e];
      down_DF = down_DF + w_SE[s][e] * experts.w_down_EDF[e];
    }
    outputs.push_back(swiglu(x_STD[s], gate_FD, up_FD, down_DF));
  }
  return torch::stack(outputs);
}

}  // namespace lory
