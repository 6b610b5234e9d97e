// Package devicetest is a strict device for tests of config dispatch: one
// HTTP server standing in for many devices that applies a device's configs
// only in sequence, rejects a push with a lower epoch than one it has seen,
// drops replays by Idempotency-Key, and records every request it gets. Check
// verifies the dispatch guarantees against that history.
package devicetest
