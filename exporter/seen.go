package exporter

import "strconv"

// SeenKey is the key of a node's last-seen time (Unix ms), written with
// every state snapshot and kept without a TTL. It is in the node's hash
// slot ({node:NAME}, jobs.Keys.Seen), next to its job stream, so that
// the bridge checks that the node is live in the script that queues the
// node's job.
func SeenKey(prefix, node string) string { return prefix + "{node:" + node + "}:seen" }

func unixMilli(n *Node) string { return strconv.FormatInt(n.now().UnixMilli(), 10) }
