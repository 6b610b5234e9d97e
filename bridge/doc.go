// Package bridge owns the path from Alertmanager to a node: the webhook
// receiver (authentication, bounded and tolerant decoding, per-alert fan
// out), episode deduplication, routing of jobs to per-node Redis streams,
// the node-side job consumer, and the run record store with its HTTP API.
//
// Every write that must not be lost or repeated is one Lua script on keys
// that share a hash tag, so the package works unchanged on Redis Cluster.
package bridge
