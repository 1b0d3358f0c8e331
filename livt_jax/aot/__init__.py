r"""Plan a TPU or GPU run from any host: compile the real train steps for a TPU slice or GPU nodes,
ahead of time, on this CPU.

    python -m livt_jax.main --config=configs/inat18.py --aot=v5p:2x2x2
    python -m livt_jax.main --config=configs/imagenet_lt.py --aot=h100:8 --aot_json=plan.json
    python -m livt_jax.main --config=configs/inat18.py --aot=a100-80g:2x8   # 2 nodes x 8 GPUs

The compiler is installed next to the venv rather than in it (in the venv, libtpu makes every
jax start try the TPU backend first; the CUDA plugin would try the GPU):

    .venv/bin/pip install --target .libtpu -r requirements-tpu-aot.txt      # TPUs (213 MB wheel)
    .venv/bin/pip install --target .cuda-aot -r requirements-gpu-aot.txt    # GPUs (174 MB wheel)

`topology` puts `.libtpu` / `.cuda-aot` (or $LIVT_LIBTPU_DIR / $LIVT_CUDA_AOT_DIR) on sys.path
itself; a compiler already importable (a TPU VM's or GPU host's venv) is used as it is.

For each stage of `config.stages` (mgp, bft) it builds the stage exactly as training does
(`train.build_stage` + `train.compile_step`, the config's mesh, precision, remat and
grad_accum_steps; precision 'auto' resolves to bfloat16 and RandAugment 'auto' to the device, as
on an accelerator) over a Mesh of the topology's abstract devices (`jax.experimental.
topologies`), lowers it with the abstract train state and batch (with their shardings) and
compiles it with the TPU or GPU compiler (`compiling`). From the executable it prints, per chip
or GPU (`report`): memory (parameters + optimizer state, batch, temporaries, outputs) against the
usable memory, FLOPs per image (XLA's count on TPUs; on GPUs, where the CUDA compiler gives no
cost analysis, the analytic matmul count), images/s and time per epoch and per stage at the
peak bf16 rate and at 50% MFU, and the collectives in the compiled HLO.

Usable memory: a TPU chip's is libtpu's own limit (chips.py); a GPU's is the spec's device
memory times the share a JAX run preallocates (XLA_PYTHON_CLIENT_MEM_FRACTION, JAX's default
0.75), read from the environment of the plan as of the run. GPU plans compile with the XLA flags
a GPU run sets (`livt_jax.runtime.gpu_flags`).

Times are FLOPs / (MFU x peak), with the input pipeline assumed to keep up: a plan, not a
measurement. When a stage does not fit in 90% of the usable memory, a small grid
(grad_accum_steps, mesh.fsdp, remat) is compiled in order of expected cost until one fits
(`search`), and its override line is printed. `--aot_json=PATH` writes the plan as data
(`record`; benchmarks/aot_table.py renders docs/planning.md's table from such files).

Exit codes: 0 every stage fits; 3 some stage does not fit (the line to rerun with is printed
when the search found one); 2 an error (no compiler, an unknown topology, a bad config).
"""
from livt_jax.aot.command import EXIT_DOES_NOT_FIT
from livt_jax.aot.command import EXIT_ERROR
from livt_jax.aot.command import data_facts
from livt_jax.aot.command import main
from livt_jax.aot.command import plan
from livt_jax.aot.compiling import HEADROOM
from livt_jax.aot.compiling import DataFacts
from livt_jax.aot.compiling import StageResult
from livt_jax.aot.compiling import abstract_batch
from livt_jax.aot.compiling import compile_stage
from livt_jax.aot.compiling import for_target
from livt_jax.aot.counting import COLLECTIVES
from livt_jax.aot.counting import analytic_flops_per_image
from livt_jax.aot.counting import collectives
from livt_jax.aot.report import PLAN_MFU
from livt_jax.aot.report import estimates
from livt_jax.aot.report import override_line
from livt_jax.aot.report import report_lines
from livt_jax.aot.search import candidates
from livt_jax.aot.topology import AotError
from livt_jax.aot.topology import INSTALL_HINT
from livt_jax.aot.topology import CUDA_INSTALL_HINT
from livt_jax.aot.topology import Topology
from livt_jax.aot.topology import find_cuda_plugin
from livt_jax.aot.topology import find_libtpu
from livt_jax.aot.topology import libtpu_location
from livt_jax.aot.topology import parse_topology
from livt_jax.aot.topology import topology_devices
