// Transitional: this header's contents moved to kernels/matmul_internal.h (the kernels' contract)
// and kernels/matmul.h (q8::kMaxBlocks, the public part). It remains, public only, while
// src/model/gemma4/interleaved_file.cpp (another folder) includes it for q8::kMaxBlocks; once
// that file includes kernels/matmul.h instead, delete this one.
#pragma once
#include "kernels/matmul.h"
