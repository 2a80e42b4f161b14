// Training checkpoints: one file per saved step, written atomically, the last K kept.
//
// A checkpoint holds named sections (parameters, AdamW moments, the run's JSON state: step, RNG,
// data position, loss scale, config) so that a resumed run continues exactly as an uninterrupted one.
// File format "MOECKPT1": magic, u32 version, u64 section count, then per section: u32 name length,
// name, u8 kind (0 = f32 array, 1 = utf-8 text), u64 byte size, payload; then a u32 CRC32C of everything
// before it. Readers reject any mismatch with an error naming the file and what is wrong.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace moe::train {

struct Checkpoint {
  std::map<std::string, std::vector<float>> arrays;
  std::map<std::string, std::string> texts;
};

// Writes ckpt to `path` atomically: a temp file in the same directory, fsync, rename over path, fsync
// of the directory. A crash (even kill -9) at any moment leaves either the old file at path or the new
// one, never a torn file. Throws moe::Error naming the path on any I/O failure (the temp file is removed).
void save_checkpoint(const Checkpoint& ckpt, const std::string& path);

// Reads a checkpoint written by save_checkpoint; throws moe::Error naming the path and the defect
// (bad magic, truncation, checksum mismatch, oversized section) on malformed input.
Checkpoint load_checkpoint(const std::string& path);

// Checkpoints of a run live in dir as step_<8-digit step>.ckpt.
std::string checkpoint_path(const std::string& dir, int64_t step);
// Steps of the complete checkpoints in dir, ascending (temp files and other names ignored).
std::vector<int64_t> list_checkpoints(const std::string& dir);
// Deletes all but the newest keep checkpoints in dir (keep <= 0: keep all).
void prune_checkpoints(const std::string& dir, int keep);

}  // namespace moe::train
