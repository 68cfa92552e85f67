//===- Quiescence.cpp - call-site table and quiescent-point markers -----===//
//
// Two passes at the start of the pipeline, before inlining (Quiescence.h):
//
// mcr-calls (profiling build): one pointer-free blob per unit in section
// "mcr_calls" (struct mcr_calls_header / mcr_call_rec, mcr/qp.h): every call
// of every function the unit emits, with caller, callee ("*" if indirect), the
// call's file (DILocation's filename, as clang was given it) and line, and its
// loop depth. mcr-profile reads it from the executable to tell calls in loops
// from straight-line calls, and to print file:line.
//
// mcr-quiescence (production build): for each quiescent point of the config
// (MCR_QUIESCENCE), the calls of its deepest program frame (CALLER) to the next
// frame (CALLEE: the blocking function or a library's entry point) become
//     prev = __mcr_qp_enter(&qp); call CALLEE; __mcr_qp_exit(prev);
// with qp a struct mcr_qp in section "mcr_qps". Done before inlining, so the
// markers go wherever CALLER's body is inlined.
//
//===----------------------------------------------------------------------===//

#include "Quiescence.h"

#include "mcr/qp.h"
#include "qpconfig.h"

#include "llvm/ADT/MapVector.h"
#include "llvm/ADT/Statistic.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/IR/DebugInfo.h"
#include "llvm/IR/IntrinsicInst.h"
#include "llvm/Analysis/LoopInfo.h"
#include "llvm/IR/Constants.h"
#include "llvm/IR/DebugInfoMetadata.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Instructions.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/Module.h"
#include "llvm/Support/MathExtras.h"
#include "llvm/Transforms/Utils/ModuleUtils.h"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace llvm;

#define DEBUG_TYPE "mcr-quiescence"
STATISTIC(NumCalls, "call sites recorded (profiling build)");
STATISTIC(NumQPSites, "quiescent-point call sites marked");
STATISTIC(NumStackObjs, "local variables registered as stack objects");

// The IR below writes these layouts by hand.
static_assert(sizeof(mcr_calls_header) == 24 && sizeof(mcr_call_rec) == 24,
              "mcr_calls records changed: update the pass");
static_assert(sizeof(mcr_qp) == 56 && offsetof(mcr_qp, line) == 12 &&
                  offsetof(mcr_qp, thread_class) == 16,
              "struct mcr_qp changed: update the pass");

namespace {

bool envOn(const char *Name) {
  const char *V = std::getenv(Name);
  return V && *V && std::strcmp(V, "0") != 0;
}

// A function's C name: what the config and the profiler's stacks use. Static
// functions keep their plain names in both.
StringRef functionName(const Function &F) {
  if (const DISubprogram *SP = F.getSubprogram())
    if (!SP->getName().empty())
      return SP->getName();
  return F.getName();
}

// The function (or alias) a call names; null for a call through a pointer.
const GlobalValue *directCallee(const CallBase &CB) {
  return dyn_cast<GlobalValue>(CB.getCalledOperand()->stripPointerCasts());
}

StringRef symbolName(const GlobalValue &GV) {
  StringRef N = GV.getName();
  N.consume_front("\1"); // an asm label
  return N;
}

// Not calls of the program: intrinsics, mcr's own hooks, inline asm.
bool ignoredCall(const CallBase &CB) {
  if (CB.isInlineAsm())
    return true;
  const GlobalValue *GV = directCallee(CB);
  if (!GV)
    return false;
  if (auto *F = dyn_cast<Function>(GV); F && F->isIntrinsic())
    return true;
  StringRef N = symbolName(*GV);
  return N.startswith("llvm.") || N.startswith("__mcr_");
}

// Functions whose code this unit emits: not declarations, and not the
// available_externally bodies of glibc's gnu_inline wrappers (read, recv with
// _FORTIFY_SOURCE), which are only there to be inlined.
bool emitted(const Function &F) { return !F.isDeclarationForLinker(); }

// ---------------------------------------------------------------------------
// mcr-calls

class CallsPass : public PassInfoMixin<CallsPass> {
public:
  PreservedAnalyses run(Module &M, ModuleAnalysisManager &MAM);
};

PreservedAnalyses CallsPass::run(Module &M, ModuleAnalysisManager &MAM) {
  auto &FAM = MAM.getResult<FunctionAnalysisManagerModuleProxy>(M).getManager();
  std::string Strings(1, '\0'); // offset 0: ""
  StringMap<uint32_t> StrIdx;
  auto str = [&](StringRef S) -> uint32_t {
    if (S.empty())
      return 0;
    auto It = StrIdx.find(S);
    if (It != StrIdx.end())
      return It->second;
    uint32_t Off = Strings.size();
    Strings.append(S.data(), S.size());
    Strings.push_back('\0');
    StrIdx[S] = Off;
    return Off;
  };

  std::vector<mcr_call_rec> Recs;
  for (Function &F : M) {
    if (!emitted(F))
      continue;
    LoopInfo &LI = FAM.getResult<LoopAnalysis>(F);
    uint32_t Caller = str(functionName(F));
    for (BasicBlock &BB : F) {
      for (Instruction &I : BB) {
        auto *CB = dyn_cast<CallBase>(&I);
        if (!CB || ignoredCall(*CB))
          continue;
        mcr_call_rec R = {};
        R.caller = Caller;
        if (const GlobalValue *GV = directCallee(*CB)) {
          R.callee = str(symbolName(*GV));
        } else {
          R.callee = str("*");
          R.flags |= MCR_CALL_INDIRECT;
        }
        if (const DebugLoc &DL = CB->getDebugLoc()) {
          R.file = str(DL->getFilename());
          R.line = DL.getLine();
        }
        R.loop_depth = LI.getLoopDepth(&BB);
        Recs.push_back(R);
        ++NumCalls;
      }
    }
  }

  // Header, records, strings; string offsets are from the blob's start. The
  // size is a multiple of 8 so that the linker's concatenation of all units'
  // blobs (each aligned to 8) can be walked by size.
  mcr_calls_header H = {};
  H.magic = MCR_CALLS_MAGIC;
  H.version = MCR_CALLS_VERSION;
  H.ncalls = Recs.size();
  H.calls_off = sizeof(H);
  H.strings_off = H.calls_off + Recs.size() * sizeof(mcr_call_rec);
  H.size = alignTo(H.strings_off + Strings.size(), 8);
  for (mcr_call_rec &R : Recs) {
    R.caller += H.strings_off;
    R.callee += H.strings_off;
    R.file += H.strings_off;
  }
  std::string Blob(H.size, '\0');
  std::memcpy(&Blob[0], &H, sizeof(H));
  if (!Recs.empty())
    std::memcpy(&Blob[H.calls_off], Recs.data(), Recs.size() * sizeof(mcr_call_rec));
  std::memcpy(&Blob[H.strings_off], Strings.data(), Strings.size());

  LLVMContext &Ctx = M.getContext();
  Constant *Data = ConstantDataArray::getRaw(Blob, Blob.size(), Type::getInt8Ty(Ctx));
  auto *GV = new GlobalVariable(M, Data->getType(), true, GlobalValue::PrivateLinkage,
                                Data, "__mcr_calls");
  GV->setSection(MCR_CALLS_SECTION);
  GV->setAlignment(Align(8));
  appendToUsed(M, {GV}); // llvm.used: SHF_GNU_RETAIN survives --gc-sections
  return PreservedAnalyses::none();
}

// ---------------------------------------------------------------------------
// mcr-quiescence

// The config, read once per compiler process (clang compiles its inputs one
// after another in one process).
struct LoadedConfig {
  std::string Path;
  mcr_qpconfig C = {};
  std::string Err; // empty if it parsed
  ~LoadedConfig() { mcr_qpconfig_free(&C); }
};

// The config named by MCR_QUIESCENCE, or null (none, or an error already
// reported: mcr-clang checks the file first, so this is for direct clang use).
const mcr_qpconfig *loadConfig(LLVMContext &Ctx) {
  static std::unique_ptr<LoadedConfig> Cache;
  const char *Path = std::getenv("MCR_QUIESCENCE");
  if (!Path || !*Path)
    return nullptr;
  if (!Cache || Cache->Path != Path) {
    Cache = std::make_unique<LoadedConfig>();
    Cache->Path = Path;
    char Err[1024];
    if (mcr_qpconfig_read(Path, &Cache->C, Err, sizeof(Err)))
      Cache->Err = Err;
  }
  if (!Cache->Err.empty()) {
    Ctx.emitError(Cache->Err);
    return nullptr;
  }
  return &Cache->C;
}

// Whether the address of a local variable leaves its function: passed to a
// call, stored as a value, converted to an integer, returned. (A pointer to a
// local kept in the program's state is what an update must move: stackobj.h.)
bool escapes(const AllocaInst *AI) {
  SmallVector<const Value *, 8> Work{AI};
  SmallPtrSet<const Value *, 8> Seen;
  while (!Work.empty()) {
    const Value *V = Work.pop_back_val();
    if (!Seen.insert(V).second)
      continue;
    for (const User *U : V->users()) {
      if (isa<LoadInst>(U) || isa<ICmpInst>(U) || isa<DbgInfoIntrinsic>(U))
        continue;
      if (auto *SI = dyn_cast<StoreInst>(U)) {
        if (SI->getValueOperand() == V)
          return true;
        continue;
      }
      if (isa<GetElementPtrInst>(U) || isa<BitCastInst>(U)) {
        Work.push_back(U);
        continue;
      }
      if (auto *II = dyn_cast<IntrinsicInst>(U)) {
        switch (II->getIntrinsicID()) {
        case Intrinsic::lifetime_start:
        case Intrinsic::lifetime_end:
        case Intrinsic::memcpy:
        case Intrinsic::memmove:
        case Intrinsic::memset:
          continue;
        default:
          return true;
        }
      }
      return true; // a call, a return, a select, a phi, ptrtoint: it leaves
    }
  }
  return false;
}

// The functions on the config's quiescent-point stacks register their local
// variables whose address escapes: __mcr_stack_obj(&var, size) on entry (the
// type pass makes it __mcr_stack_push with the variable's site) and
// __mcr_stack_drop(&var) before each return (abi.h, stackobj.h).
unsigned registerStackObjects(Module &M, const mcr_qpconfig *C) {
  StringSet<> OnStacks;
  for (size_t I = 0; I < C->nqps; I++)
    for (size_t K = 0; K <= C->qps[I].caller && K < C->qps[I].stack.nframes; K++)
      OnStacks.insert(C->qps[I].stack.frames[K]);
  LLVMContext &Ctx = M.getContext();
  PointerType *Ptr = PointerType::get(Ctx, 0);
  Type *I64 = Type::getInt64Ty(Ctx), *Void = Type::getVoidTy(Ctx);
  FunctionCallee Obj = M.getOrInsertFunction("__mcr_stack_obj", FunctionType::get(Void, {Ptr, I64}, false));
  FunctionCallee Drop = M.getOrInsertFunction("__mcr_stack_drop", FunctionType::get(Void, {Ptr}, false));
  const DataLayout &DL = M.getDataLayout();
  unsigned N = 0;
  for (Function &F : M) {
    if (!emitted(F) || F.isDeclaration() ||
        (!OnStacks.count(functionName(F)) && !OnStacks.count(F.getName())))
      continue;
    SmallVector<AllocaInst *, 4> Objs;
    for (Instruction &I : F.getEntryBlock())
      if (auto *AI = dyn_cast<AllocaInst>(&I))
        if (AI->isStaticAlloca() && !FindDbgDeclareUses(AI).empty() && escapes(AI))
          Objs.push_back(AI);
    if (Objs.empty())
      continue;
    IRBuilder<> B(&*F.getEntryBlock().getFirstInsertionPt());
    while (isa<AllocaInst>(&*B.GetInsertPoint()))
      B.SetInsertPoint(B.GetInsertPoint()->getNextNode());
    for (AllocaInst *AI : Objs) {
      std::optional<TypeSize> Size = AI->getAllocationSize(DL);
      B.CreateCall(Obj, {AI, ConstantInt::get(I64, Size ? Size->getFixedValue() : 0)});
      N++;
    }
    for (BasicBlock &BB : F)
      if (auto *Ret = dyn_cast<ReturnInst>(BB.getTerminator())) {
        IRBuilder<> R(Ret);
        for (size_t I = Objs.size(); I-- > 0;)
          R.CreateCall(Drop, {Objs[I]});
      }
  }
  return N;
}

class QuiescencePass : public PassInfoMixin<QuiescencePass> {
public:
  PreservedAnalyses run(Module &M, ModuleAnalysisManager &);
};

PreservedAnalyses QuiescencePass::run(Module &M, ModuleAnalysisManager &) {
  const mcr_qpconfig *C = loadConfig(M.getContext());
  if (!C || !C->nqps)
    return PreservedAnalyses::all();
  unsigned Registered = registerStackObjects(M, C);
  NumStackObjs += Registered;

  // The calls to mark, each with the quiescent points it serves (config order).
  MapVector<CallInst *, SmallVector<size_t, 1>> Sites;
  for (Function &F : M) {
    if (!emitted(F))
      continue;
    StringRef CName = functionName(F), IRName = F.getName();
    SmallVector<size_t, 2> Mine;
    for (size_t I = 0; I < C->nqps; I++) {
      StringRef Caller = C->qps[I].stack.frames[C->qps[I].caller];
      if (Caller == CName || Caller == IRName)
        Mine.push_back(I);
    }
    if (Mine.empty())
      continue;
    for (BasicBlock &BB : F) {
      for (Instruction &Inst : BB) {
        auto *CI = dyn_cast<CallInst>(&Inst); // C has no invoke
        if (!CI || CI->isMustTailCall())
          continue;
        const GlobalValue *GV = directCallee(*CI);
        if (!GV) // through a pointer: cannot be matched (the link check says so)
          continue;
        StringRef Callee = symbolName(*GV);
        for (size_t I : Mine)
          if (Callee == C->qps[I].callee)
            Sites[CI].push_back(I);
      }
    }
  }
  if (Sites.empty())
    return Registered ? PreservedAnalyses::none() : PreservedAnalyses::all();

  LLVMContext &Ctx = M.getContext();
  Type *I16 = Type::getInt16Ty(Ctx), *I32 = Type::getInt32Ty(Ctx);
  PointerType *Ptr = PointerType::get(Ctx, 0);
  StructType *QPTy = StructType::get(Ctx, {I32, I16, I16, I32, I32, Ptr, Ptr, Ptr, Ptr, Ptr});
  FunctionCallee Enter =
      M.getOrInsertFunction("__mcr_qp_enter", FunctionType::get(Ptr, {Ptr}, false));
  FunctionCallee Exit = M.getOrInsertFunction(
      "__mcr_qp_exit", FunctionType::get(Type::getVoidTy(Ctx), {Ptr}, false));
  StringMap<Constant *> Strs;
  auto str = [&](StringRef S) -> Constant * {
    Constant *&Slot = Strs[S];
    if (!Slot) {
      Constant *D = ConstantDataArray::getString(Ctx, S);
      auto *G = new GlobalVariable(M, D->getType(), true, GlobalValue::PrivateLinkage, D,
                                   ".mcr.qp.str");
      G->setUnnamedAddr(GlobalValue::UnnamedAddr::Global);
      G->setAlignment(Align(1));
      Slot = G;
    }
    return Slot;
  };

  SmallVector<GlobalValue *, 8> Used;
  for (auto &[CI, QPs] : Sites) {
    const DebugLoc &DL = CI->getDebugLoc();
    StringRef File = DL ? DL->getFilename() : "";
    unsigned Line = DL ? DL.getLine() : 0;
    // One record per quiescent point served (the link check looks for each
    // id); the call is bracketed with the first: only one can be current, and
    // they all name the same blocking function.
    GlobalVariable *First = nullptr;
    for (size_t I : QPs) {
      const mcr_qpc_qp &Q = C->qps[I];
      Constant *Init = ConstantStruct::get(
          QPTy, {ConstantInt::get(I32, MCR_QP_MAGIC), ConstantInt::get(I16, MCR_QP_VERSION),
                 ConstantInt::get(I16, Q.blockfn), ConstantInt::get(I32, Q.id),
                 ConstantInt::get(I32, Line), str(C->classes[Q.cls].stack.text),
                 str(Q.stack.text), str(Q.stack.frames[Q.caller]), str(Q.callee),
                 str(File)});
      auto *GV = new GlobalVariable(M, QPTy, false, GlobalValue::PrivateLinkage, Init,
                                    "__mcr_qp." + Twine(Used.size()));
      GV->setSection(MCR_QPS_SECTION);
      GV->setAlignment(Align(8));
      Used.push_back(GV);
      if (!First)
        First = GV;
    }
    IRBuilder<> B(CI);
    B.SetCurrentDebugLocation(DL);
    Value *Prev = B.CreateCall(Enter, {First});
    B.SetInsertPoint(CI->getNextNode());
    B.SetCurrentDebugLocation(DL); // SetInsertPoint took the next instruction's
    B.CreateCall(Exit, {Prev});
    ++NumQPSites;
  }
  appendToUsed(M, Used); // retained: the link check and the runtime read them
  return PreservedAnalyses::none();
}

} // namespace

namespace mcr {

void addQuiescencePasses(ModulePassManager &MPM) {
  if (envOn("MCR_PROFILE"))
    MPM.addPass(CallsPass());
  const char *Q = std::getenv("MCR_QUIESCENCE");
  if (Q && *Q)
    MPM.addPass(QuiescencePass());
}

bool parseQuiescencePass(StringRef Name, ModulePassManager &MPM) {
  if (Name == "mcr-calls") {
    MPM.addPass(CallsPass());
    return true;
  }
  if (Name == "mcr-quiescence") {
    MPM.addPass(QuiescencePass());
    return true;
  }
  return false;
}

} // namespace mcr
