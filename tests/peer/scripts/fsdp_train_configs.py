"""Writes the launch configs of the parameter-sharding peer test
(tests/peer/fsdp_launch_peer_test.cpp) with Accelerate 1.15's own code, as
`accelerate config` would: FSDP fsdp_version 1 and 2 with FULL_SHARD and
GPT2Block wrapping, and a DeepSpeed ZeRO stage-3 JSON file named by a
DeepSpeed launch config.

usage: fsdp_train_configs.py OUTDIR PORT"""
import json
import os
import sys

from accelerate.commands.config.config_args import ClusterConfig

out, port = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)


def cluster(name, **kw):
    base = dict(compute_environment="LOCAL_MACHINE", mixed_precision="no", use_cpu=False, debug=False,
                downcast_bf16="no", main_process_port=port, gpu_ids="all", num_processes=2)
    base.update(kw)
    ClusterConfig(**base).to_yaml_file(os.path.join(out, name + ".yaml"))


cluster("fsdp1", distributed_type="FSDP",
        fsdp_config=dict(fsdp_version=1, fsdp_sharding_strategy="FULL_SHARD", fsdp_offload_params=False,
                         fsdp_auto_wrap_policy="TRANSFORMER_BASED_WRAP", fsdp_transformer_layer_cls_to_wrap="GPT2Block",
                         fsdp_backward_prefetch="BACKWARD_PRE", fsdp_state_dict_type="SHARDED_STATE_DICT",
                         fsdp_forward_prefetch=False, fsdp_use_orig_params=True,
                         fsdp_cpu_ram_efficient_loading=False, fsdp_sync_module_states=True))
cluster("fsdp2", distributed_type="FSDP",
        fsdp_config=dict(fsdp_version=2, fsdp_reshard_after_forward=True, fsdp_offload_params=True,
                         fsdp_auto_wrap_policy="TRANSFORMER_BASED_WRAP", fsdp_transformer_layer_cls_to_wrap="GPT2Block",
                         fsdp_state_dict_type="FULL_STATE_DICT", fsdp_cpu_ram_efficient_loading=False,
                         fsdp_activation_checkpointing=True))
ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
      "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}, "offload_param": {"device": "cpu"},
                            "stage3_gather_16bit_weights_on_model_save": True}}
with open(os.path.join(out, "zero3.json"), "w") as f:
    json.dump(ds, f, indent=2)
# With a DeepSpeed file the questionnaire leaves mixed_precision to it (None
# here); a value in the YAML as well is refused by Accelerate and by accel.
cluster("zero3", distributed_type="DEEPSPEED", mixed_precision=None,
        deepspeed_config=dict(deepspeed_config_file=os.path.join(out, "zero3.json"), zero3_init_flag=False))
