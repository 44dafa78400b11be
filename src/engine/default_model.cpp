// The embedded default model (include/mlxq/default_model.h): assets -> cache, converted once.
#include "mlxq/default_model.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "convert/convert.h"
#include "convert/imatrix.h"
#include "core/error.h"
#include "core/sha256.h"
#include "core/thread_pool.h"
#include "engine/calibrate.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace mlxq {

namespace {

const char* const kAssetFiles[] = {"model.safetensors.gz", "config.json", "generation_config.json", "tokenizer.json",
                                   "calibration.jsonl"};

std::string find_assets(const std::string& given) {
  auto complete = [](const fs::path& d) {
    for (const char* f : kAssetFiles)
      if (!fs::exists(d / f)) return false;
    return true;
  };
  if (!given.empty()) {
    for (const char* f : kAssetFiles)
      check(fs::exists(fs::path(given) / f), (fs::path(given) / f).string() + ": missing (default model assets)");
    return given;
  }
  if (const char* env = std::getenv("MLXQ_ASSETS_DIR"); env && *env) return find_assets(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    // Next to the executable, or one folder up (build/mlxq, build/tests/*, build/examples/*).
    for (const fs::path& d : {exe.parent_path(), exe.parent_path().parent_path()})
      if (complete(d / "tiny-chat")) return (d / "tiny-chat").string();
  }
#ifdef MLXQ_BUILD_ASSETS_DIR
  if (complete(MLXQ_BUILD_ASSETS_DIR)) return MLXQ_BUILD_ASSETS_DIR;
#endif
  throw Error("the embedded default model's files (tiny-chat/: model.safetensors.gz, config.json, ...) were not "
              "found next to the executable; build mlxq with CMake (it copies models/tiny-chat/ there) or set "
              "MLXQ_ASSETS_DIR");
}

std::string cache_root(const std::string& given) {
  if (!given.empty()) return given;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const fs::path base = xdg && *xdg ? fs::path(xdg) : fs::path(home && *home ? home : ".") / ".cache";
  return (base / "mlxq").string();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  check(bool(in), p.string() + ": cannot open");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// gunzip `src` into `dst` (written whole, then renamed into place).
void gunzip(const fs::path& src, const fs::path& dst) {
  gzFile in = gzopen(src.c_str(), "rb");
  check(in != nullptr, src.string() + ": cannot open");
  const fs::path tmp = dst.string() + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) {
    gzclose(in);
    throw Error(tmp.string() + ": cannot write");
  }
  std::vector<char> buf(1 << 20);
  for (;;) {
    const int n = gzread(in, buf.data(), unsigned(buf.size()));
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(in, &err);
      gzclose(in);
      throw Error(src.string() + ": corrupt gzip data (" + msg + ")");
    }
    if (n == 0) break;
    out.write(buf.data(), n);
  }
  const bool clean_end = gzeof(in);
  gzclose(in);
  out.close();
  check(clean_end && bool(out), src.string() + ": truncated gzip data, or " + tmp.string() + " could not be written");
  fs::rename(tmp, dst);
}

// An exclusive lock on `path` for the life of the object.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    check(fd_ >= 0, path.string() + ": cannot open lock file");
    while (::flock(fd_, LOCK_EX) != 0) {
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

void prepare(const fs::path& assets, const fs::path& dir, const DefaultModelOptions& opt) {
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  const fs::path hf = dir / "hf", im = dir / "imatrix.gguf", q3 = dir / "q3";
  if (!fs::exists(hf / "config.json")) {
    log("unpacking the BF16 checkpoint");
    const fs::path tmp = dir / "hf.tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    gunzip(assets / "model.safetensors.gz", tmp / "model.safetensors");
    for (const char* f : {"config.json", "generation_config.json", "tokenizer.json"})
      fs::copy_file(assets / f, tmp / f, fs::copy_options::overwrite_existing);
    fs::remove_all(hf);
    fs::rename(tmp, hf);
  }
  if (!fs::exists(im)) {
    log("computing the imatrix over the calibration chats");
    model::gemma4::ModelOptions mo;
    mo.threads = opt.threads;
    model::gemma4::Model model(hf.string(), mo);
    const text::Tokenizer tok = text::Tokenizer::from_file((hf / "tokenizer.json").string());
    const engine::CalibrationInput input =
        engine::calibration_from_chats(tok, (assets / "calibration.jsonl").string(), 512);
    quant::write_imatrix_gguf((dir / "imatrix.gguf.tmp").string(), engine::compute_imatrix(model, input));
    fs::rename(dir / "imatrix.gguf.tmp", im);
  }
  if (!fs::exists(q3 / "config.json")) {
    log("converting to MLX 3-bit (unsloth recipe, imatrix AWQ)");
    quant::ConvertOptions co;
    co.input = hf.string();
    co.output = q3.string();
    co.quantize = true;
    co.bits = 3;
    co.recipe = "unsloth";
    co.imatrix_path = im.string();
    co.force = true;
    ThreadPool pool(opt.threads);
    quant::convert_checkpoint(co, pool);
  }
}

}  // namespace

std::string default_model_description() {
  return "tiny-chat, a 4.8M-parameter Gemma-4 MoE trained by mlxq on capitals, arithmetic and a weather tool "
         "(MLX 3-bit unsloth + imatrix AWQ)";
}

std::string default_model_path(const DefaultModelOptions& opt) {
  const fs::path assets = find_assets(opt.assets_dir);
  // The cache folder is named by the checkpoint's content, so a retrained model gets a new one.
  const std::string id = sha256_hex(slurp(assets / "model.safetensors.gz")).substr(0, 12);
  const fs::path dir = fs::path(cache_root(opt.cache_dir)) / ("tiny-chat-" + id);
  const fs::path q3 = dir / "q3";
  if (fs::exists(q3 / "config.json")) return q3.string();
  fs::create_directories(dir);
  FileLock lock(dir / ".lock");
  if (!fs::exists(q3 / "config.json")) prepare(assets, dir, opt);
  return q3.string();
}

}  // namespace mlxq
