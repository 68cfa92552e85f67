import os
import lit.formats

config.name = "mcr-pass"
config.test_format = lit.formats.ShTest(True)
config.suffixes = [".c"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.mcr_binary_dir, "tests", "pass")
config.excludes = ["Inputs"]

bindir = os.path.join(config.mcr_binary_dir, "bin")
config.environment["PATH"] = os.pathsep.join(
    [config.llvm_tools_dir, bindir, config.environment.get("PATH", "/usr/bin:/bin")])
for var in ("MCR_WRAPPERS", "MCR_PROFILE", "MCR_QUIESCENCE"):
    config.environment.pop(var, None)
config.substitutions.append(("%mcr-clang", os.path.join(bindir, "mcr-clang")))
config.substitutions.append(
    ("%mcr-plugin", os.path.join(config.mcr_binary_dir, "lib", "mcr", "MCRPass.so")))
config.substitutions.append(("%mcr-ctl", os.path.join(bindir, "mcr-ctl")))
config.substitutions.append(
    ("%sites", config.python + " " + os.path.join(config.test_source_root, "sites.py")))
config.substitutions.append(
    ("%calls", config.python + " " + os.path.join(config.test_source_root, "calls.py")))
config.substitutions.append(("%inputs", os.path.join(config.test_source_root, "Inputs")))
