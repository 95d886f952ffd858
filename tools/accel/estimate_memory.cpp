// `accel estimate-memory <model> [--dtypes ...] [--json]`: the memory a
// model needs to load and to train, per dtype, in the table
// `accelerate estimate-memory` prints. Accelerate's command takes a Hub
// model name and builds the model from the Hub's config; this one reads a
// local folder (the safetensors headers, else config.json) and needs no
// network. See big_model/memory_estimate.h for the rules.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "accel/big_model/memory_estimate.h"
#include "accel/big_model/tensor_shapes.h"
#include "accel/util/strings.h"
#include "commands.h"

namespace accel::cli {
namespace {

struct EstimateArgs {
  std::string model;
  std::vector<std::string> dtypes = default_estimate_dtypes();
  bool json = false;
};

void run_estimate(const EstimateArgs& a) {
  // A misspelt dtype is refused before the model is read.
  for (const auto& dtype : a.dtypes) estimate_memory(ModelSize{}, dtype);
  std::filesystem::path source;
  const ModelSize size = model_size(model_tensor_shapes(a.model, &source));
  std::vector<MemoryEstimate> rows;
  for (const auto& dtype : a.dtypes) rows.push_back(estimate_memory(size, dtype));
  if (!a.json) {
    std::cout << memory_table(rows, a.model) << std::endl;
    return;
  }
  nlohmann::json out = {{"model", a.model},
                        {"source", source.string()},
                        {"largest_layer_names", size.largest_layers},
                        {"rows", nlohmann::json::array()}};
  for (const auto& row : rows) {
    out["rows"].push_back(
        {{"dtype", row.dtype},
         {"largest_layer", row.largest_layer_bytes},
         {"total_size", row.total_bytes},
         {"training_using_adam", row.training_bytes ? nlohmann::json(*row.training_bytes) : nlohmann::json(nullptr)}});
  }
  std::cout << out.dump(2) << std::endl;
}

}  // namespace

void register_estimate_memory(CLI::App& app) {
  auto args = std::make_shared<EstimateArgs>();
  auto* cmd = app.add_subcommand("estimate-memory",
                                 "Estimate the memory a model needs to load and to train with Adam, per dtype");
  cmd->add_option("model", args->model,
                  "A model folder (safetensors weights, sharded or not, else config.json), a .safetensors file, an "
                  "index or a config.json")
      ->required();
  cmd->add_option("--dtypes", args->dtypes, "The dtypes to size the model in: " + join(estimate_dtypes(), ", "))
      ->expected(1, -1)
      ->default_str(join(default_estimate_dtypes(), " "));
  cmd->add_flag("--json", args->json, "Print the sizes in bytes as JSON instead of the table (accel only)");
  cmd->callback([args] { run_estimate(*args); });
}

}  // namespace accel::cli
