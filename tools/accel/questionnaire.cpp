#include "questionnaire.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "accel/util/checked_number.h"

namespace accel::cli {
namespace {

using launch::ClusterConfig;
using launch::Value;

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

std::string Questionnaire::ask(const std::string& question) {
  out_ << question << std::flush;
  std::string line;
  if (!std::getline(in_, line)) line.clear();  // end of input: take the default
  if (!in_.good() && !in_.eof()) line.clear();
  out_ << (in_.eof() ? "\n" : "");
  return trim(line);
}

std::string Questionnaire::text(const std::string& question, const std::string& fallback) {
  auto a = ask(question);
  return a.empty() ? fallback : a;
}

long Questionnaire::integer(const std::string& question, long fallback, long min, long max) {
  for (int tries = 0;; ++tries) {
    auto a = ask(question);
    if (a.empty()) return fallback;
    try {
      return static_cast<long>(parse_integer_in(a, "answer", min, max));
    } catch (const std::invalid_argument& e) {
      if (in_.eof() || tries > 20) throw std::invalid_argument(std::string(e.what()) + ": " + question);
      out_ << "Please enter an integer from " << min << " to " << max << ".\n";
    }
  }
}

double Questionnaire::number(const std::string& question, double fallback) {
  for (int tries = 0;; ++tries) {
    auto a = ask(question);
    if (a.empty()) return fallback;
    try {
      size_t used = 0;
      double v = std::stod(a, &used);
      if (used == a.size()) return v;
    } catch (const std::exception&) {
    }
    if (in_.eof() || tries > 20) throw std::invalid_argument("'" + a + "' is not a number: " + question);
    out_ << "Please enter a number.\n";
  }
}

bool Questionnaire::yes_no(const std::string& question, bool fallback) {
  for (int tries = 0;; ++tries) {
    auto a = ask(question);
    std::transform(a.begin(), a.end(), a.begin(), ::tolower);
    if (a.empty()) return fallback;
    if (a == "y" || a == "yes" || a == "true") return true;
    if (a == "n" || a == "no" || a == "false") return false;
    if (in_.eof() || tries > 20) throw std::invalid_argument("'" + a + "' is not yes or no: " + question);
    out_ << "Please enter yes or no.\n";
  }
}

std::string Questionnaire::choose(const std::string& question, const std::vector<std::string>& options,
                                  size_t fallback) {
  std::string prompt = question + "\n";
  for (size_t i = 0; i < options.size(); ++i)
    prompt += "  [" + std::to_string(i) + "] " + options[i] + (i == fallback ? " (default)" : "") + "\n";
  prompt += "Enter a number or a value [" + std::to_string(fallback) + "]: ";
  for (int tries = 0;; ++tries) {
    auto a = ask(prompt);
    if (a.empty()) return options[fallback];
    for (size_t i = 0; i < options.size(); ++i)
      if (a == std::to_string(i) || a == options[i]) return options[i];
    if (in_.eof() || tries > 20) throw std::invalid_argument("'" + a + "' is not one of the options: " + question);
    out_ << "Please pick one of the options.\n";
  }
}

ClusterConfig ask_cluster_config(Questionnaire& q) {
  ClusterConfig c;
  const std::string machine =
      q.choose("Which type of machine are you using?", {"No distributed training", "multi-CPU", "multi-GPU"});
  std::string type = machine == "multi-CPU" ? "MULTI_CPU" : machine == "multi-GPU" ? "MULTI_GPU" : "NO";
  long num_machines = 1, machine_rank = 0;
  bool same_network = true, debug = false;
  std::string rdzv_backend = "static";
  if (type != "NO") {
    num_machines =
        q.integer("How many different machines will you use (use more than 1 for multi-node training)? [1]: ", 1, 1);
    if (num_machines > 1) {
      machine_rank = q.integer("What is the rank of this machine? [0]: ", 0, 0, num_machines - 1);
      c.set("main_process_ip",
            Value::of_text(q.text("What is the IP address of the machine that will host the main process? ", "")));
      c.set("main_process_port",
            Value::of_int(q.integer(
                "What is the port you will use to communicate with the main process? [29500]: ", 29500, 0, 65535)));
      same_network = q.yes_no("Are all the machines on the same local network? [YES/no]: ", true);
      if (!same_network)
        rdzv_backend = q.text("What rendezvous backend will you use? ('static', 'c10d', ...) [static]: ", "static");
    }
    debug = q.yes_no(
        "Should distributed operations be checked while running for errors? This can avoid timeout "
        "issues but will be slower. [yes/NO]: ",
        false);
  }
  bool use_cpu = type == "MULTI_CPU";
  if (type == "NO")
    use_cpu = q.yes_no("Do you want to run your training on CPU only (even if a GPU is available)? [yes/NO]: ", false);

  bool ds_config_file = false;
  if (type == "NO" || type == "MULTI_GPU") {
    if (!use_cpu && q.yes_no("Do you want to use DeepSpeed (accel's ZeRO)? [yes/NO]: ", false)) {
      type = "DEEPSPEED";
      ds_config_file = q.yes_no("Do you want to specify a json file to a DeepSpeed config? [yes/NO]: ", false);
      if (ds_config_file) {
        c.set("deepspeed_config", "deepspeed_config_file",
              Value::of_text(q.text("Please enter the path to the json DeepSpeed config file: ", "none")));
      } else {
        long stage =
            std::stol(q.choose("What should be your DeepSpeed's ZeRO optimization stage?", {"0", "1", "2", "3"}, 2));
        c.set("deepspeed_config", "zero_stage", Value::of_int(stage));
        if (stage >= 2) {
          c.set("deepspeed_config", "offload_optimizer_device",
                Value::of_text(q.choose("Where to offload optimizer states?", {"none", "cpu", "nvme"})));
          c.set("deepspeed_config", "offload_param_device",
                Value::of_text(q.choose("Where to offload parameters?", {"none", "cpu", "nvme"})));
          if (c.section("deepspeed_config").at("offload_param_device").text == "nvme")
            c.set("deepspeed_config", "offload_param_nvme_path",
                  Value::of_text(q.text("Nvme Path to offload parameters? [/nvme]: ", "/nvme")));
          if (c.section("deepspeed_config").at("offload_optimizer_device").text == "nvme")
            c.set("deepspeed_config", "offload_optimizer_nvme_path",
                  Value::of_text(q.text("Nvme Path to offload optimizer states? [/nvme]: ", "/nvme")));
        }
        c.set("deepspeed_config", "gradient_accumulation_steps",
              Value::of_int(
                  q.integer("How many gradient accumulation steps you're passing in your script? [1]: ", 1, 1)));
        if (q.yes_no("Do you want to use gradient clipping? [yes/NO]: ", false))
          c.set("deepspeed_config", "gradient_clipping",
                Value::of_number(q.number("What is the gradient clipping value? [1.0]: ", 1.0)));
        if (stage == 3)
          c.set("deepspeed_config", "zero3_save_16bit_model",
                Value::of_bool(
                    q.yes_no("Do you want to save 16-bit model weights when using ZeRO Stage-3? [yes/NO]: ", false)));
      }
      c.set("deepspeed_config", "zero3_init_flag",
            Value::of_bool(
                q.yes_no("Do you want to construct ZeRO Stage-3 models sharded from the start? [yes/NO]: ", false)));
    }
  }
  if (type == "MULTI_GPU" && q.yes_no("Do you want to use FullyShardedDataParallel? [yes/NO]: ", false)) {
    type = "FSDP";
    const long version = std::stol(q.choose("What should be your FSDP version?", {"1", "2"}, 1));
    auto set = [&](const char* k, Value v) { c.set("fsdp_config", k, std::move(v)); };
    set("fsdp_version", Value::of_int(version));
    if (version == 1)
      set("fsdp_reshard_after_forward",
          Value::of_text(q.choose("What should be your sharding strategy?",
                                  {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2"})));
    else
      set("fsdp_reshard_after_forward",
          Value::of_bool(q.yes_no("Do you want to enable resharding after forward? [YES/no]: ", true)));
    set("fsdp_offload_params",
        Value::of_bool(q.yes_no("Do you want to offload parameters and gradients to CPU? [yes/NO]: ", false)));
    const std::string policy =
        q.choose("What should be your auto wrap policy?", {"TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"});
    set("fsdp_auto_wrap_policy", Value::of_text(policy));
    if (policy == "TRANSFORMER_BASED_WRAP")
      set("fsdp_transformer_layer_cls_to_wrap",
          Value::of_text(q.text("Specify the comma-separated list of layer class names (units) to wrap: ", "")));
    else if (policy == "SIZE_BASED_WRAP")
      set("fsdp_min_num_params",
          Value::of_int(q.integer("What should be your FSDP's minimum number of parameters for Default Auto Wrapping "
                                  "Policy? [1e8]: ",
                                  100000000, 0)));
    if (version == 1)
      set("fsdp_backward_prefetch", Value::of_text(q.choose("What should be your FSDP's backward prefetch policy?",
                                                            {"BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"})));
    set("fsdp_state_dict_type",
        Value::of_text(version == 1 ? q.choose("What should be your FSDP's state dict type?",
                                               {"FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"})
                                    : q.choose("What should be your FSDP's state dict type?",
                                               {"SHARDED_STATE_DICT", "FULL_STATE_DICT"})));
    if (version == 1) {
      set("fsdp_forward_prefetch",
          Value::of_bool(q.yes_no("Do you want to enable FSDP's forward prefetch policy? [yes/NO]: ", false)));
      set("fsdp_use_orig_params",
          Value::of_bool(q.yes_no("Do you want to enable FSDP's `use_orig_params` feature? [YES/no]: ", true)));
    }
    const bool efficient = q.yes_no("Do you want to enable CPU RAM efficient model loading? [YES/no]: ", true);
    set("fsdp_cpu_ram_efficient_loading", Value::of_bool(efficient));
    if (version == 1)
      set("fsdp_sync_module_states",
          Value::of_bool(efficient ? true
                                   : q.yes_no("Do you want each individually wrapped FSDP unit to broadcast module "
                                              "parameters from rank 0 at the start? [YES/no]: ",
                                              true)));
    set("fsdp_activation_checkpointing",
        Value::of_bool(q.yes_no("Do you want to enable FSDP activation checkpointing? [yes/NO]: ", false)));
  }

  long num_processes = 1;
  if (type == "MULTI_CPU")
    num_processes = q.integer("How many processes should be used for distributed training? [1]: ", 1, 1);
  else if (type != "NO")
    num_processes = q.integer("How many GPU(s) should be used for distributed training? [1]: ", 1, 1);
  if (type == "MULTI_GPU" && num_machines == 1 && num_processes == 1)
    throw std::invalid_argument(
        "Specified distributed type MULTI_GPU but only using 1 GPU on a single machine. Please select `No "
        "distributed training` for the type of machine you are using.");
  if ((type == "MULTI_GPU" || type == "NO") && !use_cpu)
    c.set("gpu_ids", Value::of_text(q.text("What GPU(s) (by id) should be used for training on this machine as a "
                                           "comma-separated list? [all]: ",
                                           "all")));
  if (!(type == "DEEPSPEED" && ds_config_file))
    c.set("mixed_precision",
          Value::of_text(q.choose("Do you wish to use mixed precision?", {"no", "fp16", "bf16", "fp8"})));

  c.set("compute_environment", Value::of_text("LOCAL_MACHINE"));
  c.set("distributed_type", Value::of_text(type));
  c.set("num_processes", Value::of_int(num_processes));
  c.set("num_machines", Value::of_int(num_machines));
  c.set("machine_rank", Value::of_int(machine_rank));
  c.set("use_cpu", Value::of_bool(use_cpu));
  c.set("debug", Value::of_bool(debug));
  c.set("same_network", Value::of_bool(same_network));
  c.set("rdzv_backend", Value::of_text(rdzv_backend));
  c.set("downcast_bf16", Value::of_text("no"));
  c.set("enable_cpu_affinity", Value::of_bool(false));
  c.fill_defaults();
  return c;
}

}  // namespace accel::cli
