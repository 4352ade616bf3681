"""Per-GPU training memory of every trainable stage under DDP and FSDP2, with and without activation checkpointing.

Nothing here is a hard-coded size: every model is built from the config on the meta device (shapes, no data),
its parameters are counted, and a forward pass on meta tensors measures the activations autograd keeps.

* `stages.py` — the trainable stages (encoder, generator, diffusion baseline): models, inputs, blocks, and the
  teacher shapes they are sized with;
* `activations.py` — saved-for-backward bytes of one sample, measured on the meta device, with and without
  checkpointing;
* `plan.py` — the byte arithmetic per strategy (parameters, gradients, optimizer states, transients, frozen
  models), the plan rows and the micro-batch that fits;
* `teacher_cost.py` — the teacher's parameters, forward FLOPs, inference memory and bytes per image (cached or
  on the fly);
* `disk.py` — the disk each step of the NSD recipe takes;
* `output.py` — the printed table and the JSON record.
"""

from mindhier.memory_plan.activations import (
    ActivationProfile,
    measure_activations,
    model_activations,
    stage_activations,
)
from mindhier.memory_plan.disk import DiskRow, disk_rows, total_disk_bytes
from mindhier.memory_plan.output import format_plan, plan_record
from mindhier.memory_plan.plan import (
    ADAMW_STATES,
    BF16,
    FP32,
    GIB,
    RESERVE_FRACTION,
    STRATEGIES,
    MemoryPlan,
    PlanRow,
    StageSummary,
    fsdp_shard_elements,
    plan_memory,
    stage_rows,
    summarize_stage,
)
from mindhier.memory_plan.stages import (
    DEFAULT_VOXELS,
    PLAN_SUBJECT,
    StageSpec,
    TeacherShapes,
    block_modules,
    count_parameters,
    stage_specs,
    teacher_shapes,
)
from mindhier.memory_plan.teacher_cost import TeacherCost, teacher_cost

__all__ = [
    "ADAMW_STATES",
    "BF16",
    "DEFAULT_VOXELS",
    "FP32",
    "GIB",
    "PLAN_SUBJECT",
    "RESERVE_FRACTION",
    "STRATEGIES",
    "ActivationProfile",
    "DiskRow",
    "MemoryPlan",
    "PlanRow",
    "StageSpec",
    "StageSummary",
    "TeacherCost",
    "TeacherShapes",
    "block_modules",
    "count_parameters",
    "disk_rows",
    "format_plan",
    "fsdp_shard_elements",
    "measure_activations",
    "model_activations",
    "plan_memory",
    "plan_record",
    "stage_activations",
    "stage_rows",
    "stage_specs",
    "summarize_stage",
    "teacher_cost",
    "teacher_shapes",
    "total_disk_bytes",
]
