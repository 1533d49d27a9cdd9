// The decoding step's attention (decode_attention.h): the kernel is decode_attention_kernel.cuh, launched here with
// the block shape decode_attention.h names.
#include "decode_attention.h"

#include "decode_attention_kernel.cuh"

namespace mmr::llava::gemv {

int launch_decode_attention(const DecodeAttentionProblem& p, void* stream, bool dependent) {
  return attention::launch_any_group<kAttentionWarps, kAttentionPassKeys>(p, static_cast<cudaStream_t>(stream),
                                                                            dependent);
}

}  // namespace mmr::llava::gemv
