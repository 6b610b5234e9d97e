// Package heartbeat is the Go client of medic node's heartbeat API, the
// guardian model of docs/design.md §1.2: a guarded process registers with a
// timeout, beats while it really serves, and unregisters on a clean exit.
// A registered process whose last beat is older than its timeout is hung,
// and medic node restarts it.
//
//	c := heartbeat.New("http://127.0.0.1:9105", "ops-agent", 15*time.Second)
//	c.Healthy = func(ctx context.Context) bool { return queue.Serving() }
//	go c.Run(ctx) // register, beat every timeout/3 while healthy, unregister at the end
//
// The same with curl:
//
//	curl -X PUT -d '{"timeout":"15s"}' http://127.0.0.1:9105/api/v1/heartbeats/ops-agent
//	curl -X DELETE http://127.0.0.1:9105/api/v1/heartbeats/ops-agent
package heartbeat
