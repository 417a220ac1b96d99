"""C4 (Dong et al., HPCA 2025, arXiv 2406.04594): communication-driven diagnosis (C4D) and traffic planning
(C4P), rebuilt at small scale for notebook 02.

C4D, on real collectives (torch.distributed over gloo, 127.0.0.1 only), each module importing only those above it:

* :mod:`.faults` - the faults injected below the monitor (slow rank, slow send/receive port, slow path, hangs,
  crash);
* :mod:`.collective` - the monitored ring all-reduce over point-to-point sends and receives: per-operation and
  per-message records, live counters in a shared memory-mapped file;
* :mod:`.worker` - one rank of the data-parallel job (checkpoints, resumable);
* :mod:`.detect` - C4D's detector (slow rank by lateness, slow connections by the latency matrix, hangs by the
  sequence counters, crashes by exited processes) and the watchdog baseline;
* :mod:`.job` - the driver: launch, watch, stop every process; the monitor's overhead; agreement with gloo;
* :mod:`.restart` - isolation and restart through torchrun's elastic agent;
* :mod:`.trials` - randomised fault-injection trials as stored sweeps, and their scoring;
* :mod:`.downtime` - Monte Carlo of error-induced downtime over a month at scale.

C4P, a flow-level simulation (*simulated* on every plot):

* :mod:`.fabric` - dual-plane, rail-optimised leaf-spine topology, ring jobs and tenants, max-min fair rates,
  nccl-tests bus bandwidth;
* :mod:`.planning` - ECMP hashing, dual-port balance, planned paths (bipartite edge colouring with networkx),
  re-planning after a link failure, and the experiments over seeds.

No exported name equals a submodule's name, so ``import repro.c4.detect as m`` gives the module.
"""

from .detect import (
    TIMEOUTS,
    Detector,
    Diagnosis,
    Thresholds,
    Watchdog,
    classify_hang,
    classify_matrix,
    latency_matrix,
)
from .downtime import CATEGORIES, DowntimeInputs, before_c4d, renewal_reward_shares, with_c4d
from .downtime import simulate as simulate_downtime
from .downtime import sweep as sweep_downtime
from .fabric import LeafSpine, bus_bandwidth, place_job, ring_connections
from .faults import KINDS, Fault, FaultError, random_fault
from .job import JobError, JobResult, allreduce_agreement, max_world, run_job, time_allreduce
from .planning import POLICIES, SCENARIOS, measure_cost, route, run_seeds
from .restart import RestartResult, run_with_restart
from .trials import confusion, correct, false_alarm_rate, localisation
from .worker import JobConfig

__all__ = [
    "CATEGORIES", "KINDS", "POLICIES", "SCENARIOS", "TIMEOUTS", "Detector", "Diagnosis", "DowntimeInputs", "Fault",
    "FaultError", "JobConfig", "random_fault", "JobError", "JobResult", "LeafSpine", "RestartResult", "Thresholds", "Watchdog",
    "allreduce_agreement", "before_c4d", "bus_bandwidth", "classify_hang", "classify_matrix", "confusion", "correct",
    "false_alarm_rate", "latency_matrix", "localisation", "max_world", "measure_cost", "place_job",
    "renewal_reward_shares", "ring_connections", "route", "run_job", "run_seeds", "run_with_restart",
    "simulate_downtime", "sweep_downtime", "time_allreduce", "with_c4d",
]
