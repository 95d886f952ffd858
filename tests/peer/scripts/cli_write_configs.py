"""Writes launch config files with Accelerate 1.15's own code, for the peer
tests of `accel launch` (tests/peer/cli_launch_peer_test.cpp).

usage: cli_write_configs.py OUTDIR PORT

OUTDIR/<name>.yaml for each config below, written by `write_basic_config`
(what `accelerate config default` does) or by ClusterConfig.to_yaml_file
(what the `accelerate config` questionnaire does), and OUTDIR/fakeds: a
stand-in `deepspeed` package, so that Accelerate's DeepSpeed launcher runs on
a machine without DeepSpeed (it only reads one constant from it before
handing over to torchrun)."""
import os
import sys

from accelerate.commands.config.config_args import ClusterConfig
from accelerate.commands.config.default import write_basic_config

out, port = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)


def cluster(name, **kw):
    base = dict(compute_environment="LOCAL_MACHINE", mixed_precision="no", use_cpu=False, debug=False,
                downcast_bf16="no", main_process_port=port, gpu_ids="all")
    base.update(kw)
    ClusterConfig(**base).to_yaml_file(os.path.join(out, name + ".yaml"))


path = os.path.join(out, "default.yaml")
if os.path.exists(path):
    os.remove(path)
write_basic_config("bf16", path)
cluster("multi_gpu", distributed_type="MULTI_GPU", num_processes=2, mixed_precision="fp16", debug=True)
cluster("multi_node", distributed_type="MULTI_GPU", num_processes=4, num_machines=2, machine_rank=0,
        main_process_ip="127.0.0.1", same_network=True)
cluster("fsdp1", distributed_type="FSDP", num_processes=2, mixed_precision="bf16",
        fsdp_config=dict(fsdp_version=1, fsdp_reshard_after_forward="SHARD_GRAD_OP", fsdp_offload_params=True,
                         fsdp_auto_wrap_policy="TRANSFORMER_BASED_WRAP", fsdp_transformer_layer_cls_to_wrap="Block",
                         fsdp_backward_prefetch="BACKWARD_PRE", fsdp_state_dict_type="FULL_STATE_DICT",
                         fsdp_forward_prefetch=False, fsdp_use_orig_params=True,
                         fsdp_cpu_ram_efficient_loading=True, fsdp_sync_module_states=True,
                         fsdp_activation_checkpointing=True))
cluster("fsdp2", distributed_type="FSDP", num_processes=2,
        fsdp_config=dict(fsdp_version=2, fsdp_reshard_after_forward=False, fsdp_offload_params=False,
                         fsdp_auto_wrap_policy="SIZE_BASED_WRAP", fsdp_min_num_params=1000,
                         fsdp_state_dict_type="SHARDED_STATE_DICT", fsdp_cpu_ram_efficient_loading=False,
                         fsdp_activation_checkpointing=False))
cluster("fsdp2_nd", distributed_type="FSDP", num_processes=2,
        fsdp_config=dict(fsdp_version=2, fsdp_auto_wrap_policy="SIZE_BASED_WRAP", fsdp_min_num_params=1000),
        parallelism_config=dict(parallelism_config_dp_replicate_size=1, parallelism_config_dp_shard_size=1,
                                parallelism_config_tp_size=1, parallelism_config_cp_size=2,
                                parallelism_config_cp_comm_strategy="alltoall"))
cluster("deepspeed", distributed_type="DEEPSPEED", num_processes=2, mixed_precision="bf16",
        deepspeed_config=dict(zero_stage=3, offload_optimizer_device="cpu", offload_param_device="none",
                              gradient_accumulation_steps=4, gradient_clipping=1.0, zero3_save_16bit_model=True,
                              zero3_init_flag=False))
cluster("multi_cpu", distributed_type="MULTI_CPU", num_processes=2, use_cpu=True, gpu_ids=None)

fake = os.path.join(out, "fakeds")
os.makedirs(os.path.join(fake, "deepspeed", "launcher"), exist_ok=True)
os.makedirs(os.path.join(fake, "deepspeed-0.0.0.dist-info"), exist_ok=True)
open(os.path.join(fake, "deepspeed", "__init__.py"), "w").write("__version__ = '0.0.0'\n")
open(os.path.join(fake, "deepspeed", "launcher", "__init__.py"), "w").write("")
open(os.path.join(fake, "deepspeed", "launcher", "runner.py"), "w").write("DEEPSPEED_ENVIRONMENT_NAME = '.deepspeed_env'\n")
open(os.path.join(fake, "deepspeed-0.0.0.dist-info", "METADATA"), "w").write(
    "Metadata-Version: 2.1\nName: deepspeed\nVersion: 0.0.0\n")
