// `accel merge-weights <checkpoint_dir> <output_path> [--remove_checkpoint_dir]`:
// turns a sharded save_state folder's weights (ZeRO's, or full_shard's
// under SHARDED_STATE_DICT) into one model
// (<output_path>/model.safetensors, sharded with an index past
// --max_shard_size), as `accelerate merge-weights` does for FSDP's sharded
// state dicts. See checkpoint/merge_weights.h.
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "accel/checkpoint/merge_weights.h"
#include "accel/util/check.h"
#include "commands.h"

namespace accel::cli {
namespace {

struct MergeArgs {
  std::string checkpoint_dir;
  std::string output_path;
  bool remove_checkpoint_dir = false;
  bool unsafe_serialization = false;
  std::string max_shard_size = "10GB";
};

void run_merge(const MergeArgs& a) {
  ACCEL_CHECK_ARG(!a.unsafe_serialization,
                  "--unsafe_serialization: accel writes safetensors only (a pickled .bin runs code when loaded)");
  const SavedModel saved = merge_weights(a.checkpoint_dir, a.output_path,
                                         SaveModelOptions().max_shard_size(a.max_shard_size), a.remove_checkpoint_dir);
  std::cout << "Merged the weights of " << a.checkpoint_dir << " into "
            << (saved.sharded() ? saved.index_file : saved.files.front()) << " (" << saved.files.size() << " file"
            << (saved.files.size() == 1 ? "" : "s") << ", " << saved.total_size << " bytes)";
  if (a.remove_checkpoint_dir) std::cout << "; removed " << a.checkpoint_dir;
  std::cout << std::endl;
}

}  // namespace

void register_merge_weights(CLI::App& app) {
  auto args = std::make_shared<MergeArgs>();
  auto* cmd = app.add_subcommand(
      "merge-weights",
      "Merge the weights of a sharded (ZeRO or SHARDED_STATE_DICT) checkpoint into <output_path>/model.safetensors");
  cmd->add_option("checkpoint_directory", args->checkpoint_dir,
                  "A save_state folder with zero_layout.json and zero_shard_rank<r>.safetensors, or with "
                  "model_fsdp_rank<r>.safetensors")
      ->required();
  cmd->add_option("output_path", args->output_path, "The folder to write model.safetensors into")->required();
  cmd->add_flag("--remove_checkpoint_dir,--remove-checkpoint-dir", args->remove_checkpoint_dir,
                "Remove the checkpoint folder after merging");
  cmd->add_flag("--unsafe_serialization,--unsafe-serialization", args->unsafe_serialization,
                "Refused: accel writes safetensors only");
  cmd->add_option("--max_shard_size,--max-shard-size", args->max_shard_size,
                  "Shard the output past this size (accel only; default 10GB)");
  cmd->callback([args] { run_merge(*args); });
}

}  // namespace accel::cli
