// Package queue owns medic's ordered config dispatch (docs/design.md §1.3, §7): a
// platform publishes device configurations into a pool, exactly one active
// agent of the pool delivers them to each device in per-device sequence
// order, and a leased coordinator switches the pool to a healthy agent when
// the active one fails — losing nothing, reordering nothing, and fencing the
// replaced agent by an epoch so it can deliver nothing more.
//
// Everything lives in Redis under one hash tag per pool ({pool:NAME}) and
// every multi-key step is a single Lua script, so the same code runs on a
// standalone server, Sentinel or Redis Cluster.
//
// The pieces: Publisher (producers), Consumer (the reference agent behind
// `medic agent`), Coordinator (health checks and the switchover state
// machine, run by the bridge), NewAPI (the bridge's pool endpoints) and
// package devicetest (a strict device for tests). The Consumer's files
// follow its work: consumer.go (heartbeat, duty), epoch.go (one epoch on
// duty: reading the stream, blocked devices, one worker per device),
// deliver.go (a window of configs pushed to one device) and step.go (the
// fence checks and acknowledgements, group-committed).
package queue
