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


def bzimage(setup_sects=1, version=0x020F, loadflags=0x01, xloadflags=0x03, relocatable=1, alignment=0x200000,
            pref=0x100000, init_size=0x100000, initrd_max=0x7FFFFFFF, cmdline_size=0x7FF, payload=None):
    """A bzImage: boot sector and setup sectors with the setup header at
    0x1f1 (its jump ending the header at 0x26c), then the protected-mode
    kernel. The defaults load at 2 MiB in the fuzzers' 4 MiB guest."""
    payload = payload if payload is not None else pattern(0x400, 10)
    setup = bytearray(pattern(((setup_sects or 4) + 1) * 512, 11))
    def put(fmt, offset, *values):
        struct.pack_into(fmt, setup, offset, *values)
    put("<BHI", 0x1F1, setup_sects, 0, len(payload) // 16)
    put("<HHH", 0x1FA, 0xFFFF, 0, 0xAA55)
    put("<HIH", 0x200, 0x6AEB, 0x53726448, version)
    put("<BBHI", 0x210, 0, loadflags, 0, 0x100000)
    put("<IIIHBBII", 0x218, 0, 0, 0, 0, 0, 0, 0, initrd_max)
    put("<IBBHI", 0x230, alignment, relocatable, 21, xloadflags, cmdline_size)
    put("<QQI", 0x250, 0, pref, init_size)
    return bytes(setup) + payload


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
    # PVH kernels: a 32-bit note in ELF64, a 64-bit (pointer-sized) note in ELF32.
    pvh_notes = note("GNU", 3, pattern(20, 9)) + note("Xen", 18, struct.pack("<I", 0x100040))
    pvh64 = elf(64, 0x100000, [(1, 5, 0x100000, 0x100000, pattern(0x200, 12), 0x800, 0x1000),
                              (4, 4, 0, 0, pvh_notes, len(pvh_notes), 4)])
    pvh32_notes = note("Xen", 18, struct.pack("<Q", 0x100010))
    pvh32 = elf(32, 0x100000, [(1, 5, 0x100000, 0x100000, pattern(0x100, 13), 0x100, 0x1000),
                              (4, 4, 0, 0, pvh32_notes, len(pvh32_notes), 4)])
    # A vmlinux: linked high, physical e_entry, "Linux" notes, no PVH note.
    linux_notes = note("Linux", 0x100, b"salt") + note("Linux", 0x101, struct.pack("<I", 0))
    vmlinux = elf(64, 0x200000, [(1, 5, 0x200000, 0xFFFFFFFF81200000, pattern(0x300, 14), 0x1000, 0x200000),
                                (1, 6, 0x300000, 0xFFFFFFFF81300000, pattern(0x80, 15), 0x800, 0x200000),
                                (4, 4, 0, 0, linux_notes, len(linux_notes), 4)])
    return {"elf64": elf64, "elf32-multiboot": elf32, "elf64-multiboot": elf64_mb, "flat-multiboot": flat,
            "video-multiboot": video, "pvh-elf64": pvh64, "pvh-elf32": pvh32, "vmlinux": vmlinux,
            "bzimage": bzimage(), "bzimage-setup-sects-0": bzimage(setup_sects=0),
            "bzimage-fixed": bzimage(relocatable=0, pref=0x180000, init_size=0x200000),
            "bzimage-2.12": bzimage(version=0x020C, xloadflags=0x01, initrd_max=0x37FFFFFF, cmdline_size=255)}


def main():
    all_images = images()
    corpora = {
        "FuzzELF": ["elf64", "elf32-multiboot", "elf64-multiboot", "pvh-elf64", "pvh-elf32", "vmlinux"],
        "FuzzMultiboot": ["elf32-multiboot", "flat-multiboot", "video-multiboot"],
        "FuzzBootLoader": list(all_images),
        "FuzzBzImage": ["bzimage", "bzimage-setup-sects-0", "bzimage-fixed", "bzimage-2.12", "vmlinux"],
    }
    for target, names in corpora.items():
        directory = os.path.join(HERE, "seeds", target)
        os.makedirs(directory, exist_ok=True)
        for name in names:
            with open(os.path.join(directory, name), "wb") as f:
                f.write(all_images[name])


if __name__ == "__main__":
    main()
