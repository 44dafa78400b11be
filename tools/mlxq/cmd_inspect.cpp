// `mlxq inspect`: config summary, tensor table, total size and bytes read per decoded token.
#include <cstdio>

#include "mlxq/commands.h"
#include "model/gemma4/model.h"

namespace mlxq::cli {

void register_inspect(CLI::App& app) {
  auto model_path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("inspect", "Summarise a checkpoint: config, tensors, sizes");
  cmd->add_option("-m,--model", *model_path, "Checkpoint directory")->required();
  cmd->callback([model_path] {
    model::gemma4::ModelOptions mo;
    mo.threads = 1;
    mo.max_chunk = 1;
    model::gemma4::Model model(*model_path, mo);
    const auto& c = model.config();
    const auto& ck = model.checkpoint();
    int n_full = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) n_full += c.is_sliding(l) ? 0 : 1;
    std::printf("checkpoint   %s (%s layout, %zu file(s))\n", ck.dir().c_str(),
                model.weights().layout == model::gemma4::Layout::HF ? "HF" : "MLX", ck.files().size());
    const char* none = "none in use (`mlxq repack` writes one; only the AVX-512 int8 kernel reads it)";
    std::printf("interleaved  %s\n", model.interleaved_path().empty() ? none : model.interleaved_path().c_str());
    std::printf("layers       %lld (%lld sliding, window %lld; %d full)\n", (long long)c.num_hidden_layers,
                (long long)(c.num_hidden_layers - n_full), (long long)c.sliding_window, n_full);
    std::printf("hidden       %lld, heads %lld, kv heads %lld/%lld, head dim %lld/%lld (sliding/full)\n",
                (long long)c.hidden_size, (long long)c.num_attention_heads, (long long)c.num_key_value_heads,
                (long long)c.num_global_key_value_heads, (long long)c.head_dim, (long long)c.global_head_dim);
    std::printf("mlp          dense %lld + %lld experts (top %lld) of %lld\n", (long long)c.intermediate_size,
                (long long)c.num_experts, (long long)c.top_k_experts, (long long)c.moe_intermediate_size);
    std::printf("vocab        %lld, softcap %.1f\n", (long long)c.vocab_size, c.final_logit_softcapping);
    if (c.vision) {
      const auto& v = *c.vision;
      uint64_t vb = 0;
      size_t vn = 0;
      for (const auto& [name, t] : ck.tensors())
        if (name.find("vision_tower.") != std::string::npos || name.find("embed_vision.") != std::string::npos) {
          vb += t->nbytes;
          ++vn;
        }
      std::printf("vision       %lld layers, width %lld, MLP %lld, %lld heads of %lld, patch %lld, pool %lld, "
                  "%lld soft tokens per image by default; %zu tensors, %.3f GB\n",
                  (long long)v.num_hidden_layers, (long long)v.hidden_size, (long long)v.intermediate_size,
                  (long long)v.num_attention_heads, (long long)v.head_dim, (long long)v.patch_size,
                  (long long)v.pooling_kernel_size, (long long)v.default_output_length, vn, double(vb) / 1e9);
      std::printf("image ids    <|image> %lld, <|image|> %lld, <image|> %lld\n", (long long)c.boi_token_id,
                  (long long)c.image_token_id, (long long)c.eoi_token_id);
    } else {
      std::printf("vision       none (text only)\n");
    }
    if (c.quantization)
      std::printf("quantization affine, default %d bits / group %d, %zu overrides\n", c.quantization->base.bits,
                  c.quantization->base.group_size, c.quantization->overrides.size());
    else
      std::printf("quantization none\n");
    std::printf("\n%-72s %-5s %-22s %s\n", "tensor", "dtype", "shape", "quant");
    for (const auto& [name, t] : ck.tensors()) {
      std::string q = "-";
      if (name.ends_with(".weight") && c.quantization) {
        const std::string module = name.substr(0, name.size() - 7);
        if (ck.find(module + ".scales")) {
          const auto s = c.quantization->spec_for(module);
          q = std::to_string(s.bits) + "-bit g" + std::to_string(s.group_size);
        }
      }
      std::printf("%-72s %-5s %-22s %s\n", name.c_str(), dtype_name(t->dtype), t->shape_str().c_str(), q.c_str());
    }
    std::printf("\ntensors      %zu\n", ck.tensors().size());
    std::printf("total size   %.3f GB (%llu bytes)\n", double(ck.total_bytes()) / 1e9,
                (unsigned long long)ck.total_bytes());
    std::printf("per token    %.3f GB read per decoded token (weights)\n", double(model.bytes_per_token()) / 1e9);
  });
}

}  // namespace mlxq::cli
