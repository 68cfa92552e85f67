"""Prints the mcr_calls section of an ELF file (object or executable), one line
per call record, in a fixed format for FileCheck:
    blob calls=N
    call CALLER CALLEE FILE:LINE depth=D [indirect]
Blobs (one per translation unit) are walked by their size, as mcr-profile does;
a blob that does not fit the format (runtime/include/mcr/qp.h) is an error.
"""
import struct
import sys

CALLS_MAGIC = 0x4C43434D
INDIRECT = 1


def section(data, name):
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    def shdr(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    stroff = shdr(shstrndx)[4]
    for i in range(shnum):
        sh = shdr(i)
        end = data.index(b"\0", stroff + sh[0])
        if data[stroff + sh[0]:end].decode() == name:
            return data[sh[4]:sh[4] + sh[5]]
    return None


def cstr(blob, off):
    return blob[off:blob.index(b"\0", off)].decode()


data = open(sys.argv[1], "rb").read()
sec = section(data, "mcr_calls")
if sec is None:
    print("no mcr_calls section")
    sys.exit(0)
off = 0
while off < len(sec):
    magic, version, size, ncalls, calls_off, strings_off = struct.unpack_from("<6I", sec, off)
    if magic != CALLS_MAGIC or version != 1 or size % 8 or off + size > len(sec):
        print("error: bad blob at offset %d (magic %#x, version %d, size %d)" % (off, magic, version, size))
        sys.exit(1)
    blob = sec[off:off + size]
    print("blob calls=%d" % ncalls)
    for i in range(ncalls):
        caller, callee, file, line, depth, flags = struct.unpack_from("<6I", blob, calls_off + 24 * i)
        print("call %s %s %s:%d depth=%d%s" % (cstr(blob, caller), cstr(blob, callee),
                                             cstr(blob, file), line, depth,
                                             " indirect" if flags & INDIRECT else ""))
    off += size
