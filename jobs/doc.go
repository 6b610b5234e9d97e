// Package jobs is the job stream between the bridge and the nodes, both
// ends of it: the job's wire format (Job), its Redis keys and Lua scripts,
// the enqueue batcher the bridge sends jobs through (Enqueuer), the node's
// consumer (Consumer), the run record store (RunStore) and the reclaim
// loop that records a job nobody took before its deadline (Reclaimer).
//
// Every write that must not be lost or repeated is one Lua script on keys
// that share a node's hash tag, so the package works unchanged on Redis
// Cluster. It knows nothing of HTTP, of Alertmanager or of routing: the
// bridge decides where a job goes, the node's engine runs it.
package jobs
