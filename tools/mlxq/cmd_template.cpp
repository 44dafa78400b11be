// `mlxq template`: renders messages (and tools) with the native Gemma-4 chat template, printing
// the prompt exactly, with nothing added.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "mlxq/commands.h"
#include "text/chat_template.h"

namespace fs = std::filesystem;

namespace mlxq::cli {

namespace {
nlohmann::ordered_json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(bool(in), path + ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return text::parse_chat_json(text);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}
}  // namespace

void register_template(CLI::App& app) {
  struct Args {
    std::string model, messages, tools;
    bool thinking = false, no_thinking = false, preserve = false, no_gen = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("template", "Render a conversation with the Gemma-4 chat template");
  cmd->add_option("-m,--model", a->model, "Checkpoint directory (its chat_template.jinja is compared with the native one)");
  cmd->add_option("--messages", a->messages, "JSON file: a messages array (OpenAI style), or {\"messages\": [...], \"tools\": [...]}")
      ->required();
  cmd->add_option("--tools", a->tools, "JSON file: a tools array");
  cmd->add_flag("--thinking", a->thinking, "enable_thinking=true");
  cmd->add_flag("--no-thinking", a->no_thinking, "enable_thinking=false (the default when neither is given)");
  cmd->add_flag("--preserve-thinking", a->preserve, "preserve_thinking=true");
  cmd->add_flag("--no-generation-prompt", a->no_gen, "add_generation_prompt=false");
  cmd->callback([a] {
    nlohmann::ordered_json messages = read_json(a->messages), tools = nullptr;
    if (messages.is_object()) {
      if (messages.contains("tools")) tools = messages["tools"];
      nlohmann::ordered_json m = messages.contains("messages") ? messages["messages"] : nlohmann::ordered_json();
      messages = std::move(m);
    }
    if (!a->tools.empty()) tools = read_json(a->tools);
    text::TemplateOptions opt;
    opt.add_generation_prompt = !a->no_gen;
    if (a->thinking) opt.enable_thinking = true;
    if (a->no_thinking) opt.enable_thinking = false;
    opt.preserve_thinking = a->preserve;
    if (!a->model.empty()) {
      const fs::path jinja = fs::path(a->model) / "chat_template.jinja";
      if (fs::exists(jinja)) {
        std::ifstream in(jinja, std::ios::binary);
        const std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (sha256_hex(t) != text::kChatTemplateSha256)
          std::fprintf(stderr, "mlxq: note: %s differs from the template mlxq renders natively (Gemma-4 large, 2026-07-09)\n",
                       jinja.string().c_str());
      }
    }
    const std::string out = text::render_chat_template(messages, tools, opt);
    std::fwrite(out.data(), 1, out.size(), stdout);
  });
}

}  // namespace mlxq::cli
