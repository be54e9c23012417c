// Checkpoints of a training run, written atomically: the state goes to a new file
// (checkpoint-<step>.pt, via a temporary file, fsync and rename), then latest.json, which names
// that file with its sha256, replaces the previous one the same way. A crash at any moment leaves
// latest.json pointing at a complete, checksummed checkpoint (or at none).
#pragma once

#include <optional>
#include <string>

#include "adamw.h"
#include "lory/nn/model_api.h"
#include "training_data.h"

namespace lory {

struct TrainingState {
  int64_t step = 0;  // optimizer steps completed
  DataPosition data;
  bool upcycled = false;      // the dense warm-up is over and the MoE layers are in place
  int64_t upcycle_step = -1;  // step at which the switch happened (-1: none)
  int64_t tokens_seen = 0;
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::string directory) : directory_(std::move(directory)) {}
  const std::string& directory() const { return directory_; }

  void save(LanguageModel& model, const AdamW& optimizer, const TrainingState& state) const;
  // The state of the latest checkpoint (no tensors read), or nullopt when there is none.
  std::optional<TrainingState> latest_state() const;
  // Restores model and optimizer from the latest checkpoint; the model must already have the
  // structure the checkpoint was saved with (see TrainingState::upcycled). Throws UserError when
  // the file is missing or fails its checksum.
  TrainingState restore(LanguageModel& model, AdamW* optimizer) const;

 private:
  std::string directory_;
};

}  // namespace lory
