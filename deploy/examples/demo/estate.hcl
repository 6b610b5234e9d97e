# The estate `medic demo` runs: one node, "demo", with two agents (and the
# pool of pool.hcl; any *.hcl here is part of the estate). Each agent
# is the medic binary itself in its built-in demo-agent mode: it serves
# /healthz, heartbeats to the node, and on request hangs (/hang) or dies
# (/die). medic demo fills in the @...@ placeholders (binary, ports,
# directories) and writes the result next to the library runbooks in a
# temporary directory, which is the --config.file it serves.

agent "demo-web" {
  node    = "demo"
  command = ["@MEDIC@", "demo-agent", "--name=demo-web", "--listen=127.0.0.1:@PORT_WEB@", "--heartbeat-url=@NODE_URL@"]
  workdir = "@DIR@/demo-web"

  heartbeat {
    timeout = "5s"
  }

  probe "http" {
    url      = "http://127.0.0.1:@PORT_WEB@/healthz"
    timeout  = "1s"
    interval = "2s"
  }
}

agent "demo-worker" {
  node    = "demo"
  command = ["@MEDIC@", "demo-agent", "--name=demo-worker", "--listen=127.0.0.1:@PORT_WORKER@", "--heartbeat-url=@NODE_URL@"]
  workdir = "@DIR@/demo-worker"

  heartbeat {
    timeout = "5s"
  }

  probe "http" {
    url      = "http://127.0.0.1:@PORT_WORKER@/healthz"
    timeout  = "1s"
    interval = "2s"
  }
}
