# The recovery lifecycle of an agent (docs/design.md §1.1): check liveness, restart
# a dead agent; for a live one run its probe, and when the probe fails sample
# usage, run the repair script of every cause that holds, restart, verify and
# escalate if it is still unhealthy.
#
# The repair scripts are not part of medic: install your own at
# /opt/medic/repair/{memory,cpu,disk}.sh. Each gets the alert's labels as
# MEDIC_LABEL_<NAME> environment variables, never as arguments.
runbook "agent-recovery" {
  matchers = ["alertname=~\"MedicAgent(Down|ProbeFailing|MemoryHigh|CPUHigh|DiskFull)\""]

  # The agent a rule names in its `agent` label (the default, spelled out).
  agent = alert.labels.agent

  cause "memory" {
    when    = usage.memory > agent.thresholds.memory # default 0.80
    repair  = ["/opt/medic/repair/memory.sh"]
    timeout = "30s"
  }

  cause "cpu" {
    when    = usage.cpu > agent.thresholds.cpu # default 0.80
    repair  = ["/opt/medic/repair/cpu.sh"]
    timeout = "30s"
  }

  cause "disk" {
    when    = usage.disk > agent.thresholds.disk # default 0.99
    repair  = ["/opt/medic/repair/disk.sh"]
    timeout = "1m"
  }

  verify {
    attempts = 3
    interval = "2s"
  }

  escalate {
    webhook = "https://oncall.example/hooks/medic"
    timeout = "10s"
  }

  budget {
    restarts = 3
    window   = "1h"
  }
}
