// Importance statistics (an imatrix) from mlxq's own forward pass: the sum of x^2 per input
// channel of every weight matmul, per expert for the MoE, in llama.cpp's GGUF imatrix naming.
// Used by `mlxq imatrix` and by the embedded default model's conversion.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "convert/imatrix.h"
#include "model/gemma4/model.h"
#include "text/tokenizer.h"

namespace mlxq::engine {

struct CalibrationInput {
  std::vector<std::vector<int32_t>> chunks;  // each a fresh context (starting with <bos>)
  std::string dataset;                       // the file name recorded in the imatrix
  int chunk_size = 512;                      // recorded as the imatrix's chunk size
};

// A chat file (JSONL, the format of src/engine/transcript.h) as calibration input: each conversation,
// rendered as a session holds it and cut to `chunk_size` tokens, is one chunk; at most
// `max_chunks` of them (0: all). Throws naming the file and line of a bad conversation.
CalibrationInput calibration_from_chats(const text::Tokenizer& tok, const std::string& path, int chunk_size,
                                        int64_t max_chunks = 0);

// Runs every chunk through `model` and accumulates the statistics. `progress(done, total)`
// after each chunk. The model's observer is cleared afterwards.
quant::Imatrix compute_imatrix(model::gemma4::Model& model, const CalibrationInput& input,
                               const std::function<void(size_t, size_t)>& progress = {});

}  // namespace mlxq::engine
