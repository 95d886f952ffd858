// `accel config`, `accel config default`, `accel config update`: write and
// upgrade Accelerate's YAML config (same keys, same default location).
#include <filesystem>
#include <iostream>
#include <memory>

#include "accel/launch/cluster_config.h"
#include "accel/launch/launch_plan.h"
#include "commands.h"
#include "questionnaire.h"

namespace accel::cli {
namespace {

using launch::ClusterConfig;
using launch::Value;

// Accelerate's write_basic_config: all GPUs (or the CPU) of this machine.
ClusterConfig basic_config(const std::string& mixed_precision, int gpus) {
  ClusterConfig c;
  c.set("compute_environment", Value::of_text("LOCAL_MACHINE"));
  c.set("mixed_precision", Value::of_text(mixed_precision));
  if (gpus > 0) {
    c.set("num_processes", Value::of_int(gpus));
    c.set("use_cpu", Value::of_bool(false));
    c.set("distributed_type", Value::of_text(gpus > 1 ? "MULTI_GPU" : "NO"));
  } else {
    c.set("use_cpu", Value::of_bool(true));
    c.set("num_processes", Value::of_int(1));
    c.set("distributed_type", Value::of_text("NO"));
  }
  c.set("debug", Value::of_bool(false));
  c.set("enable_cpu_affinity", Value::of_bool(false));
  c.fill_defaults();
  return c;
}

}  // namespace

void register_config(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("config", "Write Accelerate's YAML config: a questionnaire, or `default`, or `update`");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--config_file,--config-file", *path,
                  "Where to save the config (default: " + launch::default_config_path() + ")");

  auto* def = cmd->add_subcommand("default", "Write a default config for this machine");
  auto def_path = std::make_shared<std::string>();
  auto precision = std::make_shared<std::string>("no");
  def->add_option("--config_file,--config-file", *def_path, "Where to save the config");
  def->add_option("--mixed_precision,--mixed-precision", *precision, "Mixed precision")
      ->check(CLI::IsMember({"no", "fp16", "bf16"}));
  def->callback([def_path, precision] {
    const std::string where = def_path->empty() ? launch::default_config_path() : *def_path;
    if (std::filesystem::exists(where)) {
      std::cout << "Configuration already exists at " << where
                << ", will not override. Run `accel config` manually or pass a different `--config_file`." << std::endl;
      return;
    }
    basic_config(*precision, launch::HostInfo::detect().gpu_count()).save(where);
    std::cout << "accel configuration saved at " << where << std::endl;
  });

  auto* upd = cmd->add_subcommand("update", "Rewrite a config with every key Accelerate knows filled by its default");
  auto upd_path = std::make_shared<std::string>();
  upd->add_option("--config_file,--config-file", *upd_path, "The config to update (default: the default config)");
  upd->callback([upd_path] {
    const std::string where = upd_path->empty() ? launch::default_config_path() : *upd_path;
    if (!std::filesystem::exists(where))
      throw std::invalid_argument("The passed config file located at " + where + " doesn't exist.");
    ClusterConfig::load(where).save(where);
    std::cout << "Successfully updated the configuration file at " << where << "." << std::endl;
  });

  cmd->callback([cmd, path] {
    if (!cmd->get_subcommands().empty()) return;  // `default` or `update` ran
    Questionnaire q(std::cin, std::cout);
    ClusterConfig c = ask_cluster_config(q);
    std::string where = path->empty() ? launch::default_config_path() : *path;
    where = q.text("Where should the configuration be saved? [" + where + "]: ", where);
    c.save(where);
    std::cout << "accel configuration saved at " << where << std::endl;
  });
}

}  // namespace accel::cli
