//===- TypeTags.cpp - mcr's type-tagging pass ---------------------------===//
//
// For every translation unit:
//   * each allocation site (malloc family and configured wrappers) gets a
//     record with the type it allocates, inferred from debug info by following
//     where its result is stored (a variable, a struct field, a global, a
//     return value), and a call to __mcr_tag(result, &site) right after it;
//   * each global, static local and thread-local is described with its type;
//   * all of it is serialized into one pointer-free table (the format is
//     runtime/include/mcr/abi.h) in section "mcr_types", registered at start-up
//     by a module constructor.
//
// The pass runs at the start of the pipeline (PipelineStartEP), where every
// allocation is still present and locals still have dbg.declare records.
//
//===----------------------------------------------------------------------===//

#include "mcr/abi.h"
#include "Quiescence.h"

#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/Statistic.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/BinaryFormat/Dwarf.h"
#include "llvm/Config/llvm-config.h"
#include "llvm/IR/DebugInfo.h"
#include "llvm/IR/DebugInfoMetadata.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Instructions.h"
#include "llvm/IR/IntrinsicInst.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Operator.h"
#include "llvm/IR/PassManager.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Passes/PassPlugin.h"
#include "llvm/Support/GlobPattern.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Transforms/Utils/ModuleUtils.h"

#include <cstdlib>
#include <string>
#include <vector>

using namespace llvm;

#define DEBUG_TYPE "mcr-type-tags"
STATISTIC(NumSites, "allocation sites tagged");
STATISTIC(NumTypedSites, "allocation sites with an inferred type");
STATISTIC(NumGlobals, "globals described");

namespace {

// ---------------------------------------------------------------------------
// Allocation functions: which argument holds the size, the element count, and
// where the result goes.

struct AllocFn {
  int Size = -1;     // argument with the size in bytes, -1 if none
  int Count = -1;    // argument with an element count (calloc), -1 if none
  int OutArg = -1;   // result returned through this pointer argument
  bool IsString = false; // strdup family: the result holds chars
  bool IsWrapper = false;
};

StringMap<AllocFn> builtinAllocFns() {
  StringMap<AllocFn> M;
  auto add = [&](StringRef N, int Size, int Count = -1, int Out = -1,
                 bool Str = false) {
    AllocFn A;
    A.Size = Size;
    A.Count = Count;
    A.OutArg = Out;
    A.IsString = Str;
    M[N] = A;
  };
  add("malloc", 0);
  add("calloc", 1, 0);
  add("realloc", 1);
  add("reallocarray", 2, 1);
  add("aligned_alloc", 1);
  add("memalign", 1);
  add("valloc", 0);
  add("pvalloc", 0);
  add("posix_memalign", 2, -1, 0);
  add("strdup", -1, -1, -1, true);
  add("__strdup", -1, -1, -1, true);
  add("strndup", -1, -1, -1, true);
  return M;
}

// A configured type for allocations in matching functions that inference
// leaves untyped: "type mod_*_init plugin_data" (docs/wrappers.md).
struct TypeRule {
  GlobPattern Functions;
  std::string TypeName;
  std::string Where; // file:line of the rule, for the evidence
};

// Wrapper config (docs/wrappers.md). mcr-clang validates the file and reports
// errors with file:line before clang runs; here bad lines are just skipped.
void loadWrappers(StringMap<AllocFn> &Fns, std::vector<TypeRule> &Rules,
                  StringMap<unsigned> &Releases) {
  const char *Path = std::getenv("MCR_WRAPPERS");
  if (!Path || !*Path)
    return;
  auto Buf = MemoryBuffer::getFile(Path);
  if (!Buf)
    return;
  SmallVector<StringRef, 64> Lines;
  (*Buf)->getBuffer().split(Lines, '\n');
  unsigned LineNo = 0;
  for (StringRef L : Lines) {
    LineNo++;
    L = L.split('#').first.trim();
    SmallVector<StringRef, 4> W;
    L.split(W, ' ', -1, false);
    if (W.size() >= 3 && W[0] == "type") {
      auto G = GlobPattern::create(W[1]);
      if (!G) {
        consumeError(G.takeError());
        continue;
      }
      std::string Name = W[2].str();
      for (size_t I = 3; I < W.size(); I++) // "struct foo"
        Name += " " + W[I].str();
      Rules.push_back({std::move(*G), Name,
                       (sys::path::filename(Path) + ":" + Twine(LineNo)).str()});
      continue;
    }
    if (W.size() >= 2 && W[0] == "release") {
      // "release NAME [ptr=K]": the object passed as argument K goes back to
      // the program's own free list (docs/wrappers.md)
      unsigned Arg = 0;
      for (size_t I = 2; I < W.size(); I++) {
        auto KV = W[I].split('=');
        unsigned N;
        if (KV.first == "ptr" && !KV.second.getAsInteger(10, N))
          Arg = N;
      }
      Releases[W[1]] = Arg;
      continue;
    }
    if (W.size() < 2 || W[0] != "wrapper")
      continue;
    AllocFn A;
    A.IsWrapper = true;
    for (size_t I = 2; I < W.size(); I++) {
      if (W[I] == "string") {
        A.IsString = true;
        continue;
      }
      auto KV = W[I].split('=');
      int N;
      if (KV.second.getAsInteger(10, N))
        continue;
      if (KV.first == "size")
        A.Size = N;
      else if (KV.first == "count")
        A.Count = N;
      else if (KV.first == "out")
        A.OutArg = N;
    }
    Fns[W[1]] = A;
  }
}

// ---------------------------------------------------------------------------
// The table being built, serialized at the end.

struct Table {
  std::string StrTab{'\0'};
  StringMap<uint32_t> StrIdx;
  std::vector<mcr_type_rec> Types;
  std::vector<mcr_member_rec> Members;
  std::vector<mcr_site_rec> Sites;
  std::vector<mcr_global_rec> Globals;
  DenseMap<const DIType *, uint32_t> TypeIdx;
  uint32_t VoidIdx = MCR_NO_TYPE;

  uint32_t str(StringRef S) {
    if (S.empty())
      return 0;
    auto It = StrIdx.find(S);
    if (It != StrIdx.end())
      return It->second;
    uint32_t Off = StrTab.size();
    StrTab.append(S.data(), S.size());
    StrTab.push_back('\0');
    StrIdx[S] = Off;
    return Off;
  }

  static std::string fileOf(const DIScope *S) {
    if (!S || !S->getFile())
      return "";
    return S->getFile()->getFilename().str();
  }

  uint32_t newType(uint8_t Kind) {
    mcr_type_rec R = {};
    R.kind = Kind;
    R.target = MCR_NO_TYPE;
    Types.push_back(R);
    return Types.size() - 1;
  }

  uint32_t voidType() {
    if (VoidIdx == MCR_NO_TYPE) {
      VoidIdx = newType(MCR_TYPE_VOID);
      Types[VoidIdx].name = str("void");
    }
    return VoidIdx;
  }

  // Qualifiers (const, volatile, restrict, _Atomic) do not change layout.
  static const DIType *stripQualifiers(const DIType *T) {
    while (auto *D = dyn_cast_or_null<DIDerivedType>(T)) {
      unsigned Tag = D->getTag();
      if (Tag != dwarf::DW_TAG_const_type && Tag != dwarf::DW_TAG_volatile_type &&
          Tag != dwarf::DW_TAG_restrict_type && Tag != dwarf::DW_TAG_atomic_type)
        break;
      T = D->getBaseType();
    }
    return T;
  }

  uint32_t type(const DIType *T) {
    T = stripQualifiers(T);
    if (!T)
      return voidType();
    auto It = TypeIdx.find(T);
    if (It != TypeIdx.end())
      return It->second;

    if (auto *B = dyn_cast<DIBasicType>(T)) {
      unsigned E = B->getEncoding();
      bool IsFloat = E == dwarf::DW_ATE_float || E == dwarf::DW_ATE_complex_float;
      uint32_t I = newType(IsFloat ? MCR_TYPE_FLOAT : MCR_TYPE_INT);
      TypeIdx[T] = I;
      mcr_type_rec &R = Types[I];
      R.name = str(B->getName());
      R.size = B->getSizeInBits() / 8;
      if (E == dwarf::DW_ATE_signed || E == dwarf::DW_ATE_signed_char)
        R.flags |= MCR_TF_SIGNED;
      if (E == dwarf::DW_ATE_signed_char || E == dwarf::DW_ATE_unsigned_char)
        R.flags |= MCR_TF_CHAR;
      if (E == dwarf::DW_ATE_boolean)
        R.flags |= MCR_TF_BOOL;
      return I;
    }

    if (auto *D = dyn_cast<DIDerivedType>(T)) {
      unsigned Tag = D->getTag();
      if (Tag == dwarf::DW_TAG_typedef) {
        uint32_t I = newType(MCR_TYPE_TYPEDEF);
        TypeIdx[T] = I;
        uint32_t Target = type(D->getBaseType());
        mcr_type_rec &R = Types[I];
        R.name = str(D->getName());
        R.target = Target;
        R.size = Types[Target].size;
        R.decl_file = str(fileOf(D));
        R.decl_line = D->getLine();
        return I;
      }
      // Pointers (and anything else derived, e.g. C++ references) are pointers.
      uint32_t I = newType(MCR_TYPE_POINTER);
      TypeIdx[T] = I;
      uint32_t Target = type(D->getBaseType());
      Types[I].target = Target;
      Types[I].size = D->getSizeInBits() ? D->getSizeInBits() / 8 : 8;
      return I;
    }

    if (auto *S = dyn_cast<DISubroutineType>(T)) {
      uint32_t I = newType(MCR_TYPE_FUNCTION);
      TypeIdx[T] = I;
      auto Arr = S->getTypeArray();
      uint32_t Ret = Arr.size() ? type(Arr[0]) : voidType();
      std::vector<uint32_t> Params;
      bool Variadic = false;
      for (unsigned K = 1; K < Arr.size(); K++) {
        if (!Arr[K]) {
          Variadic = true; // DW_TAG_unspecified_parameters
          continue;
        }
        Params.push_back(type(Arr[K]));
      }
      mcr_type_rec &R = Types[I];
      R.target = Ret;
      R.count = Params.size();
      R.first_member = Members.size();
      if (Variadic)
        R.flags |= MCR_TF_VARIADIC;
      for (uint32_t P : Params) {
        mcr_member_rec M = {};
        M.type = P;
        Members.push_back(M);
      }
      return I;
    }

    auto *C = dyn_cast<DICompositeType>(T);
    if (!C)
      return voidType();
    switch (C->getTag()) {
    case dwarf::DW_TAG_array_type:
      return arrayType(C, 0);
    case dwarf::DW_TAG_enumeration_type: {
      uint32_t I = newType(MCR_TYPE_ENUM);
      TypeIdx[T] = I;
      uint32_t Under = C->getBaseType() ? type(C->getBaseType()) : MCR_NO_TYPE;
      std::vector<mcr_member_rec> Ms;
      for (DINode *N : C->getElements()) {
        auto *E = dyn_cast_or_null<DIEnumerator>(N);
        if (!E)
          continue;
        mcr_member_rec M = {};
        M.name = str(E->getName());
        M.type = MCR_NO_TYPE;
        M.offset_bits = (uint64_t)E->getValue().getSExtValue();
        Ms.push_back(M);
      }
      Types[I].target = Under;
      return finishComposite(I, C, Ms);
    }
    case dwarf::DW_TAG_structure_type:
    case dwarf::DW_TAG_union_type:
    case dwarf::DW_TAG_class_type: {
      bool Union = C->getTag() == dwarf::DW_TAG_union_type;
      uint32_t I = newType(Union ? MCR_TYPE_UNION : MCR_TYPE_STRUCT);
      TypeIdx[T] = I; // before members: structs may point to themselves
      std::vector<mcr_member_rec> Ms;
      for (DINode *N : C->getElements()) {
        auto *D = dyn_cast_or_null<DIDerivedType>(N);
        if (!D || D->getTag() != dwarf::DW_TAG_member || D->isStaticMember())
          continue;
        mcr_member_rec M = {};
        M.name = str(D->getName());
        M.type = type(D->getBaseType());
        M.offset_bits = D->getOffsetInBits();
        if (D->isBitField())
          M.bit_size = D->getSizeInBits();
        Ms.push_back(M);
      }
      return finishComposite(I, C, Ms);
    }
    default:
      return voidType();
    }
  }

  // Name, size, declaration and members of a struct, union or enum record.
  uint32_t finishComposite(uint32_t I, const DICompositeType *C,
                           const std::vector<mcr_member_rec> &Ms) {
    mcr_type_rec &R = Types[I];
    R.name = str(C->getName());
    R.size = C->getSizeInBits() / 8;
    R.decl_file = str(fileOf(C));
    R.decl_line = C->getLine();
    if (C->isForwardDecl())
      R.flags |= MCR_TF_INCOMPLETE;
    R.first_member = Members.size();
    R.count = Ms.size();
    Members.insert(Members.end(), Ms.begin(), Ms.end());
    return I;
  }

  // T x[a][b] is one DI array with two subranges: an array of a arrays of b.
  uint32_t arrayType(const DICompositeType *C, unsigned Dim) {
    DINodeArray Subs = C->getElements();
    if (Dim >= Subs.size())
      return type(C->getBaseType());
    uint32_t I = newType(MCR_TYPE_ARRAY);
    if (Dim == 0)
      TypeIdx[C] = I;
    uint32_t Elem = arrayType(C, Dim + 1);
    int64_t Count = -1;
    if (auto *S = dyn_cast_or_null<DISubrange>(Subs[Dim]))
      if (auto *CI = S->getCount().dyn_cast<ConstantInt *>())
        Count = CI->getSExtValue();
    mcr_type_rec &R = Types[I];
    R.target = Elem;
    if (Count < 0) {
      R.flags |= MCR_TF_FLEXIBLE;
      R.count = 0;
    } else {
      R.count = (uint32_t)Count;
    }
    R.size = (uint64_t)R.count * Types[Elem].size;
    return I;
  }

  std::string serialize(StringRef Module, StringRef CompDir) {
    mcr_blob_header H = {};
    H.magic = MCR_BLOB_MAGIC;
    H.version = MCR_BLOB_VERSION;
    H.header_size = sizeof(H);
    H.module = str(Module);
    H.comp_dir = str(CompDir);
    H.producer = str("mcr-type-tags 0.1 (LLVM " LLVM_VERSION_STRING ")");
    std::string Out(sizeof(H), '\0');
    auto put = [&](const void *P, size_t N, uint32_t &Off) {
      while (Out.size() % 8)
        Out.push_back('\0');
      Off = Out.size();
      Out.append((const char *)P, N);
    };
    put(Types.data(), Types.size() * sizeof(mcr_type_rec), H.types_off);
    H.ntypes = Types.size();
    H.type_size = sizeof(mcr_type_rec);
    put(Members.data(), Members.size() * sizeof(mcr_member_rec), H.members_off);
    H.nmembers = Members.size();
    H.member_size = sizeof(mcr_member_rec);
    put(Sites.data(), Sites.size() * sizeof(mcr_site_rec), H.sites_off);
    H.nsites = Sites.size();
    H.site_size = sizeof(mcr_site_rec);
    put(Globals.data(), Globals.size() * sizeof(mcr_global_rec), H.globals_off);
    H.nglobals = Globals.size();
    H.global_size = sizeof(mcr_global_rec);
    put(StrTab.data(), StrTab.size(), H.strtab_off);
    H.strtab_size = StrTab.size();
    while (Out.size() % MCR_BLOB_ALIGN)
      Out.push_back('\0');
    H.total_size = Out.size();
    memcpy(&Out[0], &H, sizeof(H));
    return Out;
  }
};

// ---------------------------------------------------------------------------
// Type recovery: the debug-info type of the memory a pointer value addresses.

const DIType *stripTypedefs(const DIType *T) {
  while (true) {
    T = Table::stripQualifiers(T);
    auto *D = dyn_cast_or_null<DIDerivedType>(T);
    if (!D || D->getTag() != dwarf::DW_TAG_typedef)
      return T;
    T = D->getBaseType();
  }
}

// For a pointer type (through typedefs: sds is char *), what it points to.
// Sets IsPtr to false when T is not a pointer at all.
const DIType *pointeeOf(const DIType *T, bool &IsPtr) {
  auto *D = dyn_cast_or_null<DIDerivedType>(stripTypedefs(T));
  IsPtr = D && D->getTag() == dwarf::DW_TAG_pointer_type;
  return IsPtr ? D->getBaseType() : nullptr;
}

const DIType *pointee(const DIType *T) {
  bool IsPtr;
  return pointeeOf(T, IsPtr);
}

// The member of struct C that starts at bit offset Off (not a bitfield).
const DIType *memberAt(const DICompositeType *C, uint64_t OffBits,
                       const DIDerivedType **Which = nullptr) {
  for (DINode *N : C->getElements()) {
    auto *D = dyn_cast_or_null<DIDerivedType>(N);
    if (!D || D->getTag() != dwarf::DW_TAG_member || D->isBitField() ||
        D->isStaticMember())
      continue;
    if (D->getOffsetInBits() == OffBits) {
      if (Which)
        *Which = D;
      return D->getBaseType();
    }
  }
  return nullptr;
}

struct Recovery {
  const DataLayout &DL;
  // Struct, union and typedef'd anonymous struct definitions by C name, for
  // IR struct types ("struct.client") whose object has no described variable
  // (an extern global, a cast pointer, a union member).
  StringMap<const DICompositeType *> ByName;

  Recovery(Module &M, const DataLayout &DL) : DL(DL) {
    DebugInfoFinder F;
    F.processModule(M);
    for (DIType *T : F.types()) {
      if (auto *C = dyn_cast<DICompositeType>(T)) {
        unsigned Tag = C->getTag();
        if ((Tag == dwarf::DW_TAG_structure_type || Tag == dwarf::DW_TAG_union_type) &&
            !C->isForwardDecl() && !C->getName().empty())
          ByName.try_emplace(C->getName(), C);
      } else if (auto *D = dyn_cast<DIDerivedType>(T)) {
        if (D->getTag() == dwarf::DW_TAG_typedef)
          Typedefs.try_emplace(D->getName(), D);
        auto *C = dyn_cast_or_null<DICompositeType>(D->getBaseType());
        if (D->getTag() == dwarf::DW_TAG_typedef && C && C->getName().empty() &&
            !C->isForwardDecl())
          ByName.try_emplace(D->getName(), C);
      }
    }
  }

  // A type named in a config rule: a typedef, or "struct NAME"/"union NAME".
  const DIType *byCName(StringRef Name) {
    bool Tagged = Name.consume_front("struct ") || Name.consume_front("union ");
    if (!Tagged)
      if (auto It = Typedefs.find(Name); It != Typedefs.end())
        return It->second;
    auto It = ByName.find(Name);
    return It == ByName.end() ? nullptr : It->second;
  }
  StringMap<const DIDerivedType *> Typedefs;

  // The DI definition for an IR struct type named "struct.NAME" or
  // "union.NAME" (clang may append ".N" to keep names unique).
  const DICompositeType *byIRName(Type *Ty) {
    auto *ST = dyn_cast<StructType>(Ty);
    if (!ST || !ST->hasName())
      return nullptr;
    StringRef N = ST->getName();
    if (!N.consume_front("struct.") && !N.consume_front("union."))
      return nullptr;
    auto It = ByName.find(N);
    if (It == ByName.end()) {
      size_t Dot = N.rfind('.');
      if (Dot == StringRef::npos || !llvm::all_of(N.substr(Dot + 1), isDigit))
        return nullptr;
      It = ByName.find(N.substr(0, Dot));
      if (It == ByName.end())
        return nullptr;
    }
    // Sizes must agree, or the name is a coincidence.
    if (It->second->getSizeInBits() != DL.getTypeAllocSizeInBits(ST))
      return nullptr;
    return It->second;
  }

  static const DIType *declaredType(Value *V, std::string *Name) {
    for (DbgDeclareInst *D : FindDbgDeclareUses(V)) {
      if (DILocalVariable *Var = D->getVariable()) {
        if (Name)
          *Name = Var->getName().str();
        return Var->getType();
      }
    }
    return nullptr;
  }

  static const DIType *globalType(GlobalVariable *G, std::string *Name) {
    SmallVector<DIGlobalVariableExpression *, 1> GVEs;
    G->getDebugInfo(GVEs);
    for (auto *E : GVEs)
      if (DIGlobalVariable *Var = E->getVariable()) {
        if (Name)
          *Name = Var->getName().str();
        return Var->getType();
      }
    return nullptr;
  }

  static const DISubprogram *subprogramOf(Value *Callee) {
    if (auto *F = dyn_cast_or_null<Function>(Callee))
      return F->getSubprogram();
    return nullptr;
  }

  // Steps from an object of type T into the part at byte offset Off whose IR
  // type is Ty (a GEP index into a struct or array). Null if unknown.
  const DIType *stepInto(const DIType *T, uint64_t OffBits) {
    auto *C = dyn_cast_or_null<DICompositeType>(stripTypedefs(T));
    if (!C)
      return nullptr;
    if (C->getTag() == dwarf::DW_TAG_array_type) {
      if (C->getElements().size() != 1)
        return nullptr; // multi-dimensional: rare for pointer stores
      return C->getBaseType();
    }
    if (C->getTag() == dwarf::DW_TAG_union_type) {
      // The IR type of a union is its largest member; only an unambiguous
      // single member can be named.
      return C->getElements().size() == 1 ? memberAt(C, 0) : nullptr;
    }
    return memberAt(C, OffBits, Evidence ? &LastMember : nullptr);
  }

  bool Evidence = false;
  const DIDerivedType *LastMember = nullptr;

  // DI type of the memory P points to; Desc describes where it came from.
  const DIType *memType(Value *P, std::string &Desc, int Depth = 0) {
    if (!P || Depth > 12)
      return nullptr;
    if (auto *A = dyn_cast<AllocaInst>(P)) {
      std::string N;
      const DIType *T = declaredType(A, &N);
      if (T)
        Desc = "variable '" + N + "'";
      return T;
    }
    if (auto *G = dyn_cast<GlobalVariable>(P)) {
      std::string N;
      const DIType *T = globalType(G, &N);
      if (T)
        Desc = "global '" + N + "'";
      return T;
    }
    if (auto *GEP = dyn_cast<GEPOperator>(P))
      return gepType(GEP, Desc, Depth);
    if (auto *L = dyn_cast<LoadInst>(P)) {
      std::string D;
      const DIType *T = pointee(memType(L->getPointerOperand(), D, Depth + 1));
      if (T)
        Desc = "pointer loaded from " + D;
      return T;
    }
    if (auto *CB = dyn_cast<CallBase>(P)) {
      if (const DISubprogram *SP = subprogramOf(CB->getCalledOperand())) {
        if (auto *ST = SP->getType()) {
          auto Arr = ST->getTypeArray();
          if (Arr.size()) {
            Desc = "return value of '" + SP->getName().str() + "'";
            return pointee(Arr[0]);
          }
        }
      }
      return nullptr;
    }
    if (auto *Arg = dyn_cast<Argument>(P)) {
      const DISubprogram *SP = Arg->getParent()->getSubprogram();
      if (!SP || !SP->getType())
        return nullptr;
      auto Arr = SP->getType()->getTypeArray();
      if (Arr.size() != Arg->getParent()->arg_size() + 1)
        return nullptr; // ABI lowering changed the parameters
      Desc = "parameter " + std::to_string(Arg->getArgNo() + 1);
      return pointee(Arr[Arg->getArgNo() + 1]);
    }
    if (auto *Phi = dyn_cast<PHINode>(P)) {
      for (Value *In : Phi->incoming_values())
        if (const DIType *T = memType(In, Desc, Depth + 1))
          return T;
      return nullptr;
    }
    if (auto *Sel = dyn_cast<SelectInst>(P)) {
      if (const DIType *T = memType(Sel->getTrueValue(), Desc, Depth + 1))
        return T;
      return memType(Sel->getFalseValue(), Desc, Depth + 1);
    }
    if (auto *Op = dyn_cast<Operator>(P)) {
      if (Op->getOpcode() == Instruction::BitCast ||
          Op->getOpcode() == Instruction::AddrSpaceCast)
        return memType(Op->getOperand(0), Desc, Depth + 1);
    }
    return nullptr;
  }

  const DIType *gepType(GEPOperator *GEP, std::string &Desc, int Depth) {
    std::string BaseDesc;
    const DIType *T = memType(GEP->getPointerOperand(), BaseDesc, Depth + 1);
    Type *Cur = GEP->getSourceElementType();
    // The IR says which struct is addressed; when the base's described type is
    // unknown or another type (a union holding it, a cast), the IR is right.
    if (const DICompositeType *Named = byIRName(Cur)) {
      if (!T || stripTypedefs(T) != Named) {
        if (!T)
          BaseDesc = "struct " + Named->getName().str();
        T = Named;
      }
    }
    if (!T)
      return nullptr;
    // A byte-offset GEP (i8) into a struct: find the member at that offset.
    if (Cur->isIntegerTy(8) && GEP->getNumIndices() == 1) {
      auto *CI = dyn_cast<ConstantInt>(GEP->idx_begin()->get());
      if (!CI)
        return nullptr;
      uint64_t Off = CI->getZExtValue() * 8;
      const DIType *In = T;
      while (Off || In == T) {
        auto *C = dyn_cast_or_null<DICompositeType>(stripTypedefs(In));
        if (!C || C->getTag() != dwarf::DW_TAG_structure_type)
          return nullptr;
        const DIType *Next = nullptr;
        uint64_t Base = 0;
        for (DINode *N : C->getElements()) {
          auto *D = dyn_cast_or_null<DIDerivedType>(N);
          if (!D || D->getTag() != dwarf::DW_TAG_member || D->isBitField())
            continue;
          uint64_t MOff = D->getOffsetInBits();
          uint64_t MSize = stripTypedefs(D->getBaseType())
                               ? stripTypedefs(D->getBaseType())->getSizeInBits()
                               : 0;
          if (MOff <= Off && Off < MOff + std::max<uint64_t>(MSize, 1)) {
            Next = D->getBaseType();
            Base = MOff;
            Desc = "field '" + D->getName().str() + "' of " + BaseDesc;
            break;
          }
        }
        if (!Next)
          return nullptr;
        In = Next;
        Off -= Base;
        if (!Off)
          return In;
      }
      return In;
    }
    // Typed GEP: the first index walks whole objects (p[i] is still a T);
    // each further index steps into a member or an element.
    std::string Path;
    auto Idx = GEP->idx_begin();
    for (++Idx; Idx != GEP->idx_end(); ++Idx) {
      uint64_t OffBits = 0;
      if (auto *ST = dyn_cast<StructType>(Cur)) {
        auto *CI = dyn_cast<ConstantInt>(Idx->get());
        if (!CI)
          return nullptr;
        unsigned K = CI->getZExtValue();
        OffBits = DL.getStructLayout(ST)->getElementOffset(K) * 8;
        Cur = ST->getElementType(K);
      } else if (auto *AT = dyn_cast<ArrayType>(Cur)) {
        Cur = AT->getElementType();
      } else {
        return nullptr;
      }
      Evidence = true;
      LastMember = nullptr;
      T = stepInto(T, OffBits);
      Evidence = false;
      if (!T)
        return nullptr;
      if (LastMember)
        Path = "field '" + LastMember->getName().str() + "'";
      else
        Path = "element";
    }
    Desc = Path.empty() ? BaseDesc : Path + " of " + BaseDesc;
    return T;
  }
};

// ---------------------------------------------------------------------------
// The pass.

const DIType *charType(LLVMContext &Ctx);

class TypeTagsPass : public PassInfoMixin<TypeTagsPass> {
public:
  PreservedAnalyses run(Module &M, ModuleAnalysisManager &);

private:
  struct Inferred {
    const DIType *Elem = nullptr; // what the result points to
    bool Found = false;           // a destination with debug info was seen
    std::string Evidence;
  };
  void inferFromUsers(Recovery &R, Value *V, Function &F, Inferred &Out,
                      SmallPtrSetImpl<Value *> &Seen, int Depth);
};

// Follows the uses of an allocation result to where it is kept.
void TypeTagsPass::inferFromUsers(Recovery &R, Value *V, Function &F,
                                  Inferred &Out, SmallPtrSetImpl<Value *> &Seen,
                                  int Depth) {
  if (Depth > 6 || !Seen.insert(V).second)
    return;
  // A destination slot of pointer type: its pointee is the allocated type.
  // A 'void *' slot is remembered (for the reason) but the search goes on.
  auto consider = [&](const DIType *Slot, const std::string &Ev) {
    bool IsPtr;
    const DIType *E = pointeeOf(Slot, IsPtr);
    if (!IsPtr)
      return;
    if (E) {
      Out.Elem = E;
      Out.Evidence = Ev;
    } else if (!Out.Found) {
      Out.Evidence = Ev;
    }
    Out.Found = true;
  };
  for (User *U : V->users()) {
    if (Out.Elem)
      return;
    if (auto *S = dyn_cast<StoreInst>(U)) {
      if (S->getValueOperand() != V)
        continue;
      Value *Dst = S->getPointerOperand();
      // A compiler temporary (no dbg.declare): follow its loads.
      if (auto *A = dyn_cast<AllocaInst>(Dst)) {
        if (FindDbgDeclareUses(A).empty()) {
          for (User *AU : A->users())
            if (auto *L = dyn_cast<LoadInst>(AU))
              inferFromUsers(R, L, F, Out, Seen, Depth + 1);
          continue;
        }
      }
      std::string Ev;
      const DIType *Slot = R.memType(Dst, Ev);
      if (Slot)
        consider(Slot, Ev);
      // A 'void *' local: what the program does with it tells the type
      // (stored on into a typed slot, or used as bytes).
      auto *A = dyn_cast<AllocaInst>(Dst);
      bool IsPtr;
      if (!Out.Elem && A && Slot && !pointeeOf(Slot, IsPtr) && IsPtr) {
        for (User *AU : A->users()) {
          auto *L = dyn_cast<LoadInst>(AU);
          if (!L || Out.Elem)
            continue;
          inferFromUsers(R, L, F, Out, Seen, Depth + 1);
          for (User *LU : L->users())
            if (auto *G = dyn_cast<GEPOperator>(LU))
              if (!Out.Elem && G->getPointerOperand() == L &&
                  G->getSourceElementType()->isIntegerTy(8)) {
                Out.Elem = charType(F.getContext());
                Out.Evidence = "used as bytes through " + Ev;
              }
        }
      }
    } else if (isa<ReturnInst>(U)) {
      const DISubprogram *SP = F.getSubprogram();
      if (SP && SP->getType() && SP->getType()->getTypeArray().size())
        consider(SP->getType()->getTypeArray()[0],
                 "return type of '" + SP->getName().str() + "'");
    } else if (isa<PHINode>(U) || isa<SelectInst>(U)) {
      inferFromUsers(R, U, F, Out, Seen, Depth + 1);
    } else if (auto *CB = dyn_cast<CallBase>(U)) {
      if (isa<IntrinsicInst>(CB))
        continue;
      const DISubprogram *SP = Recovery::subprogramOf(CB->getCalledOperand());
      if (!SP || !SP->getType())
        continue;
      auto Arr = SP->getType()->getTypeArray();
      if (Arr.size() != CB->arg_size() + 1)
        continue;
      for (unsigned K = 0; K < CB->arg_size(); K++)
        if (CB->getArgOperand(K) == V)
          consider(Arr[K + 1],
                   "parameter " + std::to_string(K + 1) + " of '" +
                       SP->getName().str() + "'");
    } else if (auto *Op = dyn_cast<Operator>(U)) {
      if (Op->getOpcode() == Instruction::BitCast ||
          Op->getOpcode() == Instruction::AddrSpaceCast)
        inferFromUsers(R, U, F, Out, Seen, Depth + 1);
    }
  }
}

const DIType *charType(LLVMContext &Ctx) {
  return DIBasicType::get(Ctx, dwarf::DW_TAG_base_type, "char", 8, 0,
                          dwarf::DW_ATE_signed_char, DINode::FlagZero);
}

bool hasFlexibleTail(const DIType *T) {
  auto *C = dyn_cast_or_null<DICompositeType>(stripTypedefs(T));
  if (!C || C->getTag() != dwarf::DW_TAG_structure_type)
    return false;
  DINodeArray Els = C->getElements();
  for (int I = (int)Els.size() - 1; I >= 0; I--) {
    auto *D = dyn_cast_or_null<DIDerivedType>(Els[I]);
    if (!D || D->getTag() != dwarf::DW_TAG_member || D->isStaticMember())
      continue;
    auto *A = dyn_cast_or_null<DICompositeType>(stripTypedefs(D->getBaseType()));
    if (!A || A->getTag() != dwarf::DW_TAG_array_type || A->getElements().empty())
      return false;
    auto *S = dyn_cast_or_null<DISubrange>(A->getElements()[0]);
    if (!S)
      return false;
    auto *CI = S->getCount().dyn_cast<ConstantInt *>();
    return !CI || CI->getSExtValue() < 0 || CI->getSExtValue() == 0;
  }
  return false;
}

// Is V a multiple of Size bytes by construction (n * sizeof T)?
bool isMultipleOf(Value *V, uint64_t Size) {
  if (auto *CI = dyn_cast<ConstantInt>(V))
    return CI->getZExtValue() % Size == 0;
  auto *BO = dyn_cast<BinaryOperator>(V);
  if (!BO)
    return false;
  if (BO->getOpcode() == Instruction::Mul)
    for (Value *Op : BO->operands())
      if (auto *CI = dyn_cast<ConstantInt>(Op))
        if (CI->getZExtValue() % Size == 0)
          return true;
  if (BO->getOpcode() == Instruction::Shl)
    if (auto *CI = dyn_cast<ConstantInt>(BO->getOperand(1)))
      if (CI->getZExtValue() < 63 && (1ULL << CI->getZExtValue()) % Size == 0)
        return true;
  if (auto *Z = dyn_cast<CastInst>(V))
    return isMultipleOf(Z->getOperand(0), Size);
  return false;
}

uint32_t shapeOf(const DIType *Elem, CallBase *CB, const AllocFn &A) {
  const DIType *S = stripTypedefs(Elem);
  uint64_t Size = S ? S->getSizeInBits() / 8 : 0;
  if (!Size)
    return MCR_SHAPE_SINGLE; // incomplete here; resolved by name at run time
  bool Flex = hasFlexibleTail(Elem);
  if (A.IsString || Size == 1)
    return MCR_SHAPE_ARRAY;
  if (A.Count >= 0 && (unsigned)A.Count < CB->arg_size()) {
    auto *N = dyn_cast<ConstantInt>(CB->getArgOperand(A.Count));
    if (N && N->getZExtValue() == 1 && !Flex)
      return MCR_SHAPE_SINGLE;
    return MCR_SHAPE_ARRAY;
  }
  if (A.Size < 0 || (unsigned)A.Size >= CB->arg_size())
    return Flex ? MCR_SHAPE_FLEX : MCR_SHAPE_ARRAY;
  Value *V = CB->getArgOperand(A.Size);
  if (auto *CI = dyn_cast<ConstantInt>(V)) {
    uint64_t N = CI->getZExtValue();
    if (N == Size)
      return MCR_SHAPE_SINGLE;
    if (Flex && N > Size)
      return MCR_SHAPE_FLEX;
    return MCR_SHAPE_ARRAY;
  }
  if (Flex && !isMultipleOf(V, Size))
    return MCR_SHAPE_FLEX;
  return MCR_SHAPE_ARRAY;
}

PreservedAnalyses TypeTagsPass::run(Module &M, ModuleAnalysisManager &) {
  // Never instrument twice (e.g. the pass reached through two pipelines).
  if (M.getNamedGlobal("__mcr_type_table"))
    return PreservedAnalyses::all();

  StringMap<AllocFn> Fns = builtinAllocFns();
  std::vector<TypeRule> Rules;
  StringMap<unsigned> Releases;
  loadWrappers(Fns, Rules, Releases);
  LLVMContext &Ctx = M.getContext();
  const DataLayout &DL = M.getDataLayout();
  Recovery R(M, DL);
  Table T;

  Type *I32 = Type::getInt32Ty(Ctx);
  PointerType *Ptr = PointerType::getUnqual(Ctx);
  StructType *SiteTy = StructType::create(Ctx, {Ptr, I32, I32}, "struct.mcr_site");

  // The site records are created after the table, which they point to; first
  // collect the calls.
  struct PendingSite {
    CallBase *Call;
    AllocFn Fn;
    bool ThroughArg; // the object comes back through Fn.OutArg
  };
  std::vector<PendingSite> Pending;
  // Calls to configured release functions and the argument they release.
  std::vector<std::pair<CallInst *, unsigned>> ReleaseCalls;
  // The stack objects the quiescence pass registered (__mcr_stack_obj), each
  // with its site's index in T.Sites.
  std::vector<std::pair<CallInst *, size_t>> StackObjs;

  for (Function &F : M) {
    if (F.isDeclaration())
      continue;
    // Calls inside a configured wrapper are left alone: the wrapper's callers
    // are the sites, and their tag replaces the object's untyped one.
    auto Self = Fns.find(F.getName());
    if (Self != Fns.end() && Self->second.IsWrapper)
      continue;
    for (BasicBlock &BB : F)
      for (Instruction &I : BB) {
        auto *CB = dyn_cast<CallBase>(&I);
        if (!CB || isa<IntrinsicInst>(CB))
          continue;
        Function *Callee = CB->getCalledFunction();
        if (!Callee)
          continue;
        if (Callee->getName() == "__mcr_stack_obj" && isa<CallInst>(CB)) {
          StackObjs.push_back({cast<CallInst>(CB), 0});
          continue;
        }
        // (inside a release function the object is untagged already: its caller's call)
        auto Rel = Releases.find(Callee->getName());
        if (Rel != Releases.end() && !Releases.count(F.getName()) && isa<CallInst>(CB) &&
            Rel->second < CB->arg_size() &&
            CB->getArgOperand(Rel->second)->getType()->isPointerTy())
          ReleaseCalls.push_back({cast<CallInst>(CB), Rel->second});
        auto It = Fns.find(Callee->getName());
        if (It == Fns.end())
          continue;
        const AllocFn &A = It->second;
        // posix_memalign always answers through its argument; a wrapper with
        // out=N when its result is not used (lighttpd's ck_realloc_u32).
        bool Through = A.OutArg >= 0 && (unsigned)A.OutArg < CB->arg_size() &&
                       (!CB->getType()->isPointerTy() || CB->use_empty());
        // An unused result is no object to describe: a leak, or realloc(p, 0)
        // used as free.
        if (!Through && (CB->use_empty() || !CB->getType()->isPointerTy()))
          continue;
        Pending.push_back({CB, A, Through});
      }
  }

  for (PendingSite &P : Pending) {
    CallBase *CB = P.Call;
    Function &F = *CB->getFunction();
    mcr_site_rec S = {};
    S.type = MCR_NO_TYPE;
    S.function = T.str(F.getName());
    S.callee = T.str(CB->getCalledFunction()->getName());
    if (const DebugLoc &Loc = CB->getDebugLoc()) {
      S.line = Loc.getLine();
      S.column = Loc.getCol();
      if (auto *Scope = dyn_cast_or_null<DIScope>(Loc.getScope()))
        S.file = T.str(Table::fileOf(Scope));
    }

    Inferred Inf;
    SmallPtrSet<Value *, 16> Seen;
    if (P.ThroughArg) {
      // posix_memalign(&p, ...): the type of what p is.
      std::string Ev;
      const DIType *Slot = R.memType(CB->getArgOperand(P.Fn.OutArg), Ev);
      bool IsPtr;
      const DIType *E = pointeeOf(Slot, IsPtr);
      if (IsPtr) {
        Inf.Found = true;
        Inf.Elem = E;
        Inf.Evidence = Ev;
      }
    } else {
      inferFromUsers(R, CB, F, Inf, Seen, 0);
    }
    if (!Inf.Elem) {
      // What inference cannot see, the configuration may say.
      for (const TypeRule &Rule : Rules) {
        if (!Rule.Functions.match(F.getName()))
          continue;
        if (const DIType *T = R.byCName(Rule.TypeName)) {
          Inf.Elem = T;
          Inf.Evidence = "configured (" + Rule.Where + ")";
        }
        break;
      }
    }
    if (!Inf.Elem && P.Fn.IsString) {
      // strdup's result holds chars whatever it is stored into.
      Inf.Elem = charType(Ctx);
      Inf.Evidence = "string duplicate";
    }

    if (Inf.Elem) {
      S.type = T.type(Inf.Elem);
      S.shape = shapeOf(Inf.Elem, CB, P.Fn);
      S.evidence = T.str(Inf.Evidence);
      ++NumTypedSites;
    } else {
      std::string Why;
      if (!F.getSubprogram())
        Why = "no debug info in this function (compile with -g)";
      else if (Inf.Found)
        Why = "result kept only in a 'void *' (" + Inf.Evidence + ")";
      else
        Why = "result not stored in a variable, field, global or return value "
              "with a type";
      S.reason = T.str(Why);
    }
    T.Sites.push_back(S);
  }

  // Stack objects: a site each, of the variable's declared type.
  for (auto &SO : StackObjs) {
    auto *AI = dyn_cast<AllocaInst>(SO.first->getArgOperand(0));
    Function &F = *SO.first->getFunction();
    mcr_site_rec S = {};
    S.type = MCR_NO_TYPE;
    S.function = T.str(F.getName());
    std::string Name;
    const DIType *Ty = AI ? Recovery::declaredType(AI, &Name) : nullptr;
    // (the name is in the site key: a variable added before another one of
    // the same function does not shift the pairing)
    S.callee = T.str("__mcr_stack_obj:" + Name);
    for (DbgDeclareInst *D : AI ? FindDbgDeclareUses(AI) : TinyPtrVector<DbgDeclareInst *>())
      if (DILocalVariable *Var = D->getVariable()) {
        S.line = Var->getLine();
        S.file = T.str(Table::fileOf(Var->getScope()));
        break;
      }
    if (Ty) {
      const DIType *Elem = Ty;
      S.shape = MCR_SHAPE_SINGLE;
      if (auto *C = dyn_cast_or_null<DICompositeType>(stripTypedefs(Ty));
          C && C->getTag() == dwarf::DW_TAG_array_type && C->getBaseType()) {
        Elem = C->getBaseType();
        S.shape = MCR_SHAPE_ARRAY;
      }
      S.type = T.type(Elem);
      S.evidence = T.str("local variable '" + Name + "'");
    } else {
      S.reason = T.str("a local variable without a declared type");
    }
    SO.second = T.Sites.size();
    T.Sites.push_back(S);
  }

  // Globals, static locals, thread-locals. The writable ones are also put in
  // llvm.compiler.used: a live update copies each global by name (docs/update.md),
  // so the optimizer must neither split one into scalars (GlobalOpt turns a static
  // struct whose address is never taken into stats.0, stats.1, ...) nor delete one
  // it can prove is never read.
  std::vector<GlobalValue *> Keep;
  for (GlobalVariable &G : M.globals()) {
    if (G.isDeclaration())
      continue;
    SmallVector<DIGlobalVariableExpression *, 1> GVEs;
    G.getDebugInfo(GVEs);
    if (GVEs.empty())
      continue; // compiler-made (string literals, ...)
    DIGlobalVariable *Var = GVEs[0]->getVariable();
    if (!Var || Var->getName().empty())
      continue; // string literals carry a nameless record since clang 16
    mcr_global_rec Rec = {};
    Rec.name = T.str(Var->getName());
    Rec.symbol = T.str(G.getName());
    Rec.type = T.type(Var->getType());
    Rec.file = T.str(Var->getFilename());
    Rec.line = Var->getLine();
    if (G.hasLocalLinkage())
      Rec.flags |= MCR_GF_INTERNAL;
    if (auto *SP = dyn_cast_or_null<DISubprogram>(Var->getScope())) {
      Rec.flags |= MCR_GF_LOCAL_STATIC;
      Rec.scope = T.str(SP->getName());
    } else if (auto *LB = dyn_cast_or_null<DILocalScope>(Var->getScope())) {
      Rec.flags |= MCR_GF_LOCAL_STATIC;
      Rec.scope = T.str(LB->getSubprogram() ? LB->getSubprogram()->getName() : "");
    }
    if (G.isThreadLocal())
      Rec.flags |= MCR_GF_TLS;
    if (G.isConstant())
      Rec.flags |= MCR_GF_CONST;
    Rec.size = DL.getTypeAllocSize(G.getValueType());
    T.Globals.push_back(Rec);
    ++NumGlobals;
    if (!G.isConstant()) // thread-locals too: copied per thread by name
      Keep.push_back(&G);
  }
  if (!Keep.empty())
    appendToCompilerUsed(M, Keep);

  // Emit the table.
  std::string CompDir;
  if (NamedMDNode *CUs = M.getNamedMetadata("llvm.dbg.cu"))
    if (CUs->getNumOperands())
      if (auto *CU = dyn_cast<DICompileUnit>(CUs->getOperand(0)))
        CompDir = CU->getDirectory().str();
  std::string Blob = T.serialize(M.getSourceFileName(), CompDir);
  Constant *Data = ConstantDataArray::getRaw(
      Blob, Blob.size(), Type::getInt8Ty(Ctx));
  auto *TableGV = new GlobalVariable(M, Data->getType(), true,
                                     GlobalValue::PrivateLinkage, Data,
                                     "__mcr_type_table");
  TableGV->setSection(MCR_TYPES_SECTION);
  TableGV->setAlignment(Align(MCR_BLOB_ALIGN));
  appendToUsed(M, {TableGV}); // llvm.used: SHF_GNU_RETAIN survives --gc-sections

  // Before each release call (not after: once on the program's free list the
  // object may be handed out again by another thread, and tagged anew), the
  // object loses its type: a free object's bytes are the free list's, not the
  // type's, and must never be converted as one (docs/wrappers.md).
  if (!ReleaseCalls.empty()) {
    FunctionCallee Untag = M.getOrInsertFunction(
        "__mcr_untag", FunctionType::get(Type::getVoidTy(Ctx), {Ptr}, false));
    for (auto &RC : ReleaseCalls) {
      IRBuilder<> B(RC.first);
      B.SetCurrentDebugLocation(RC.first->getDebugLoc());
      B.CreateCall(Untag, {RC.first->getArgOperand(RC.second)});
    }
  }

  // Site records and tag calls.
  if (!T.Sites.empty()) {
    std::vector<Constant *> Recs;
    for (size_t I = 0; I < T.Sites.size(); I++)
      Recs.push_back(ConstantStruct::get(
          SiteTy, {TableGV, ConstantInt::get(I32, I), ConstantInt::get(I32, 0)}));
    ArrayType *AT = ArrayType::get(SiteTy, Recs.size());
    auto *SitesGV = new GlobalVariable(M, AT, false, GlobalValue::PrivateLinkage,
                                       ConstantArray::get(AT, Recs), "__mcr_sites");
    SitesGV->setSection(MCR_SITES_SECTION);
    SitesGV->setAlignment(Align(8));

    FunctionCallee Tag = M.getOrInsertFunction(
        "__mcr_tag", FunctionType::get(Type::getVoidTy(Ctx), {Ptr, Ptr}, false));
    FunctionCallee TagOut = M.getOrInsertFunction(
        "__mcr_tag_out",
        FunctionType::get(Type::getVoidTy(Ctx), {I32, Ptr, Ptr}, false));
    // A wrapper's result may be a piece of a pool block: the runtime records
    // such pieces of the startup with their size (docs/update.md,
    // "Reinitialized startup state").
    Type *I64 = Type::getInt64Ty(Ctx);
    FunctionCallee TagSized = M.getOrInsertFunction(
        "__mcr_tag_sized",
        FunctionType::get(Type::getVoidTy(Ctx), {Ptr, Ptr, I64}, false));
    auto sizeArg = [&](IRBuilder<> &B, CallInst *CI, int Idx) -> Value * {
      if (Idx < 0 || (unsigned)Idx >= CI->arg_size())
        return nullptr;
      Value *V = CI->getArgOperand(Idx);
      if (!V->getType()->isIntegerTy())
        return nullptr;
      return B.CreateZExtOrTrunc(V, I64);
    };
    for (size_t I = 0; I < Pending.size(); I++) {
      CallBase *CB = Pending[I].Call;
      auto *CI = dyn_cast<CallInst>(CB);
      if (!CI)
        continue; // invoke: C has none
      IRBuilder<> B(CI->getNextNode());
      B.SetCurrentDebugLocation(CI->getDebugLoc());
      Constant *Site = ConstantExpr::getInBoundsGetElementPtr(
          AT, SitesGV,
          ArrayRef<Constant *>{ConstantInt::get(I32, 0), ConstantInt::get(I32, I)});
      if (Pending[I].ThroughArg) {
        // posix_memalign's 0 means success; other functions have no status.
        Value *Rc = CI->getType()->isIntegerTy(32) ? (Value *)CI : ConstantInt::get(I32, 0);
        B.CreateCall(TagOut, {Rc, CI->getArgOperand(Pending[I].Fn.OutArg), Site});
      } else if (CI->getType()->isPointerTy()) {
        Value *Size = Pending[I].Fn.IsWrapper ? sizeArg(B, CI, Pending[I].Fn.Size) : nullptr;
        Value *Count = Size && Pending[I].Fn.Count >= 0 ? sizeArg(B, CI, Pending[I].Fn.Count)
                                                        : nullptr;
        if (Count)
          Size = B.CreateMul(Size, Count);
        if (Size)
          B.CreateCall(TagSized, {CI, Site, Size});
        else
          B.CreateCall(Tag, {CI, Site});
      }
      ++NumSites;
    }
    FunctionCallee Push = M.getOrInsertFunction(
        "__mcr_stack_push", FunctionType::get(Type::getVoidTy(Ctx), {Ptr, Ptr, I64}, false));
    for (auto &SO : StackObjs) {
      Constant *Site = ConstantExpr::getInBoundsGetElementPtr(
          AT, SitesGV,
          ArrayRef<Constant *>{ConstantInt::get(I32, 0), ConstantInt::get(I32, SO.second)});
      IRBuilder<> B(SO.first);
      B.SetCurrentDebugLocation(SO.first->getDebugLoc());
      B.CreateCall(Push, {SO.first->getArgOperand(0), Site, SO.first->getArgOperand(1)});
      SO.first->eraseFromParent();
    }
  }

  // Constructor: register this output's type section.
  auto *Start = new GlobalVariable(M, ArrayType::get(Type::getInt8Ty(Ctx), 0), true,
                                   GlobalValue::ExternalLinkage, nullptr,
                                   "__start_" MCR_TYPES_SECTION);
  Start->setVisibility(GlobalValue::HiddenVisibility);
  auto *Stop = new GlobalVariable(M, ArrayType::get(Type::getInt8Ty(Ctx), 0), true,
                                  GlobalValue::ExternalLinkage, nullptr,
                                  "__stop_" MCR_TYPES_SECTION);
  Stop->setVisibility(GlobalValue::HiddenVisibility);
  FunctionCallee Reg = M.getOrInsertFunction(
      "__mcr_register_types",
      FunctionType::get(Type::getVoidTy(Ctx), {Ptr, Ptr}, false));
  Function *Ctor = Function::Create(FunctionType::get(Type::getVoidTy(Ctx), false),
                                    GlobalValue::InternalLinkage, "mcr.module_ctor",
                                    &M);
  IRBuilder<> B(BasicBlock::Create(Ctx, "", Ctor));
  B.CreateCall(Reg, {Start, Stop});
  B.CreateRetVoid();
  appendToGlobalCtors(M, Ctor, 0);

  return PreservedAnalyses::none();
}

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo llvmGetPassPluginInfo() {
  return {LLVM_PLUGIN_API_VERSION, "mcr-type-tags", "0.1", [](PassBuilder &PB) {
            PB.registerPipelineStartEPCallback(
                [](ModulePassManager &MPM, OptimizationLevel) {
                  // The call table and quiescent-point markers first: they
                  // look at the program's own calls, before any are added.
                  mcr::addQuiescencePasses(MPM);
                  MPM.addPass(TypeTagsPass());
                });
            // For opt -passes=mcr-type-tags (the pass's own IR tests).
            PB.registerPipelineParsingCallback(
                [](StringRef Name, ModulePassManager &MPM,
                   ArrayRef<PassBuilder::PipelineElement>) {
                  if (mcr::parseQuiescencePass(Name, MPM))
                    return true;
                  if (Name != "mcr-type-tags")
                    return false;
                  MPM.addPass(TypeTagsPass());
                  return true;
                });
          }};
}
