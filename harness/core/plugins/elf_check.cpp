#include "core/plugins/elf_check.h"

#include <elf.h>
#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <vector>

namespace lory {

namespace {

#if defined(__x86_64__)
constexpr uint16_t kThisMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kThisMachine = EM_AARCH64;
#else
constexpr uint16_t kThisMachine = EM_NONE;  // not checked
#endif

std::string truncated(uint64_t needed, uint64_t size, const char* what) {
  return fmt::format(
      "is truncated or damaged: its {} reach byte {}, but the file has {} bytes (a partial copy?); "
      "copy or rebuild it",
      what, needed, size);
}

}  // namespace

std::string shared_library_problem(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "cannot be read";
  const uint64_t size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  Elf64_Ehdr header{};
  in.read(reinterpret_cast<char*>(&header), sizeof header);
  if (size < 4 || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0)
    return "is not a shared library (no ELF header)";
  if (static_cast<uint64_t>(in.gcount()) < sizeof header)
    return truncated(sizeof header, size, "ELF header would");
  if (header.e_ident[EI_CLASS] != ELFCLASS64)
    return "is a 32-bit ELF file; this lory loads 64-bit plugins";
  if (header.e_ident[EI_DATA] != ELFDATA2LSB)
    return "is a big-endian ELF file, built for another machine";
  if (header.e_type != ET_DYN)
    return fmt::format("is an ELF file of type {}, not a shared library", header.e_type);
  if (kThisMachine != EM_NONE && header.e_machine != kThisMachine) {
    return fmt::format("was built for another processor (ELF machine {}, this one is {})",
                       header.e_machine, kThisMachine);
  }
  if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum == 0) {
    return "has no usable program headers, so it is not a loadable shared library";
  }
  const uint64_t program_headers_end =
      header.e_phoff + uint64_t{header.e_phnum} * sizeof(Elf64_Phdr);
  if (header.e_phoff > size || program_headers_end > size)
    return truncated(program_headers_end, size, "program headers");
  if (header.e_shnum > 0) {
    const uint64_t section_headers_end =
        header.e_shoff + uint64_t{header.e_shnum} * header.e_shentsize;
    if (header.e_shoff > size || section_headers_end > size) {
      return truncated(section_headers_end, size, "section headers");
    }
  }
  std::vector<Elf64_Phdr> segments(header.e_phnum);
  in.seekg(static_cast<std::streamoff>(header.e_phoff));
  in.read(reinterpret_cast<char*>(segments.data()),
          static_cast<std::streamsize>(segments.size() * sizeof(Elf64_Phdr)));
  if (!in) return truncated(program_headers_end, size, "program headers");
  for (const Elf64_Phdr& segment : segments) {
    // Every segment whose bytes come from the file: what dlopen maps (PT_LOAD) or reads.
    if (segment.p_type == PT_NULL || segment.p_filesz == 0) continue;
    const uint64_t end = segment.p_offset + segment.p_filesz;
    if (segment.p_offset > size || end > size || end < segment.p_offset)
      return truncated(end, size, "segments");
  }
  return "";
}

}  // namespace lory
