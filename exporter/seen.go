package exporter

import "strconv"

// unixMilli is the node's last-seen time (keys.Seen) as written with every
// state snapshot, kept without a TTL.
func unixMilli(n *Node) string { return strconv.FormatInt(n.now().UnixMilli(), 10) }
