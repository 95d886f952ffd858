// `accel config`, `accel config default`, `accel config update`: write and
// upgrade Accelerate's YAML config (same keys, same default location).
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "accel/launch/cluster_config.h"
#include "accel/launch/launch_plan.h"
#include "accel/util/check.h"
#include "commands.h"
#include "questionnaire.h"

namespace accel::cli {
namespace {

using launch::ClusterConfig;
using launch::Value;

// Accelerate's write_basic_config: all GPUs (or the CPU) of this machine.
// Beyond it: `cpu` forces the CPU where GPUs are, and `processes` (> 0)
// sets the count (several CPU processes: MULTI_CPU, which accel launch
// starts in full).
ClusterConfig basic_config(const std::string& mixed_precision, int gpus, bool cpu, long processes) {
  ClusterConfig c;
  c.set("compute_environment", Value::of_text("LOCAL_MACHINE"));
  c.set("mixed_precision", Value::of_text(mixed_precision));
  if (gpus > 0 && !cpu) {
    const long n = processes > 0 ? processes : gpus;
    c.set("num_processes", Value::of_int(n));
    c.set("use_cpu", Value::of_bool(false));
    c.set("distributed_type", Value::of_text(n > 1 ? "MULTI_GPU" : "NO"));
  } else {
    const long n = processes > 0 ? processes : 1;
    c.set("use_cpu", Value::of_bool(true));
    c.set("num_processes", Value::of_int(n));
    c.set("distributed_type", Value::of_text(n > 1 ? "MULTI_CPU" : "NO"));
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
  auto cpu = std::make_shared<bool>(false);
  auto processes = std::make_shared<long>(0);
  def->add_option("--mixed_precision,--mixed-precision", *precision, "Mixed precision")
      ->check(CLI::IsMember({"no", "fp16", "bf16"}))
      ->capture_default_str();
  def->add_flag("--cpu", *cpu, "Train on the CPU even where GPUs are (default: the GPUs, if any)");
  def->add_option("--num_processes,--num-processes", *processes,
                  "Processes in all (default: every GPU, else 1; several on the CPU: MULTI_CPU)")
      ->check(CLI::PositiveNumber);
  def->callback([def_path, precision, cpu, processes] {
    const std::string where = def_path->empty() ? launch::default_config_path() : *def_path;
    if (std::filesystem::exists(where)) {
      std::cout << "Configuration already exists at " << where
                << ", will not override. Run `accel config` manually or pass a different `--config_file`." << std::endl;
      return;
    }
    const int gpus = *cpu ? 0 : launch::HostInfo::detect().gpu_count();
    basic_config(*precision, gpus, *cpu, *processes).save(where);
    std::cout << "accel configuration saved at " << where << std::endl;
  });

  auto* upd = cmd->add_subcommand("update", "Rewrite a config with every key Accelerate knows filled by its default");
  auto upd_path = std::make_shared<std::string>();
  upd->add_option("--config_file,--config-file", *upd_path, "The config to update (default: the default config)");
  upd->callback([upd_path] {
    const std::string where = upd_path->empty() ? launch::default_config_path() : *upd_path;
    ACCEL_CHECK_ARG(std::filesystem::exists(where), "The passed config file located at ", where, " doesn't exist.");
    ClusterConfig::load(where).save(where);
    std::cout << "Successfully updated the configuration file at " << where << "." << std::endl;
  });

  // Every question has a flag, so scripts need not pipe answers.
  auto answers = std::make_shared<std::map<std::string, std::string>>();
  for (const auto& f : question_flags()) {
    std::string names = "--" + std::string(f.key), dashed = f.key;
    for (auto& ch : dashed)
      if (ch == '_') ch = '-';
    if (dashed != f.key) names += ",--" + dashed;
    const std::string key = f.key;
    cmd->add_option_function<std::string>(
           names, [answers, key](const std::string& v) { (*answers)[key] = v; }, f.help)
        ->group("Answers (each skips its question)");
  }
  auto defaults_only = std::make_shared<bool>(false);
  cmd->add_flag("-y,--defaults", *defaults_only,
                "Ask nothing: questions without a flag take their default (and the file goes to --config_file or "
                "the default location)");
  cmd->callback([cmd, path, answers, defaults_only] {
    if (!cmd->get_subcommands().empty()) return;  // `default` or `update` ran
    Questionnaire q(std::cin, std::cout, *answers, *defaults_only);
    ClusterConfig c = ask_cluster_config(q);
    for (const auto& key : q.unused_answers())
      std::cerr << "accel config: warning: --" << key << " was not used: the other answers leave its question unasked"
                << std::endl;
    std::string where = path->empty() ? launch::default_config_path() : *path;
    if (path->empty() && !*defaults_only)
      where = q.text("config_file", "Where should the configuration be saved? [" + where + "]: ", where);
    c.save(where);
    std::cout << "accel configuration saved at " << where << std::endl;
  });
}

}  // namespace accel::cli
