#include <stdexcept>

#include "core/support/diagnostics.h"
#include "data_tool/tokenizer.h"

namespace lory::data {

namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<uint32_t> encode(const std::string& text) const override {
    return std::vector<uint32_t>(reinterpret_cast<const unsigned char*>(text.data()),
                                 reinterpret_cast<const unsigned char*>(text.data()) + text.size());
  }
  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::string out;
    for (uint32_t id : ids) {
      if (id < 256)
        out += static_cast<char>(id);
      else if (id != kEod)
        throw UserError("byte tokenizer: token id " + std::to_string(id) +
                        " is out of range (0..256)");
    }
    return out;
  }
  uint32_t vocab_size() const override { return 257; }
  uint32_t eod_id() const override { return kEod; }
  std::string kind() const override { return "byte"; }

 private:
  static constexpr uint32_t kEod = 256;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace lory::data
