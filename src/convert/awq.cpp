// AWQ pre-scaling: scale formula, per-layer fold plan for Gemma 4, and the row/norm numerics
// (see awq.h; mlx-quant-format.md §6).
#include "convert/awq.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include "core/dtype.h"
#include "core/error.h"
#include "model/gemma4/config.h"

namespace mlxq::quant {

std::vector<float> awq_scales(const std::vector<const std::vector<float>*>& importances) {
  check(!importances.empty(), "awq_scales: no importance vectors");
  for (const auto* v : importances) check(v != nullptr, "awq_scales: null importance vector");
  const size_t n = importances[0]->size();
  std::vector<float> s(n, 0.0f);
  for (const auto* v : importances) {
    check(v->size() == n, "awq_scales: importance vectors of different lengths (" + std::to_string(n) +
                              " and " + std::to_string(v->size()) + ")");
    for (size_t j = 0; j < n; ++j) {
      check(std::isfinite((*v)[j]), "awq_scales: importance " + std::to_string(j) + " is not finite");
      s[j] = std::max(s[j], (*v)[j]);
    }
  }
  if (n == 0) return s;
  for (float& x : s) x = std::sqrt(std::max(x, 1e-8f));
  const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
  // Normalise by the geometric mean of the extremes (in f64: the product may exceed f32).
  const float norm = float(std::max(std::sqrt(double(*hi) * double(*lo)), 1e-8));
  for (float& x : s) x /= norm;
  return s;
}

void awq_scale_row(float* row, int64_t n, const std::vector<float>* column_scale, float row_scale) {
  if (!column_scale) {
    for (int64_t j = 0; j < n; ++j) row[j] = round_bf16(row[j] * row_scale);
    return;
  }
  check(int64_t(column_scale->size()) == n, "awq_scale_row: " + std::to_string(column_scale->size()) +
                                                " column scales for a row of " + std::to_string(n));
  const float* s = column_scale->data();
  for (int64_t j = 0; j < n; ++j) row[j] = round_bf16(row[j] * s[j] * row_scale);
}

float awq_norm(float w, float s) { return round_bf16(w / s); }

namespace {

using model::gemma4::Gemma4Config;

class Planner {
 public:
  Planner(const std::map<std::string, Importance>& imp, const Gemma4Config& cfg, AwqPlan& plan)
      : imp_(imp), cfg_(cfg), plan_(plan) {}

  // The importance of `key` as the max over its matrices, validated against the weight's input
  // size `n` (named `what` in messages); nullopt when the imatrix has no such entry. With
  // `flat_experts`, one matrix of num_experts * n values counts as num_experts matrices.
  std::optional<std::vector<float>> get(const std::string& key, int64_t n, const char* what,
                                        bool flat_experts = false) {
    auto it = imp_.find(key);
    if (it == imp_.end() || it->second.per_matrix.empty()) return std::nullopt;
    std::vector<float> out(size_t(n), 0.0f);
    for (const auto& v : it->second.per_matrix) {
      const int64_t len = int64_t(v.size());
      const bool flat = flat_experts && cfg_.num_experts > 1 && len == cfg_.num_experts * n;
      check(len == n || flat, "imatrix entry " + key + ": importance has " + std::to_string(len) +
                                  " values, expected " + what + " = " + std::to_string(n) +
                                  " (is the imatrix for this model?)");
      for (int64_t j = 0; j < len; ++j) {
        check(std::isfinite(v[size_t(j)]),
              "imatrix entry " + key + ": importance " + std::to_string(j) + " is not finite");
        float& o = out[size_t(j % n)];
        o = std::max(o, v[size_t(j)]);
      }
    }
    return out;
  }

  void columns(const std::string& module, const std::vector<float>& s, const std::string& group,
               const std::string& target) {
    plan_.column_scale[module] = s;
    plan_.report.push_back(module + " <- columns * s" + group + " (fold into " + target + ")");
  }
  void rows(const std::string& module, const std::vector<float>& r, const std::string& group,
            const std::string& source) {
    plan_.row_scale[module] = r;
    plan_.report.push_back(module + " <- rows / s" + group + " (fold of " + source + " columns)");
  }
  void norm(const std::string& name, const std::vector<float>& s, const std::string& group,
            const std::string& sources) {
    plan_.norm_divide[name] = s;
    plan_.report.push_back(name + " <- weight / s" + group + " (fold of " + sources + " columns)");
  }
  void skip(const std::string& line) { plan_.report.push_back(line); }

 private:
  const std::map<std::string, Importance>& imp_;
  const Gemma4Config& cfg_;
  AwqPlan& plan_;
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

AwqPlan plan_awq(const std::map<std::string, Importance>& imp, const Gemma4Config& cfg,
                 bool include_experts) {
  AwqPlan plan;
  Planner p(imp, cfg, plan);
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
  int n_a = 0, n_b = 0, n_c = 0, n_e = 0;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string P = "layers." + std::to_string(l) + ".";

    // Group A: the dense MLP's input, d = RMSNorm(h; pre_feedforward_layernorm).
    {
      auto g = p.get(P + "mlp.gate_proj", H, "hidden_size");
      auto u = p.get(P + "mlp.up_proj", H, "hidden_size");
      std::vector<const std::vector<float>*> v;
      if (g) v.push_back(&*g);
      if (u) v.push_back(&*u);
      if (v.empty()) {
        p.skip(P + "* group A (dense MLP) skipped: no imatrix entry for mlp.gate_proj or mlp.up_proj");
      } else {
        const auto s = awq_scales(v);
        const std::string target = P + "pre_feedforward_layernorm";
        p.columns(P + "mlp.gate_proj", s, "[A]", target);
        p.columns(P + "mlp.up_proj", s, "[A]", target);
        p.norm(target, s, "[A]", P + "mlp.gate_proj, " + P + "mlp.up_proj");
        ++n_a;
      }
    }

    // Group B: down_proj's input gelu(a_g) * a_u is linear in up_proj's rows (GeGLU).
    if (auto d = p.get(P + "mlp.down_proj", I, "intermediate_size")) {
      const auto s = awq_scales({&*d});
      std::vector<float> r(s.size());
      for (size_t i = 0; i < s.size(); ++i) r[i] = 1.0f / s[i];
      p.columns(P + "mlp.down_proj", s, "[B]", P + "mlp.up_proj rows");
      p.rows(P + "mlp.up_proj", r, "[B]", P + "mlp.down_proj");
      ++n_b;
    } else {
      p.skip(P + "* group B (mlp.down_proj) skipped: no imatrix entry for mlp.down_proj");
    }

    // Group C: attention input a = RMSNorm(x; input_layernorm). Full layers with K = V read it
    // through q_proj and k_proj only (raw k is also V, so V needs no compensation; §6.4.3).
    {
      std::vector<std::string> mods = {"self_attn.q_proj", "self_attn.k_proj"};
      if (cfg.has_v_proj(l)) mods.push_back("self_attn.v_proj");
      std::vector<std::optional<std::vector<float>>> vals;
      std::vector<std::string> missing;
      for (const auto& m : mods) {
        vals.push_back(p.get(P + m, H, "hidden_size"));
        if (!vals.back()) missing.push_back(m);
      }
      if (!missing.empty()) {
        p.skip(P + "* group C (attention, " + std::string(cfg.is_sliding(l) ? "sliding" : "full") +
               " layer) skipped: no imatrix entry for " + join(missing) + " (needs " + join(mods) + ")");
      } else {
        std::vector<const std::vector<float>*> v;
        for (const auto& x : vals) v.push_back(&*x);
        const auto s = awq_scales(v);
        const std::string target = P + "input_layernorm";
        std::vector<std::string> full;
        for (const auto& m : mods) {
          p.columns(P + m, s, "[C]", target);
          full.push_back(P + m);
        }
        p.norm(target, s, "[C]", join(full));
        ++n_c;
      }
    }

    // Experts: u = RMSNorm(h; pre_feedforward_layernorm_2) feeds only gate_up (the router reads h).
    if (include_experts && cfg.enable_moe_block) {
      if (auto e = p.get(P + "experts.gate_up", H, "hidden_size", true)) {
        const auto s = awq_scales({&*e});
        const std::string target = P + "pre_feedforward_layernorm_2";
        p.columns(P + "experts.gate_up", s, "[E]", target);
        p.norm(target, s, "[E]", P + "experts.gate_up");
        ++n_e;
      } else {
        p.skip(P + "* experts group skipped: no imatrix entry for experts.gate_up (with a count > 0)");
      }
    }
  }

  std::set<std::string> weights;
  for (const auto& [k, v] : plan.column_scale) weights.insert(k);
  for (const auto& [k, v] : plan.row_scale) weights.insert(k);
  plan.modified = int(weights.size() + plan.norm_divide.size());
  const std::string L = "/" + std::to_string(cfg.num_hidden_layers);
  const std::string experts =
      include_experts && cfg.enable_moe_block ? std::to_string(n_e) + L : std::string("off");
  plan.report.push_back("AWQ matched layers: group A " + std::to_string(n_a) + L + ", group B " +
                        std::to_string(n_b) + L + ", group C " + std::to_string(n_c) + L + ", experts " + experts +
                        "; modified " + std::to_string(plan.modified) + " tensors");
  return plan;
}

}  // namespace mlxq::quant
