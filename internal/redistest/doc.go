// Package redistest starts real redis-server processes for tests: a
// standalone server on a free loopback port (optionally with AOF, restartable
// on the same port and data directory) and a 3-master Redis Cluster.
//
// Tests that claim to test the queue or dedup must use this, never a mock.
package redistest
