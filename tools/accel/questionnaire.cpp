#include "questionnaire.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "accel/util/check.h"
#include "accel/util/checked_number.h"
#include "accel/util/strings.h"

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

const std::vector<QuestionFlag>& question_flags() {
  static const std::vector<QuestionFlag> flags = {
      {"machine_type", "No distributed training, multi-CPU or multi-GPU (or its number 0, 1, 2)"},
      {"num_machines", "how many machines"},
      {"machine_rank", "the rank of this machine"},
      {"main_process_ip", "the IP address of the machine of the main process"},
      {"main_process_port", "the port of the main process"},
      {"same_network", "all machines on the same local network (yes/no)"},
      {"rdzv_backend", "rendezvous backend (static, c10d, ...)"},
      {"debug", "check distributed operations for errors (yes/no)"},
      {"use_cpu", "train on the CPU only (yes/no)"},
      {"use_deepspeed", "use DeepSpeed, i.e. accel's ZeRO (yes/no)"},
      {"use_deepspeed_config_file", "give a DeepSpeed JSON config file (yes/no)"},
      {"deepspeed_config_file", "the DeepSpeed JSON config file"},
      {"zero_stage", "ZeRO stage 0, 1, 2 or 3"},
      {"offload_optimizer_device", "none, cpu or nvme"},
      {"offload_param_device", "none, cpu or nvme"},
      {"offload_param_nvme_path", "NVMe path for parameters"},
      {"offload_optimizer_nvme_path", "NVMe path for optimizer states"},
      {"gradient_accumulation_steps", "DeepSpeed's gradient accumulation steps"},
      {"use_gradient_clipping", "DeepSpeed clips gradients (yes/no)"},
      {"gradient_clipping", "DeepSpeed's gradient clipping value"},
      {"zero3_save_16bit_model", "save 16-bit weights under ZeRO-3 (yes/no)"},
      {"zero3_init_flag", "construct ZeRO-3 models sharded (yes/no)"},
      {"use_fsdp", "use FullyShardedDataParallel (yes/no)"},
      {"fsdp_version", "FSDP version 1 or 2"},
      {"fsdp_sharding_strategy", "FSDP 1 sharding strategy (FULL_SHARD, SHARD_GRAD_OP, ...)"},
      {"fsdp_reshard_after_forward", "FSDP 2: reshard after forward (yes/no)"},
      {"fsdp_offload_params", "offload parameters and gradients to the CPU (yes/no)"},
      {"fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP, SIZE_BASED_WRAP or NO_WRAP"},
      {"fsdp_transformer_layer_cls_to_wrap", "comma-separated unit class names to wrap"},
      {"fsdp_min_num_params", "minimum parameters of a unit under SIZE_BASED_WRAP"},
      {"fsdp_backward_prefetch", "BACKWARD_PRE, BACKWARD_POST or NO_PREFETCH"},
      {"fsdp_state_dict_type", "FULL_STATE_DICT, LOCAL_STATE_DICT or SHARDED_STATE_DICT"},
      {"fsdp_forward_prefetch", "FSDP forward prefetch (yes/no)"},
      {"fsdp_use_orig_params", "FSDP use_orig_params (yes/no)"},
      {"fsdp_cpu_ram_efficient_loading", "CPU RAM efficient model loading (yes/no)"},
      {"fsdp_sync_module_states", "broadcast module parameters from rank 0 (yes/no)"},
      {"fsdp_activation_checkpointing", "FSDP activation checkpointing (yes/no)"},
      {"num_processes", "how many processes (or GPUs) in all"},
      {"gpu_ids", "comma-separated GPU ids, or all"},
      {"mixed_precision", "no, fp16, bf16 or fp8"},
  };
  return flags;
}

std::vector<std::string> Questionnaire::unused_answers() const {
  std::vector<std::string> out;
  for (const auto& [key, value] : answers_) out.push_back(key);
  return out;
}

std::string Questionnaire::ask(const std::string& key, const std::string& question) {
  given_ = false;
  if (auto it = answers_.find(key); it != answers_.end()) {
    given_ = true;
    std::string a = trim(it->second);
    answers_.erase(it);
    return a;
  }
  if (defaults_only_) return "";
  out_ << question << std::flush;
  std::string line;
  if (!std::getline(in_, line)) line.clear();  // end of input: take the default
  if (!in_.good() && !in_.eof()) line.clear();
  out_ << (in_.eof() ? "\n" : "");
  return trim(line);
}

void Questionnaire::reject(const std::string& key, const std::string& answer, const std::string& expected,
                           const std::string& question, int tries) {
  // A flag is not asked again: name it.
  ACCEL_CHECK_ARG(!given_, "--", key, " '", answer, "': expected ", expected);
  ACCEL_CHECK_ARG(!in_.eof() && tries <= 20, "'", answer, "' is not ", expected, ": ", question);
  out_ << "Please enter " << expected << ".\n";
}

std::string Questionnaire::text(const std::string& key, const std::string& question, const std::string& fallback) {
  auto a = ask(key, question);
  return a.empty() ? fallback : a;
}

long Questionnaire::integer(const std::string& key, const std::string& question, long fallback, long min, long max) {
  for (int tries = 0;; ++tries) {
    auto a = ask(key, question);
    if (a.empty()) return fallback;
    try {
      return static_cast<long>(parse_integer_in(a, "answer", min, max));
    } catch (const std::invalid_argument&) {
      reject(key, a, "an integer from " + std::to_string(min) + " to " + std::to_string(max), question, tries);
    }
  }
}

double Questionnaire::number(const std::string& key, const std::string& question, double fallback) {
  for (int tries = 0;; ++tries) {
    auto a = ask(key, question);
    if (a.empty()) return fallback;
    try {
      size_t used = 0;
      double v = std::stod(a, &used);
      if (used == a.size()) return v;
    } catch (const std::exception&) {
    }
    reject(key, a, "a number", question, tries);
  }
}

bool Questionnaire::yes_no(const std::string& key, const std::string& question, bool fallback) {
  for (int tries = 0;; ++tries) {
    const auto a = accel::lower(ask(key, question));
    if (a.empty()) return fallback;
    if (a == "y" || a == "yes" || a == "true") return true;
    if (a == "n" || a == "no" || a == "false") return false;
    reject(key, a, "yes or no", question, tries);
  }
}

std::string Questionnaire::choose(const std::string& key, const std::string& question,
                                  const std::vector<std::string>& options, size_t fallback) {
  std::string prompt = question + "\n";
  std::string listed;
  for (size_t i = 0; i < options.size(); ++i) {
    prompt += "  [" + std::to_string(i) + "] " + options[i] + (i == fallback ? " (default)" : "") + "\n";
    listed += (i ? ", " : "") + options[i];
  }
  prompt += "Enter a number or a value [" + std::to_string(fallback) + "]: ";
  for (int tries = 0;; ++tries) {
    auto a = ask(key, prompt);
    if (a.empty()) return options[fallback];
    for (size_t i = 0; i < options.size(); ++i)
      if (a == std::to_string(i) || a == options[i]) return options[i];
    reject(key, a, "one of " + listed, question, tries);
  }
}

ClusterConfig ask_cluster_config(Questionnaire& q) {
  ClusterConfig c;
  const std::string machine = q.choose("machine_type", "Which type of machine are you using?",
                                       {"No distributed training", "multi-CPU", "multi-GPU"});
  std::string type = machine == "multi-CPU" ? "MULTI_CPU" : machine == "multi-GPU" ? "MULTI_GPU" : "NO";
  long num_machines = 1, machine_rank = 0;
  bool same_network = true, debug = false;
  std::string rdzv_backend = "static";
  if (type != "NO") {
    num_machines =
        q.integer("num_machines",
                  "How many different machines will you use (use more than 1 for multi-node training)? [1]: ", 1, 1);
    if (num_machines > 1) {
      machine_rank = q.integer("machine_rank", "What is the rank of this machine? [0]: ", 0, 0, num_machines - 1);
      c.set("main_process_ip",
            Value::of_text(q.text("main_process_ip",
                                  "What is the IP address of the machine that will host the main process? ", "")));
      c.set("main_process_port",
            Value::of_int(q.integer(
                "main_process_port",
                "What is the port you will use to communicate with the main process? [29500]: ", 29500, 0, 65535)));
      same_network = q.yes_no("same_network", "Are all the machines on the same local network? [YES/no]: ", true);
      if (!same_network)
        rdzv_backend = q.text("rdzv_backend",
                              "What rendezvous backend will you use? ('static', 'c10d', ...) [static]: ", "static");
    }
    debug = q.yes_no("debug",
                     "Should distributed operations be checked while running for errors? This can avoid timeout "
                     "issues but will be slower. [yes/NO]: ",
                     false);
  }
  bool use_cpu = type == "MULTI_CPU";
  if (type == "NO")
    use_cpu = q.yes_no("use_cpu",
                       "Do you want to run your training on CPU only (even if a GPU is available)? [yes/NO]: ", false);

  bool ds_config_file = false;
  if (type == "NO" || type == "MULTI_GPU") {
    if (!use_cpu && q.yes_no("use_deepspeed", "Do you want to use DeepSpeed (accel's ZeRO)? [yes/NO]: ", false)) {
      type = "DEEPSPEED";
      ds_config_file = q.yes_no("use_deepspeed_config_file",
                                "Do you want to specify a json file to a DeepSpeed config? [yes/NO]: ", false);
      if (ds_config_file) {
        c.set("deepspeed_config", "deepspeed_config_file",
              Value::of_text(q.text("deepspeed_config_file",
                                    "Please enter the path to the json DeepSpeed config file: ", "none")));
      } else {
        long stage = std::stol(q.choose("zero_stage", "What should be your DeepSpeed's ZeRO optimization stage?",
                                        {"0", "1", "2", "3"}, 2));
        c.set("deepspeed_config", "zero_stage", Value::of_int(stage));
        if (stage >= 2) {
          c.set("deepspeed_config", "offload_optimizer_device",
                Value::of_text(q.choose("offload_optimizer_device", "Where to offload optimizer states?",
                                        {"none", "cpu", "nvme"})));
          c.set("deepspeed_config", "offload_param_device",
                Value::of_text(
                    q.choose("offload_param_device", "Where to offload parameters?", {"none", "cpu", "nvme"})));
          if (c.section("deepspeed_config").at("offload_param_device").text == "nvme")
            c.set("deepspeed_config", "offload_param_nvme_path",
                  Value::of_text(
                      q.text("offload_param_nvme_path", "Nvme Path to offload parameters? [/nvme]: ", "/nvme")));
          if (c.section("deepspeed_config").at("offload_optimizer_device").text == "nvme")
            c.set("deepspeed_config", "offload_optimizer_nvme_path",
                  Value::of_text(q.text("offload_optimizer_nvme_path",
                                        "Nvme Path to offload optimizer states? [/nvme]: ", "/nvme")));
        }
        c.set("deepspeed_config", "gradient_accumulation_steps",
              Value::of_int(q.integer("gradient_accumulation_steps",
                                      "How many gradient accumulation steps you're passing in your script? [1]: ", 1,
                                      1)));
        if (q.yes_no("use_gradient_clipping", "Do you want to use gradient clipping? [yes/NO]: ", false))
          c.set("deepspeed_config", "gradient_clipping",
                Value::of_number(q.number("gradient_clipping", "What is the gradient clipping value? [1.0]: ", 1.0)));
        if (stage == 3)
          c.set("deepspeed_config", "zero3_save_16bit_model",
                Value::of_bool(
                    q.yes_no("zero3_save_16bit_model",
                             "Do you want to save 16-bit model weights when using ZeRO Stage-3? [yes/NO]: ", false)));
      }
      c.set("deepspeed_config", "zero3_init_flag",
            Value::of_bool(
                q.yes_no("zero3_init_flag",
                         "Do you want to construct ZeRO Stage-3 models sharded from the start? [yes/NO]: ", false)));
    }
  }
  if (type == "MULTI_GPU" && q.yes_no("use_fsdp", "Do you want to use FullyShardedDataParallel? [yes/NO]: ", false)) {
    type = "FSDP";
    const long version = std::stol(q.choose("fsdp_version", "What should be your FSDP version?", {"1", "2"}, 1));
    auto set = [&](const char* k, Value v) { c.set("fsdp_config", k, std::move(v)); };
    set("fsdp_version", Value::of_int(version));
    if (version == 1)
      set("fsdp_reshard_after_forward",
          Value::of_text(q.choose("fsdp_sharding_strategy", "What should be your sharding strategy?",
                                  {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2"})));
    else
      set("fsdp_reshard_after_forward",
          Value::of_bool(q.yes_no("fsdp_reshard_after_forward",
                                  "Do you want to enable resharding after forward? [YES/no]: ", true)));
    set("fsdp_offload_params",
        Value::of_bool(q.yes_no("fsdp_offload_params",
                                "Do you want to offload parameters and gradients to CPU? [yes/NO]: ", false)));
    const std::string policy = q.choose("fsdp_auto_wrap_policy", "What should be your auto wrap policy?",
                                        {"TRANSFORMER_BASED_WRAP", "SIZE_BASED_WRAP", "NO_WRAP"});
    set("fsdp_auto_wrap_policy", Value::of_text(policy));
    if (policy == "TRANSFORMER_BASED_WRAP")
      set("fsdp_transformer_layer_cls_to_wrap",
          Value::of_text(q.text("fsdp_transformer_layer_cls_to_wrap",
                                "Specify the comma-separated list of layer class names (units) to wrap: ", "")));
    else if (policy == "SIZE_BASED_WRAP")
      set("fsdp_min_num_params",
          Value::of_int(q.integer("fsdp_min_num_params",
                                  "What should be your FSDP's minimum number of parameters for Default Auto Wrapping "
                                  "Policy? [1e8]: ",
                                  100000000, 0)));
    if (version == 1)
      set("fsdp_backward_prefetch",
          Value::of_text(q.choose("fsdp_backward_prefetch", "What should be your FSDP's backward prefetch policy?",
                                  {"BACKWARD_PRE", "BACKWARD_POST", "NO_PREFETCH"})));
    set("fsdp_state_dict_type",
        Value::of_text(version == 1 ? q.choose("fsdp_state_dict_type", "What should be your FSDP's state dict type?",
                                               {"FULL_STATE_DICT", "LOCAL_STATE_DICT", "SHARDED_STATE_DICT"})
                                    : q.choose("fsdp_state_dict_type", "What should be your FSDP's state dict type?",
                                               {"SHARDED_STATE_DICT", "FULL_STATE_DICT"})));
    if (version == 1) {
      set("fsdp_forward_prefetch",
          Value::of_bool(q.yes_no("fsdp_forward_prefetch",
                                  "Do you want to enable FSDP's forward prefetch policy? [yes/NO]: ", false)));
      set("fsdp_use_orig_params",
          Value::of_bool(q.yes_no("fsdp_use_orig_params",
                                  "Do you want to enable FSDP's `use_orig_params` feature? [YES/no]: ", true)));
    }
    const bool efficient = q.yes_no("fsdp_cpu_ram_efficient_loading",
                                    "Do you want to enable CPU RAM efficient model loading? [YES/no]: ", true);
    set("fsdp_cpu_ram_efficient_loading", Value::of_bool(efficient));
    if (version == 1)
      set("fsdp_sync_module_states",
          Value::of_bool(efficient ? true
                                   : q.yes_no("fsdp_sync_module_states",
                                              "Do you want each individually wrapped FSDP unit to broadcast module "
                                              "parameters from rank 0 at the start? [YES/no]: ",
                                              true)));
    set("fsdp_activation_checkpointing",
        Value::of_bool(q.yes_no("fsdp_activation_checkpointing",
                                "Do you want to enable FSDP activation checkpointing? [yes/NO]: ", false)));
  }

  long num_processes = 1;
  if (type == "MULTI_CPU")
    num_processes =
        q.integer("num_processes", "How many processes should be used for distributed training? [1]: ", 1, 1);
  else if (type != "NO")
    num_processes = q.integer("num_processes", "How many GPU(s) should be used for distributed training? [1]: ", 1, 1);
  ACCEL_CHECK_ARG(!(type == "MULTI_GPU" && num_machines == 1 && num_processes == 1),
                  "Specified distributed type MULTI_GPU but only using 1 GPU on a single machine. Please select `No "
                  "distributed training` for the type of machine you are using.");
  if ((type == "MULTI_GPU" || type == "NO") && !use_cpu)
    c.set("gpu_ids", Value::of_text(q.text("gpu_ids",
                                           "What GPU(s) (by id) should be used for training on this machine as a "
                                           "comma-separated list? [all]: ",
                                           "all")));
  if (!(type == "DEEPSPEED" && ds_config_file))
    c.set("mixed_precision", Value::of_text(q.choose("mixed_precision", "Do you wish to use mixed precision?",
                                                     {"no", "fp16", "bf16", "fp8"})));

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
