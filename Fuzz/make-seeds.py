#!/usr/bin/env python3
"""Writes the seed corpora in Fuzz/seeds/: small valid images of every kind
the boot loaders accept. Only needed to change the seeds; Fuzz/run uses the
committed files."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
MB_MAGIC = 0x1BADB002


def pattern(n, seed):
    return bytes((i * 7 + seed * 31 | 1) & 0xFF for i in range(n))


def note(name, ntype, desc):
    name = name.encode() + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)
    return struct.pack("<III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def multiboot_header(flags=0, addresses=None):
    if addresses is not None:
        flags |= 1 << 16
    header = struct.pack("<III", MB_MAGIC, flags, (-(MB_MAGIC + flags)) & 0xFFFFFFFF)
    if addresses is not None:
        header += struct.pack("<5I", *addresses)
    return header


def elf(elf_class, entry, segments):
    """segments: (type, flags, paddr, vaddr, data, memsz, align)"""
    is64 = elf_class == 64
    ehsize, phentsize = (64, 56) if is64 else (52, 32)
    data_offset = ehsize + len(segments) * phentsize
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1]) + b"\0" * 9
    machine = 62 if is64 else 3
    if is64:
        header = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, ehsize, 0, 0, ehsize, phentsize,
                                     len(segments), 0, 0, 0)
    else:
        header = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, entry, ehsize, 0, 0, ehsize, phentsize,
                                     len(segments), 0, 0, 0)
    table, body, offset = b"", b"", data_offset
    for (ptype, flags, paddr, vaddr, data, memsz, align) in segments:
        if is64:
            table += struct.pack("<IIQQQQQQ", ptype, flags, offset, vaddr, paddr, len(data), memsz, align)
        else:
            table += struct.pack("<IIIIIIII", ptype, offset, vaddr, paddr, len(data), memsz, flags, align)
        body += data
        offset += len(data)
    return header + table + body


def with_header_at(data, offset, header):
    data = bytearray(data)
    data[offset:offset + len(header)] = header
    return bytes(data)


def images():
    notes = note("Xen", 18, struct.pack("<I", 0x100000)) + note("GNU", 3, pattern(20, 9))
    elf64 = elf(64, 0x100010, [
        (1, 5, 0x100000, 0x100000, pattern(0x200, 1), 0x200, 0x1000),
        (1, 6, 0x200000, 0x200000, pattern(0x40, 2), 0x1000, 0x1000),
        (4, 4, 0, 0, notes, len(notes), 4),
    ])
    # A higher-half ELF32 kernel with a Multiboot header at the start of its text.
    text32 = with_header_at(pattern(0x300, 4), 0, multiboot_header(flags=3))
    elf32 = elf(32, 0xC0100020, [(1, 5, 0x100000, 0xC0100000, text32, 0x2000, 0x1000)])
    # An ELF64 kernel with a Multiboot header (booted as GRUB would).
    text64 = with_header_at(pattern(0x200, 5), 0x10, multiboot_header(flags=1))
    elf64_mb = elf(64, 0x100000, [(1, 5, 0x100000, 0x100000, text64, 0x400, 0x1000)])
    # A flat binary with the address fields (the a.out kludge), and one asking for video.
    flat = with_header_at(pattern(0x1800, 8), 0x20,
                          multiboot_header(addresses=(0x200020, 0x200000, 0x201000, 0x203000, 0x200040)))
    video = with_header_at(pattern(0x400, 6), 0x40,
                           multiboot_header(flags=4, addresses=(0x100040, 0x100000, 0, 0, 0x100000)))
    return {"elf64": elf64, "elf32-multiboot": elf32, "elf64-multiboot": elf64_mb, "flat-multiboot": flat,
            "video-multiboot": video}


def main():
    all_images = images()
    corpora = {
        "FuzzELF": ["elf64", "elf32-multiboot", "elf64-multiboot"],
        "FuzzMultiboot": ["elf32-multiboot", "flat-multiboot", "video-multiboot"],
        "FuzzBootLoader": list(all_images),
    }
    for target, names in corpora.items():
        directory = os.path.join(HERE, "seeds", target)
        os.makedirs(directory, exist_ok=True)
        for name in names:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(all_images[name])


if __name__ == "__main__":
    main()
