//===- Quiescence.h - mcr's profiling and quiescent-point passes --------===//
//
// Registered by the plugin (TypeTags.cpp) at PipelineStartEP, before the
// type-tagging pass:
//   * mcr-calls (env MCR_PROFILE=1, set by mcr-clang --mcr-profile): a table
//     of every call site of the unit in section "mcr_calls";
//   * mcr-quiescence (env MCR_QUIESCENCE=FILE, set by mcr-clang
//     --mcr-quiescence): brackets the calls of the config's quiescent points
//     with __mcr_qp_enter/__mcr_qp_exit.
// Contract with the runtime and the profiler: runtime/include/mcr/qp.h.
//
//===----------------------------------------------------------------------===//
#ifndef MCR_QUIESCENCE_PASS_H
#define MCR_QUIESCENCE_PASS_H

#include "llvm/ADT/StringRef.h"
#include "llvm/IR/PassManager.h"

namespace mcr {

// Adds the passes the environment asks for.
void addQuiescencePasses(llvm::ModulePassManager &MPM);

// opt -passes=mcr-calls / mcr-quiescence (these run whatever MCR_PROFILE says;
// mcr-quiescence still reads MCR_QUIESCENCE).
bool parseQuiescencePass(llvm::StringRef Name, llvm::ModulePassManager &MPM);

} // namespace mcr

#endif
