-- wrk script: full Alertmanager v4 webhook payloads as Alertmanager encodes
-- them (Go's json.Encoder: & written \u0026), one firing alert
-- each, with a distinct fingerprint per request (thread id + counter), so
-- that the bridge deduplicates none of them.
--
--   wrk -t2 -c10 -d10s --latency -s e2e/testdata/webhook.lua \
--     http://127.0.0.1:9095/api/v1/webhook -- TOKEN [RUN] [AGENTS] [MAX]
--
-- TOKEN: the bridge's bearer token ("" for none). RUN: 0-255, keeps the
-- fingerprints of separate runs apart. AGENTS: the alerts name agents
-- ingest-00 … ingest-(AGENTS-1), round robin. MAX: stop each thread after
-- this many requests (0: no limit, -d bounds the run).

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  token = args[1] or ""
  run = tonumber(args[2] or "0")
  agents = tonumber(args[3] or "10")
  max = tonumber(args[4] or "0")
  n = 0
  starts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
  headers = { ["Content-Type"] = "application/json", ["User-Agent"] = "Alertmanager/0.25.0" }
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
end

local fmt = [[{"receiver":"medic","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"MedicAgentUnhealthy","agent":"%s","instance":"%s:9105","job":"medic-node","severity":"critical"},"annotations":{"summary":"agent %s is unhealthy","description":"medic_agent_probe_success of agent %s on %s has been 0 for 30s."},"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prometheus.example:9090/graph?g0.expr=medic_agent_probe_success+%%3D%%3D+0\u0026g0.tab=1","fingerprint":"%s"}],"groupLabels":{"alertname":"MedicAgentUnhealthy","agent":"%s"},"commonLabels":{"alertname":"MedicAgentUnhealthy","agent":"%s","instance":"%s:9105","job":"medic-node","severity":"critical"},"commonAnnotations":{"summary":"agent %s is unhealthy","description":"medic_agent_probe_success of agent %s on %s has been 0 for 30s."},"externalURL":"http://alertmanager.example:9093","version":"4","groupKey":"{}:{alertname=\"MedicAgentUnhealthy\", agent=\"%s\"}","truncatedAlerts":0}]]

function request()
  n = n + 1
  if max > 0 and n > max then
    wrk.thread:stop()
  end
  local agent = string.format("ingest-%02d", n % agents)
  local host = string.format("host-%02d", n % agents)
  local fp = string.format("%02x%02x%012x", run % 256, tid % 256, n)
  local body = string.format(fmt, agent, host, agent, agent, host, starts, fp,
    agent, agent, host, agent, agent, host, agent)
  return wrk.format("POST", nil, headers, body)
end
