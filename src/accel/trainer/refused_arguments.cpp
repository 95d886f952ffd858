// The arguments of transformers 5.x's TrainingArguments that accel's
// Trainer does not implement, with Transformers' defaults: set to anything
// else from flags or JSON, they are refused by name (training_arguments.cpp).
#include <string>
#include <utility>
#include <vector>

#include "accel/trainer/training_arguments.h"

namespace accel {

const std::vector<std::pair<std::string, std::string>>& refused_training_arguments() {
  static const std::vector<std::pair<std::string, std::string>> table = {
      {"optim_args", R"(null)"},
      {"optim_target_modules", R"(null)"},
      {"average_tokens_across_devices", R"(true)"},
      {"bf16_full_eval", R"(false)"},
      {"fp16_full_eval", R"(false)"},
      {"tf32", R"(null)"},
      {"activation_checkpointing_kwargs", R"(null)"},
      {"gradient_checkpointing_kwargs", R"(null)"},
      {"torch_compile_backend", R"(null)"},
      {"torch_compile_mode", R"(null)"},
      {"use_liger_kernel", R"(false)"},
      {"liger_kernel_config", R"(null)"},
      {"use_cache", R"(false)"},
      {"torch_empty_cache_steps", R"(null)"},
      {"log_on_each_node", R"(true)"},
      {"log_level", R"("passive")"},
      {"log_level_replica", R"("warning")"},
      {"project", R"("huggingface")"},
      {"trackio_space_id", R"(null)"},
      {"trackio_bucket_id", R"(null)"},
      {"trackio_static_space_id", R"(null)"},
      {"eval_do_concat_batches", R"(true)"},
      {"eval_use_gather_object", R"(false)"},
      {"include_for_metrics", R"([])"},
      {"batch_eval_metrics", R"(false)"},
      {"save_on_each_node", R"(false)"},
      {"enable_jit_checkpoint", R"(false)"},
      {"push_to_hub", R"(false)"},
      {"hub_token", R"(null)"},
      {"hub_private_repo", R"(null)"},
      {"hub_model_id", R"(null)"},
      {"hub_strategy", R"("every_save")"},
      {"hub_always_push", R"(false)"},
      {"hub_revision", R"(null)"},
      {"restore_callback_states_from_checkpoint", R"(false)"},
      {"parallelism_config", R"(null)"},
      {"dataloader_multiprocessing_context", R"(null)"},
      {"dataloader_in_order", R"(true)"},
      {"remove_unused_columns", R"(true)"},
      {"ddp_find_unused_parameters", R"(null)"},
      {"ddp_bucket_cap_mb", R"(null)"},
      {"ddp_broadcast_buffers", R"(null)"},
      {"ddp_static_graph", R"(null)"},
      {"ddp_backend", R"(null)"},
      {"ddp_timeout", R"(1800)"},
      {"fsdp", R"(null)"},
      {"fsdp_config", R"(null)"},
      {"deepspeed", R"(null)"},
      {"debug", R"("")"},
      {"skip_memory_metrics", R"(true)"},
      {"do_train", R"(false)"},
      {"do_eval", R"(false)"},
      {"do_predict", R"(false)"},
      {"local_rank", R"(-1)"},
  };
  return table;
}

}  // namespace accel
